"""The receiver's HTTP contract (docs/design.md, "HTTP contract"): one table of requests and
answers they must get, run through every transport:

- `flask`: the Flask test client, on SQLite (and `flask-postgres` on PostgreSQL for the
  requests that store something);
- `process`: `connectors serve` as a real process (gunicorn, real sockets) on SQLite,
  started once for the module, ready once `/healthz` answers.

Every answer is checked against what the store holds afterwards (an answer alone proves
nothing about durability), read back through a Store of the test's own. The served
process keeps its database across tests, so every request that may be stored carries a
body no other request sends (`n` from `unique()`), and "nothing stored" means "no new
event". Checks that need control over the app (a broken store, an unexpected exception)
are Flask-only; chunked bodies are process-only (the test client always knows the length).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from leadrelay.core.app.config import parse_config
from leadrelay.core.ingest import receiver as receiver_module
from leadrelay.core.ingest.receiver import create_app
from leadrelay.core.store.store import DeliveryFilter, EventFilter, Store
from tests.conftest import SECRETS, gitleads_body, migrated_store, signed_headers
from tests.process import ServeProcess, write_config

SAMPLES = Path(__file__).resolve().parents[2] / "core" / "app" / "samples"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MAX_BODY_BYTES = 4096
TIMEOUT_S = 10
JSON_CONTENT = {"Content-Type": "application/json"}
_numbers = itertools.count(1000)


def unique() -> int:
    """A number no other request of this module uses (the served database is shared)."""
    return next(_numbers)


def receiver_config(store_url: str, directory: Path) -> dict[str, Any]:
    """The test sources plus `open`, a source with no secrets; one connector; a small limit."""
    sources: dict[str, Any] = {
        name: {"provider": name, "secrets": [secret]} for name, secret in SECRETS.items()
    }
    sources["open"] = {"provider": "gitleads"}
    return {
        "store": store_url,
        "sources": sources,
        "connectors": {"archive": {"type": "csv", "path": str(directory / "leads.csv")}},
        "server": {"max_body_bytes": MAX_BODY_BYTES},
    }


# -- transports ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    json: Any
    text: str


Send = Callable[[str, str, Any, Mapping[str, str]], Answer]


@dataclass
class Receiver:
    """One way to reach the receiver, and a Store reading what it stored."""

    transport: str
    store: Store
    send: Send

    def request(
        self, method: str, path: str, body: Any = b"", headers: Mapping[str, str] | None = None
    ) -> Answer:
        return self.send(method, path, body, headers or {})

    def post(self, source: str, body: Any, headers: Mapping[str, str]) -> Answer:
        return self.request("POST", f"/webhooks/{source}", body, headers)

    def post_signed(self, provider: str, body: bytes) -> Answer:
        return self.post(provider, body, signed_headers(provider, body))

    def event_count(self) -> int:
        return len(self.store.list_events(EventFilter(limit=1_000_000)))

    def connectors_of(self, event_id: str) -> list[str]:
        deliveries = self.store.list_deliveries(DeliveryFilter(event_id=event_id))
        return [d["connector"] for d in deliveries]


def flask_send(client: FlaskClient) -> Send:
    def send(method: str, path: str, body: Any, headers: Mapping[str, str]) -> Answer:
        response = client.open(path, method=method, data=body, headers=dict(headers))
        return Answer(
            response.status_code,
            response.mimetype,
            response.get_json(silent=True),
            response.get_data(as_text=True),
        )

    return send


def process_send(server: ServeProcess) -> Send:
    def send(method: str, path: str, body: Any, headers: Mapping[str, str]) -> Answer:
        response = requests.request(
            method, server.url(path), data=body, headers=dict(headers), timeout=TIMEOUT_S
        )
        try:
            answer = response.json()
        except ValueError:
            answer = None
        content_type = response.headers.get("Content-Type", "").split(";")[0]
        return Answer(response.status_code, content_type, answer, response.text)

    return send


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    directory = tmp_path_factory.mktemp("serve")
    database = directory / "leadrelay.db"
    store_url = f"sqlite:///{database}"
    config_path = write_config(directory / "connectors.yaml", receiver_config(store_url, directory))
    server = ServeProcess(config_path)
    # No `connectors migrate`: the server creates and migrates its database by itself
    # (the `readyz` row checks it is ready).
    assert not database.exists()
    server.start()
    store = Store(store_url)
    try:
        yield Receiver("process", store, process_send(server))
    finally:
        store.close()
        server.stop()


TRANSPORTS = ["flask", pytest.param("flask-postgres", marks=pytest.mark.postgres), "process"]


@pytest.fixture(params=TRANSPORTS)
def receiver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Receiver]:
    if request.param == "process":
        yield request.getfixturevalue("served")
        return
    if request.param == "flask-postgres":
        url = request.getfixturevalue("postgres_url")
    else:
        url = f"sqlite:///{tmp_path / 'leadrelay.db'}"
    store = migrated_store(url)
    config = parse_config(receiver_config(url, tmp_path), "test.yaml", env={})
    try:
        yield Receiver(request.param, store, flask_send(create_app(config, store).test_client()))
    finally:
        store.close()


# -- bodies -------------------------------------------------------------------------------

# Where each provider's sample gets a value of its own, so that it is a distinct event.
UNIQUE_FIELD: dict[str, tuple[tuple[str, ...], str]] = {
    "gitproductivity": (("id",), "evt_{n}"),
    "leadhub": (("lead", "id"), "{n}"),
    "leadshark": (("data", "lead", "email"), "lead{n}@example.com"),
}


def distinct(path: Path, n: int) -> bytes:
    """A documented sample made into an event no other request sends."""
    payload = json.loads(path.read_text(encoding="utf-8"))
    keys, template = UNIQUE_FIELD[path.parent.name]
    target = payload
    for key in keys[:-1]:
        target = target[key]
    target[keys[-1]] = template.format(n=n)
    return json.dumps(payload, separators=(",", ":")).encode()


def body_of_size(n: int, size: int) -> bytes:
    payload = json.loads(gitleads_body(n))
    payload["data"]["bio"] = ""
    payload["data"]["bio"] = "x" * (size - len(json.dumps(payload).encode()))
    body = json.dumps(payload).encode()
    assert len(body) == size
    return body


def unreadable_shape(n: int) -> bytes:
    # Valid JSON, signed, but `data` is not an object: the adapter cannot read it.
    return json.dumps(
        {"event": "lead.created", "timestamp": "2026-04-24T10:31:00Z", "data": f"text {n}"}
    ).encode()


# -- the table ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)


def signed_post(provider: str, body: bytes) -> Request:
    return Request("POST", f"/webhooks/{provider}", body, signed_headers(provider, body))


def post(source: str, body: bytes, headers: Mapping[str, str]) -> Request:
    return Request("POST", f"/webhooks/{source}", body, headers)


def signed_sample(path: Path) -> Callable[[int], Request]:
    """A distinct copy of a documented sample, signed for its provider."""
    return lambda n: signed_post(path.parent.name, distinct(path, n))


@dataclass(frozen=True)
class Case:
    id: str
    request: Callable[[int], Request]
    status: int
    # The answer's `status` for a success, its `error` code otherwise.
    answer: str
    # The stored event's status, or None: nothing is stored.
    stored: str | None = None
    # Text the error message (or the quarantine reason) must contain.
    mentions: str | None = None


CASES = [
    # Stored and answered.
    Case(
        "accepted", lambda n: signed_post("gitleads", gitleads_body(n)), 200, "accepted", "accepted"
    ),
    Case(
        "accepted-gitproductivity",
        signed_sample(FIXTURES / "gitproductivity" / "developer.added.json"),
        200,
        "accepted",
        "accepted",
    ),
    Case(
        "accepted-leadhub",
        signed_sample(FIXTURES / "leadhub" / "lead.created.json"),
        200,
        "accepted",
        "accepted",
    ),
    Case(
        "accepted-leadshark-stringify-signature",
        signed_sample(FIXTURES / "leadshark" / "email.captured.json"),
        200,
        "accepted",
        "accepted",
    ),
    Case(
        "accepted-unsigned-source",
        lambda n: post("open", gitleads_body(n), JSON_CONTENT),
        200,
        "accepted",
        "accepted",
    ),
    Case(
        "accepted-at-max-body-bytes",
        lambda n: signed_post("gitleads", body_of_size(n, MAX_BODY_BYTES)),
        200,
        "accepted",
        "accepted",
    ),
    Case(
        "ignored-not-a-lead-event",
        signed_sample(SAMPLES / "gitproductivity" / "repository.connected.json"),
        200,
        "ignored",
        "ignored",
    ),
    Case(
        "quarantined-unreadable-shape",
        lambda n: signed_post("gitleads", unreadable_shape(n)),
        202,
        "quarantined",
        "quarantined",
        mentions="data",
    ),
    # Refused: nothing stored.
    Case(
        "signature-missing",
        lambda n: post("gitleads", gitleads_body(n), JSON_CONTENT),
        401,
        "invalid_signature",
    ),
    Case(
        "signature-mismatch",
        lambda n: post(
            "gitleads", gitleads_body(n), {"X-GitLeads-Signature": "sha256=" + "0" * 64}
        ),
        401,
        "invalid_signature",
    ),
    Case(
        "signature-malformed",
        lambda n: post("gitleads", gitleads_body(n), {"X-GitLeads-Signature": "md5=abc"}),
        401,
        "invalid_signature",
    ),
    Case(
        "signature-by-another-secret",
        lambda n: post(
            "gitleads",
            gitleads_body(n),
            signed_headers("gitleads", gitleads_body(n), "not-our-secret"),
        ),
        401,
        "invalid_signature",
    ),
    Case(
        "unknown-source",
        lambda n: post(
            "nosuchsource", gitleads_body(n), signed_headers("gitleads", gitleads_body(n))
        ),
        404,
        "unknown_source",
        mentions="nosuchsource",
    ),
    *(
        Case(f"body-{code}-{i}", lambda _n, body=body: signed_post("gitleads", body), 400, code)
        for i, (body, code) in enumerate(
            [
                (b"not json at all", "invalid_json"),
                (b'{"event": "lead.created",', "invalid_json"),
                (b"\xff\xfe{}", "invalid_json"),
                (b'{"n": NaN}', "invalid_json"),
                (b"", "invalid_json"),
                (b"[]", "not_an_object"),
                (b'[{"event": "lead.created"}]', "not_an_object"),
                (b'"a string"', "not_an_object"),
                (b"42", "not_an_object"),
                (b"null", "not_an_object"),
            ]
        )
    ),
    Case(
        "body-over-max-body-bytes",
        lambda n: signed_post("gitleads", body_of_size(n, 2 * MAX_BODY_BYTES)),
        413,
        "payload_too_large",
        mentions=str(MAX_BODY_BYTES),
    ),
    Case(
        "body-one-byte-over-max-body-bytes",
        lambda n: signed_post("gitleads", body_of_size(n, MAX_BODY_BYTES + 1)),
        413,
        "payload_too_large",
    ),
    # Probes and other routes: nothing stored either.
    Case("get-webhook-url", lambda _n: Request("GET", "/webhooks/leadshark"), 200, "ok"),
    Case("head-webhook-url", lambda _n: Request("HEAD", "/webhooks/leadshark"), 200, ""),
    Case(
        "get-unknown-source",
        lambda _n: Request("GET", "/webhooks/nosuchsource"),
        404,
        "unknown_source",
    ),
    Case("healthz", lambda _n: Request("GET", "/healthz"), 200, "ok"),
    Case("readyz", lambda _n: Request("GET", "/readyz"), 200, "ready"),
    Case("unknown-page", lambda _n: Request("GET", "/no/such/page"), 404, "not_found"),
    Case(
        "put-webhook-url",
        lambda _n: Request("PUT", "/webhooks/gitleads", b"{}"),
        405,
        "method_not_allowed",
    ),
    Case("post-healthz", lambda _n: Request("POST", "/healthz"), 405, "method_not_allowed"),
]


def table_rows() -> list[Any]:
    """Every case through every transport; PostgreSQL only where something is stored."""
    rows = []
    for case in CASES:
        for transport in TRANSPORTS:
            name = transport if isinstance(transport, str) else transport.values[0]
            if name == "flask-postgres" and case.stored is None:
                continue
            marks = () if isinstance(transport, str) else transport.marks
            rows.append(pytest.param(case, name, id=f"{case.id}-{name}", marks=marks))
    return rows


def assert_json_error(answer: Answer, status: int, code: str) -> None:
    assert answer.status == status, answer.text
    assert answer.content_type == "application/json"
    assert answer.json["error"] == code
    assert isinstance(answer.json["message"], str)
    assert answer.json["message"]


@pytest.mark.parametrize(("case", "receiver"), table_rows(), indirect=["receiver"])
def test_contract_row(case: Case, receiver: Receiver) -> None:
    request = case.request(unique())
    events_before = receiver.event_count()

    answer = receiver.request(request.method, request.path, request.body, request.headers)

    if case.status >= 400:
        assert_json_error(answer, case.status, case.answer)
        told = answer.json["message"]
    else:
        assert answer.status == case.status, answer.text
        if request.method == "HEAD":
            assert answer.text == ""
        else:
            assert answer.content_type == "application/json"
            assert answer.json["status"] == case.answer
        told = (answer.json or {}).get("reason", "")
    if case.mentions is not None:
        assert case.mentions in told
    if case.stored is None:
        assert receiver.event_count() == events_before
        return
    assert receiver.event_count() == events_before + 1
    stored = receiver.store.get_event(answer.json["event_id"])
    assert stored is not None
    assert stored["status"] == case.stored
    assert bytes(stored["body"]) == request.body
    if case.mentions is not None:
        assert case.mentions in stored["reason"]
    expected_connectors = ["archive"] if case.stored == "accepted" else []
    assert receiver.connectors_of(answer.json["event_id"]) == expected_connectors


# -- what one request cannot show: through every transport -------------------------------


def test_accepted_event_is_stored_normalized(receiver: Receiver) -> None:
    n = unique()
    body = gitleads_body(n)

    answer = receiver.post_signed("gitleads", body)

    assert answer.json["status"] == "accepted"
    stored = receiver.store.get_event(answer.json["event_id"])
    assert stored is not None
    assert stored["source"] == "gitleads"
    assert stored["type"] == "lead.created"
    assert stored["lead_key"] == f"email:dev{n}@example.com"
    assert json.loads(stored["normalized"])["lead"]["email"] == f"dev{n}@example.com"
    deliveries = receiver.store.list_deliveries(DeliveryFilter(event_id=answer.json["event_id"]))
    # Committed with its delivery; only the served process runs a worker that sends it.
    expected = {"pending", "delivered"} if receiver.transport == "process" else {"pending"}
    assert [d["connector"] for d in deliveries] == ["archive"]
    assert deliveries[0]["status"] in expected


def test_ignored_event_keeps_its_provider_event_and_no_normalized_form(
    receiver: Receiver,
) -> None:
    body = distinct(SAMPLES / "gitproductivity" / "repository.connected.json", unique())

    answer = receiver.post_signed("gitproductivity", body)

    stored = receiver.store.get_event(answer.json["event_id"])
    assert stored is not None
    assert stored["provider_event"] == "repository.connected"
    assert stored["normalized"] is None


def test_duplicate_answers_the_same_event_id_and_stores_nothing(receiver: Receiver) -> None:
    body = distinct(FIXTURES / "gitproductivity" / "developer.added.json", unique())
    first = receiver.post_signed("gitproductivity", body)
    events_before = receiver.event_count()
    deliveries_before = receiver.connectors_of(first.json["event_id"])

    again = receiver.post_signed("gitproductivity", body)

    assert first.json["status"] == "accepted"
    assert again.status == 200
    assert again.json == {"status": "duplicate", "event_id": first.json["event_id"]}
    assert receiver.event_count() == events_before
    assert receiver.connectors_of(first.json["event_id"]) == deliveries_before == ["archive"]


def test_duplicate_of_a_reserialized_body_is_still_a_duplicate(receiver: Receiver) -> None:
    # Providers may re-serialize on retry: dedup is on the event's fields, not its bytes.
    body = gitleads_body(unique())
    pretty = json.dumps(json.loads(body), indent=2).encode()
    first = receiver.post_signed("gitleads", body)
    events_before = receiver.event_count()

    again = receiver.post_signed("gitleads", pretty)

    assert again.json == {"status": "duplicate", "event_id": first.json["event_id"]}
    assert receiver.event_count() == events_before


def test_a_retried_unreadable_body_does_not_fill_the_quarantine(receiver: Receiver) -> None:
    body = unreadable_shape(unique())
    first = receiver.post_signed("gitleads", body)
    events_before = receiver.event_count()

    again = receiver.post_signed("gitleads", body)

    assert first.json["status"] == "quarantined"
    assert again.json == {"status": "duplicate", "event_id": first.json["event_id"]}
    assert receiver.event_count() == events_before


def test_characters_no_database_holds_never_cost_the_event(receiver: Receiver) -> None:
    # Valid, signed JSON: an over-long event id, a NUL and a lone surrogate (legal as JSON
    # escapes). PostgreSQL refuses them in text columns; the event must still be kept.
    n = unique()

    def developer(event_id: str, name: str = "Dev") -> bytes:
        return json.dumps(
            {
                "id": event_id,
                "type": "developer.added",
                "created_at": "2026-03-19T10:30:00Z",
                "data": {"developer_id": f"dev_{n}", "email": f"d{n}@example.com", "name": name},
            }
        ).encode()

    long_id = developer(f"e{n}" + "e" * 300)
    nul_id = developer(f"a{n}\u0000b")
    surrogate_name = developer(f"evt_surrogate_{n}", "\ud800 x")
    bodies = (long_id, nul_id, surrogate_name)
    events_before = receiver.event_count()

    answers = [receiver.post_signed("gitproductivity", body) for body in bodies]
    replays = [receiver.post_signed("gitproductivity", body) for body in bodies]

    assert [(a.status, a.json["status"]) for a in answers] == [
        (200, "accepted"),
        (200, "accepted"),
        (202, "quarantined"),
    ]
    assert [r.json for r in replays] == [
        {"status": "duplicate", "event_id": a.json["event_id"]} for a in answers
    ]
    assert receiver.event_count() == events_before + 3


def webhook_count(receiver: Receiver, source: str, answer: str) -> float:
    metrics = receiver.request("GET", "/metrics")
    assert metrics.status == 200
    assert metrics.content_type == "text/plain"
    for family in text_string_to_metric_families(metrics.text):
        if family.name == "leadrelay_webhooks_received":
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.labels == {
                    "source": source,
                    "answer": answer,
                }:
                    return sample.value
    return 0.0


def test_metrics_count_webhooks_by_source_and_answer(receiver: Receiver) -> None:
    body = distinct(FIXTURES / "leadhub" / "lead.created.json", unique())
    answers = ["accepted", "duplicate", "invalid_signature"]
    before = {answer: webhook_count(receiver, "leadhub", answer) for answer in answers}

    receiver.post_signed("leadhub", body)
    receiver.post_signed("leadhub", body)
    receiver.post("leadhub", body, {})

    after = {answer: webhook_count(receiver, "leadhub", answer) for answer in answers}
    assert after == {answer: before[answer] + 1 for answer in answers}
    families = text_string_to_metric_families(receiver.request("GET", "/metrics").text)
    assert "leadrelay_deliveries" in {family.name for family in families}


# -- Flask only: the app under the test's control -----------------------------------------


def flask_client(url: str, directory: Path) -> FlaskClient:
    config = parse_config(receiver_config(url, directory), "test.yaml", env={})
    return create_app(config, Store(url)).test_client()


def assert_flask_json_error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status
    assert response.mimetype == "application/json"
    assert response.get_json()["error"] == code
    assert response.get_json()["message"]


def test_store_unavailable_is_503_and_nothing_is_acknowledged(tmp_path: Path) -> None:
    # A directory is not a database: every connection fails, as with a missing volume.
    client = flask_client(f"sqlite:///{tmp_path}", tmp_path)
    body = gitleads_body(unique())

    response = client.post(
        "/webhooks/gitleads", data=body, headers=signed_headers("gitleads", body)
    )

    assert_flask_json_error(response, 503, "store_unavailable")
    assert_flask_json_error(client.get("/readyz"), 503, "store_unavailable")
    assert client.get("/healthz").status_code == 200


def test_readyz_is_503_before_the_schema_exists(tmp_path: Path) -> None:
    client = flask_client(f"sqlite:///{tmp_path / 'never-migrated.db'}", tmp_path)

    assert_flask_json_error(client.get("/readyz"), 503, "store_unavailable")


def test_unexpected_failure_is_a_json_500_without_internals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'leadrelay.db'}"
    migrated_store(url).close()
    client = flask_client(url, tmp_path)

    def broken_record_for(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("internal detail /srv/secret/path")

    monkeypatch.setattr(receiver_module, "record_for", broken_record_for)
    body = gitleads_body(unique())

    response = client.post(
        "/webhooks/gitleads", data=body, headers=signed_headers("gitleads", body)
    )

    assert_flask_json_error(response, 500, "internal_error")
    assert "/srv/secret/path" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)


def test_a_body_shorter_than_its_length_is_a_json_400_and_nothing_is_stored(
    tmp_path: Path,
) -> None:
    # The client went away mid-body: Werkzeug's ClientDisconnected, never a 500.
    url = f"sqlite:///{tmp_path / 'leadrelay.db'}"
    store = migrated_store(url)
    client = flask_client(url, tmp_path)
    body = gitleads_body(unique())

    response = client.post(
        "/webhooks/gitleads",
        data=body,
        headers=signed_headers("gitleads", body),
        environ_overrides={"CONTENT_LENGTH": str(len(body) + 100)},
    )

    assert_flask_json_error(response, 400, "http_error")
    assert store.list_events(EventFilter()) == []


# -- process only: a real socket and a real server ------------------------------------------


def chunks(data: bytes) -> Iterator[bytes]:
    """The body as a generator: requests sends it chunked, with no Content-Length."""
    for start in range(0, len(data), 1000):
        yield data[start : start + 1000]


@pytest.mark.parametrize("excess", [1, MAX_BODY_BYTES])
def test_chunked_body_over_the_limit_is_413(served: Receiver, excess: int) -> None:
    # No Content-Length: the limit must hold while reading, and a body cut at the limit
    # must not pass for the whole body.
    body = body_of_size(unique(), MAX_BODY_BYTES + excess)
    events_before = served.event_count()

    refused = served.post("open", chunks(body), {})

    assert_json_error(refused, 413, "payload_too_large")
    assert served.event_count() == events_before


def test_chunked_body_at_the_limit_is_accepted_whole(served: Receiver) -> None:
    body = body_of_size(unique(), MAX_BODY_BYTES)

    accepted = served.post("gitleads", chunks(body), signed_headers("gitleads", body))

    assert accepted.status == 200
    stored = served.store.get_event(accepted.json["event_id"])
    assert stored is not None
    assert bytes(stored["body"]) == body
