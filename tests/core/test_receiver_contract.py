"""Every row of the HTTP contract (docs/design.md), through the Flask test client.

The storing rows run on SQLite and PostgreSQL; each answer is checked against what the
store holds afterwards (an answer alone proves nothing about durability).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.test import TestResponse

from leadrelay.core.app.config import parse_config
from leadrelay.core.ingest.receiver import create_app
from leadrelay.core.store.store import DeliveryFilter, EventFilter, Store
from tests.conftest import config_dict, fixture_body, gitleads_body, migrated_store, signed_headers

SAMPLES = Path(__file__).resolve().parents[2] / "core" / "app" / "samples"
MAX_BODY_BYTES = 4096


def contract_config_dict(store_url: str) -> dict[str, Any]:
    """The shared test sources plus `open`, a source with no secrets, and a small body limit."""
    data = config_dict(store_url, server={"max_body_bytes": MAX_BODY_BYTES})
    data["sources"]["open"] = {"provider": "gitleads"}
    return data


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    store = migrated_store(store_url)
    yield store
    store.close()


@pytest.fixture
def app(store: Store, store_url: str) -> Flask:
    config = parse_config(contract_config_dict(store_url), "test.yaml", env={})
    return create_app(config, store)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def post(client: FlaskClient, source: str, body: bytes, headers: dict[str, str]) -> TestResponse:
    return client.post(f"/webhooks/{source}", data=body, headers=headers)


def post_signed(client: FlaskClient, provider: str, body: bytes) -> TestResponse:
    return post(client, provider, body, signed_headers(provider, body))


def all_events(store: Store) -> list[dict[str, Any]]:
    return store.list_events(EventFilter(limit=1000))


def all_deliveries(store: Store) -> list[dict[str, Any]]:
    return store.list_deliveries(DeliveryFilter(limit=1000))


def assert_json_error(response: TestResponse, status: int, code: str) -> None:
    assert response.status_code == status
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["error"] == code
    assert isinstance(body["message"], str)
    assert body["message"]


def sample_body(provider: str, name: str) -> bytes:
    return (SAMPLES / provider / name).read_bytes()


def webhook_count(client: FlaskClient, source: str, answer: str) -> float:
    text = client.get("/metrics").get_data(as_text=True)
    for family in text_string_to_metric_families(text):
        if family.name == "leadrelay_webhooks_received":
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.labels == {
                    "source": source,
                    "answer": answer,
                }:
                    return sample.value
    return 0.0


# -- storing rows (SQLite and PostgreSQL) -------------------------------------------------


def test_accepted_is_committed_with_its_deliveries(client: FlaskClient, store: Store) -> None:
    body = fixture_body("gitleads", "lead.created.json")

    response = post_signed(client, "gitleads", body)

    assert response.status_code == 200
    answer = response.get_json()
    assert answer["status"] == "accepted"
    stored = store.get_event(answer["event_id"])
    assert stored is not None
    assert stored["status"] == "accepted"
    assert stored["source"] == "gitleads"
    assert stored["type"] == "lead.created"
    assert stored["lead_key"] == "email:jane@example.com"
    assert bytes(stored["body"]) == body
    assert json.loads(stored["normalized"])["lead"]["email"] == "jane@example.com"
    deliveries = all_deliveries(store)
    assert [(d["event_id"], d["connector"], d["status"]) for d in deliveries] == [
        (answer["event_id"], "rec", "pending")
    ]


def test_duplicate_answers_the_same_event_id_and_stores_nothing(
    client: FlaskClient, store: Store
) -> None:
    body = fixture_body("gitproductivity", "developer.added.json")
    first = post_signed(client, "gitproductivity", body).get_json()
    events_before, deliveries_before = all_events(store), all_deliveries(store)

    response = post_signed(client, "gitproductivity", body)

    assert response.status_code == 200
    assert response.get_json() == {"status": "duplicate", "event_id": first["event_id"]}
    assert first["status"] == "accepted"
    assert all_events(store) == events_before
    assert all_deliveries(store) == deliveries_before
    assert len(deliveries_before) == 1


def test_duplicate_of_a_reserialized_body_is_still_a_duplicate(
    client: FlaskClient, store: Store
) -> None:
    # Providers may re-serialize on retry: dedup is on the event's fields, not its bytes.
    body = fixture_body("gitleads", "lead.created.json")
    pretty = json.dumps(json.loads(body), indent=2).encode()
    first = post_signed(client, "gitleads", body).get_json()

    response = post_signed(client, "gitleads", pretty)

    assert response.get_json() == {"status": "duplicate", "event_id": first["event_id"]}
    assert len(all_events(store)) == 1


def test_ignored_event_is_stored_for_audit_without_deliveries(
    client: FlaskClient, store: Store
) -> None:
    body = sample_body("gitproductivity", "repository.connected.json")

    response = post_signed(client, "gitproductivity", body)

    assert response.status_code == 200
    answer = response.get_json()
    assert answer["status"] == "ignored"
    stored = store.get_event(answer["event_id"])
    assert stored is not None
    assert stored["status"] == "ignored"
    assert stored["provider_event"] == "repository.connected"
    assert stored["normalized"] is None
    assert bytes(stored["body"]) == body
    assert all_deliveries(store) == []


def test_unreadable_shape_is_quarantined_raw(client: FlaskClient, store: Store) -> None:
    body = json.dumps(
        {"event": "lead.created", "timestamp": "2026-04-24T10:31:00Z", "data": "not an object"}
    ).encode()

    response = post_signed(client, "gitleads", body)

    assert response.status_code == 202
    answer = response.get_json()
    assert answer["status"] == "quarantined"
    assert "data" in answer["reason"]
    stored = store.get_event(answer["event_id"])
    assert stored is not None
    assert stored["status"] == "quarantined"
    assert bytes(stored["body"]) == body
    assert "data" in stored["reason"]
    assert all_deliveries(store) == []
    # The provider retrying the same unreadable body does not fill the quarantine.
    again = post_signed(client, "gitleads", body)
    assert again.get_json() == {"status": "duplicate", "event_id": answer["event_id"]}
    assert len(all_events(store)) == 1


def test_characters_no_database_holds_never_cost_the_event(
    client: FlaskClient, store: Store
) -> None:
    # Valid, signed JSON: an over-long event id, a NUL and a lone surrogate (legal as JSON
    # escapes). PostgreSQL refuses them in text columns; the event must still be kept.
    long_id = json.dumps(
        {
            "id": "e" * 300,
            "type": "developer.added",
            "created_at": "2026-03-19T10:30:00Z",
            "data": {"developer_id": "dev_1", "email": "one@example.com"},
        }
    ).encode()
    nul_id = long_id.replace(b'"' + b"e" * 300 + b'"', b'"a\\u0000b"')
    surrogate_name = json.dumps(
        {
            "id": "evt_surrogate",
            "type": "developer.added",
            "created_at": "2026-03-19T10:30:00Z",
            "data": {"developer_id": "dev_2", "email": "two@example.com", "name": "\ud800 x"},
        }
    ).encode()

    answers = [post_signed(client, "gitproductivity", b) for b in (long_id, nul_id, surrogate_name)]
    replays = [post_signed(client, "gitproductivity", b) for b in (long_id, nul_id, surrogate_name)]

    assert [(r.status_code, r.get_json()["status"]) for r in answers] == [
        (200, "accepted"),
        (200, "accepted"),
        (202, "quarantined"),
    ]
    assert [r.get_json() for r in replays] == [
        {"status": "duplicate", "event_id": r.get_json()["event_id"]} for r in answers
    ]
    statuses = sorted(e["status"] for e in all_events(store))
    assert statuses == ["accepted", "accepted", "quarantined"]


# -- refusals: nothing stored ---------------------------------------------------------------


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"Content-Type": "application/json"}, "missing"),
        ({"X-GitLeads-Signature": "sha256=" + "0" * 64}, "mismatch"),
        ({"X-GitLeads-Signature": "md5=abc"}, "malformed"),
    ],
)
def test_missing_or_invalid_signature_is_401_and_nothing_stored(
    client: FlaskClient, store: Store, headers: dict[str, str], reason: str
) -> None:
    body = fixture_body("gitleads", "lead.created.json")

    response = post(client, "gitleads", body, headers)

    assert_json_error(response, 401, "invalid_signature")
    assert all_events(store) == []


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_signature_by_another_secret_is_401(client: FlaskClient, store: Store) -> None:
    body = fixture_body("gitleads", "lead.created.json")

    response = post(client, "gitleads", body, signed_headers("gitleads", body, "not-our-secret"))

    assert_json_error(response, 401, "invalid_signature")
    assert all_events(store) == []


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_source_without_secrets_accepts_unsigned_requests(
    client: FlaskClient, store: Store
) -> None:
    body = gitleads_body(7)

    response = post(client, "open", body, {"Content-Type": "application/json"})

    assert response.status_code == 200
    answer = response.get_json()
    assert answer["status"] == "accepted"
    stored = store.get_event(answer["event_id"])
    assert stored is not None
    assert stored["source"] == "open"


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_unknown_source_is_404(client: FlaskClient, store: Store) -> None:
    body = fixture_body("gitleads", "lead.created.json")

    response = post(client, "nosuchsource", body, signed_headers("gitleads", body))

    assert_json_error(response, 404, "unknown_source")
    assert "nosuchsource" in response.get_json()["message"]
    assert_json_error(client.get("/webhooks/nosuchsource"), 404, "unknown_source")
    assert all_events(store) == []


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("body", "code"),
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
    ],
)
def test_body_not_a_json_object_is_400(
    client: FlaskClient, store: Store, body: bytes, code: str
) -> None:
    response = post_signed(client, "gitleads", body)

    assert_json_error(response, 400, code)
    assert all_events(store) == []


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_body_over_max_body_bytes_is_413(client: FlaskClient, store: Store) -> None:
    payload = json.loads(fixture_body("gitleads", "lead.created.json"))
    payload["data"]["bio"] = "x" * MAX_BODY_BYTES
    body = json.dumps(payload).encode()

    response = post_signed(client, "gitleads", body)

    assert_json_error(response, 413, "payload_too_large")
    assert str(MAX_BODY_BYTES) in response.get_json()["message"]
    assert all_events(store) == []


def body_of_size(size: int) -> bytes:
    payload = json.loads(fixture_body("gitleads", "lead.created.json"))
    payload["data"]["bio"] = ""
    payload["data"]["bio"] = "x" * (size - len(json.dumps(payload).encode()))
    body = json.dumps(payload).encode()
    assert len(body) == size
    return body


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_body_at_max_body_bytes_is_accepted_one_byte_more_is_413(
    client: FlaskClient, store: Store
) -> None:
    at_limit = post_signed(client, "gitleads", body_of_size(MAX_BODY_BYTES))
    over_limit = post_signed(client, "gitleads", body_of_size(MAX_BODY_BYTES + 1))

    assert at_limit.status_code == 200
    assert at_limit.get_json()["status"] == "accepted"
    assert_json_error(over_limit, 413, "payload_too_large")
    assert len(all_events(store)) == 1


def test_store_unavailable_is_503_and_nothing_is_acknowledged(tmp_path: Path) -> None:
    # A directory is not a database: every connection fails, as with a missing volume.
    url = f"sqlite:///{tmp_path}"
    config = parse_config(contract_config_dict(url), "test.yaml", env={})
    client = create_app(config, Store(url)).test_client()
    body = fixture_body("gitleads", "lead.created.json")

    response = post_signed(client, "gitleads", body)

    assert_json_error(response, 503, "store_unavailable")
    assert_json_error(client.get("/readyz"), 503, "store_unavailable")
    assert client.get("/healthz").status_code == 200


# -- probes and operations --------------------------------------------------------------


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_get_on_a_webhook_url_answers_200_without_storing(
    client: FlaskClient, store: Store
) -> None:
    response = client.get("/webhooks/leadshark")

    assert response.status_code == 200
    assert response.get_json()["status"] == "ok"
    assert client.head("/webhooks/leadshark").status_code == 200
    assert all_events(store) == []


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_healthz_and_readyz(client: FlaskClient) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json() == {"status": "ready"}


def test_readyz_is_503_before_the_schema_exists(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'never-migrated.db'}"
    config = parse_config(contract_config_dict(url), "test.yaml", env={})
    client = create_app(config, Store(url)).test_client()

    assert_json_error(client.get("/readyz"), 503, "store_unavailable")


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_metrics_count_webhooks_by_source_and_answer(client: FlaskClient) -> None:
    body = fixture_body("leadhub", "lead.created.json")
    accepted_before = webhook_count(client, "leadhub", "accepted")
    duplicate_before = webhook_count(client, "leadhub", "duplicate")
    refused_before = webhook_count(client, "leadhub", "invalid_signature")

    post_signed(client, "leadhub", body)
    post_signed(client, "leadhub", body)
    post(client, "leadhub", body, {})

    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert webhook_count(client, "leadhub", "accepted") == accepted_before + 1
    assert webhook_count(client, "leadhub", "duplicate") == duplicate_before + 1
    assert webhook_count(client, "leadhub", "invalid_signature") == refused_before + 1
    families = {f.name for f in text_string_to_metric_families(response.get_data(as_text=True))}
    assert "leadrelay_deliveries" in families


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_other_errors_are_json_too(client: FlaskClient) -> None:
    assert_json_error(client.get("/no/such/page"), 404, "not_found")
    assert_json_error(client.put("/webhooks/gitleads", data=b"{}"), 405, "method_not_allowed")
    assert_json_error(client.post("/healthz"), 405, "method_not_allowed")


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_unexpected_failure_is_a_json_500_without_internals(
    client: FlaskClient, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_submit(_record: object) -> None:
        raise RuntimeError("internal detail /srv/secret/path")

    monkeypatch.setattr(store, "submit", broken_submit)

    response = post_signed(client, "gitleads", fixture_body("gitleads", "lead.created.json"))

    assert_json_error(response, 500, "internal_error")
    assert "/srv/secret/path" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)
