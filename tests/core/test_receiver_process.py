"""The HTTP contract once more, against `connectors serve` running as a real process.

One server for the module (starting gunicorn costs about a second); every test sends
bodies of its own, so tests do not depend on each other's rows. What the server stored is
read back from its SQLite file by a separate Store, as an operator's tools would.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from leadrelay.core.store.store import DeliveryFilter, Store
from tests.conftest import SECRETS, fixture_body, gitleads_body, signed_headers
from tests.process import ServeProcess, write_config

MAX_BODY_BYTES = 4096
TIMEOUT_S = 10
SAMPLES = Path(__file__).resolve().parents[2] / "core" / "app" / "samples"
HAVE_CSV_CONNECTOR = importlib.util.find_spec("leadrelay.connectors.csv_file") is not None


def serve_config(directory: Path, store_url: str) -> dict[str, Any]:
    sources: dict[str, Any] = {
        name: {"provider": name, "secrets": [secret]} for name, secret in SECRETS.items()
    }
    sources["open"] = {"provider": "gitleads"}
    connectors: dict[str, Any] = {}
    if HAVE_CSV_CONNECTOR:
        connectors["archive"] = {"type": "csv", "path": str(directory / "leads.csv")}
    return {
        "store": store_url,
        "sources": sources,
        "connectors": connectors,
        "server": {"max_body_bytes": MAX_BODY_BYTES},
    }


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServeProcess, Store]]:
    directory = tmp_path_factory.mktemp("serve")
    store_url = f"sqlite:///{directory / 'leadrelay.db'}"
    config_path = write_config(directory / "connectors.yaml", serve_config(directory, store_url))
    server = ServeProcess(config_path)
    assert not (directory / "leadrelay.db").exists()
    server.start()
    # The server created and migrated the database by itself (no `connectors migrate`).
    assert requests.get(server.url("/readyz"), timeout=TIMEOUT_S).status_code == 200
    store = Store(store_url)
    try:
        yield server, store
    finally:
        store.close()
        server.stop()


@pytest.fixture
def server(served: tuple[ServeProcess, Store]) -> ServeProcess:
    return served[0]


@pytest.fixture
def store(served: tuple[ServeProcess, Store]) -> Store:
    return served[1]


def post(
    server: ServeProcess, source: str, body: Any, headers: dict[str, str]
) -> requests.Response:
    return requests.post(
        server.url(f"/webhooks/{source}"), data=body, headers=headers, timeout=TIMEOUT_S
    )


def post_signed(server: ServeProcess, provider: str, body: bytes) -> requests.Response:
    return post(server, provider, body, signed_headers(provider, body))


def assert_json_error(response: requests.Response, status: int, code: str) -> None:
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["error"] == code
    assert isinstance(body["message"], str)
    assert body["message"]


def deliveries_of(store: Store, event_id: str) -> list[dict[str, Any]]:
    return store.list_deliveries(DeliveryFilter(event_id=event_id))


def test_accepted_then_duplicate(server: ServeProcess, store: Store) -> None:
    body = gitleads_body(101)

    first = post_signed(server, "gitleads", body)
    again = post_signed(server, "gitleads", body)

    assert first.status_code == 200
    answer = first.json()
    assert answer["status"] == "accepted"
    stored = store.get_event(answer["event_id"])
    assert stored is not None
    assert stored["status"] == "accepted"
    assert bytes(stored["body"]) == body
    assert again.status_code == 200
    assert again.json() == {"status": "duplicate", "event_id": answer["event_id"]}
    expected_connectors = ["archive"] if HAVE_CSV_CONNECTOR else []
    assert [d["connector"] for d in deliveries_of(store, answer["event_id"])] == (
        expected_connectors
    )


def test_ignored_is_stored_for_audit(server: ServeProcess, store: Store) -> None:
    body = (SAMPLES / "gitproductivity" / "repository.connected.json").read_bytes()

    response = post_signed(server, "gitproductivity", body)

    assert response.status_code == 200
    answer = response.json()
    assert answer["status"] == "ignored"
    stored = store.get_event(answer["event_id"])
    assert stored is not None
    assert stored["status"] == "ignored"
    assert deliveries_of(store, answer["event_id"]) == []


def test_unreadable_is_quarantined(server: ServeProcess, store: Store) -> None:
    body = json.dumps(
        {"event": "lead.created", "timestamp": "2026-04-24T11:00:00Z", "data": "a string"}
    ).encode()

    response = post_signed(server, "gitleads", body)

    assert response.status_code == 202
    answer = response.json()
    assert answer["status"] == "quarantined"
    stored = store.get_event(answer["event_id"])
    assert stored is not None
    assert stored["status"] == "quarantined"
    assert bytes(stored["body"]) == body


def test_leadshark_signature_over_the_wire(server: ServeProcess, store: Store) -> None:
    body = fixture_body("leadshark", "email.captured.json")

    response = post_signed(server, "leadshark", body)

    assert response.status_code == 200
    assert response.json()["status"] in ("accepted", "duplicate")
    assert store.get_event(response.json()["event_id"]) is not None


def test_bad_signature_is_401(server: ServeProcess, store: Store) -> None:
    body = gitleads_body(102)

    missing = post(server, "gitleads", body, {"Content-Type": "application/json"})
    wrong = post(server, "gitleads", body, signed_headers("gitleads", body, "wrong-secret"))

    assert_json_error(missing, 401, "invalid_signature")
    assert_json_error(wrong, 401, "invalid_signature")
    # Had either been stored, the signed retry would be a duplicate.
    assert post_signed(server, "gitleads", body).json()["status"] == "accepted"


def test_unsigned_source_accepts(server: ServeProcess) -> None:
    response = post(server, "open", gitleads_body(103), {"Content-Type": "application/json"})

    assert response.status_code == 200
    assert response.json()["status"] == "accepted"


def test_unknown_source_is_404(server: ServeProcess) -> None:
    body = gitleads_body(104)

    assert_json_error(
        post(server, "nope", body, signed_headers("gitleads", body)), 404, "unknown_source"
    )
    assert_json_error(
        requests.get(server.url("/webhooks/nope"), timeout=TIMEOUT_S), 404, "unknown_source"
    )


@pytest.mark.parametrize(
    ("body", "code"),
    [(b"{not json", "invalid_json"), (b"[]", "not_an_object"), (b"[1, 2]", "not_an_object")],
)
def test_not_a_json_object_is_400(server: ServeProcess, body: bytes, code: str) -> None:
    assert_json_error(post_signed(server, "gitleads", body), 400, code)


def test_body_over_the_limit_is_413(server: ServeProcess) -> None:
    payload = json.loads(gitleads_body(105))
    payload["data"]["bio"] = "x" * (2 * MAX_BODY_BYTES)
    body = json.dumps(payload).encode()

    assert_json_error(post_signed(server, "gitleads", body), 413, "payload_too_large")


def gitleads_body_of_size(n: int, size: int) -> bytes:
    payload = json.loads(gitleads_body(n))
    payload["data"]["bio"] = ""
    payload["data"]["bio"] = "x" * (size - len(json.dumps(payload).encode()))
    body = json.dumps(payload).encode()
    assert len(body) == size
    return body


def chunks(data: bytes) -> Iterator[bytes]:
    """The body as a generator: requests sends it chunked, with no Content-Length."""
    for start in range(0, len(data), 1000):
        yield data[start : start + 1000]


@pytest.mark.parametrize("excess", [1, MAX_BODY_BYTES])
def test_chunked_body_over_the_limit_is_413(server: ServeProcess, excess: int) -> None:
    # No Content-Length: the limit must hold while reading, and a body cut at the limit
    # must not pass for the whole body.
    body = gitleads_body_of_size(106, MAX_BODY_BYTES + excess)

    refused = post(server, "open", chunks(body), {})

    assert_json_error(refused, 413, "payload_too_large")


def test_chunked_body_at_the_limit_is_accepted_whole(server: ServeProcess, store: Store) -> None:
    body = gitleads_body_of_size(107, MAX_BODY_BYTES)

    accepted = post(server, "gitleads", chunks(body), signed_headers("gitleads", body))

    assert accepted.status_code == 200
    stored = store.get_event(accepted.json()["event_id"])
    assert stored is not None
    assert bytes(stored["body"]) == body


def test_get_on_webhook_url_is_200(server: ServeProcess) -> None:
    response = requests.get(server.url("/webhooks/leadshark"), timeout=TIMEOUT_S)

    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_probes_and_metrics(server: ServeProcess) -> None:
    post(server, "gitleads", b"{}", {})  # a refusal, so the counter has a sample

    health = requests.get(server.url("/healthz"), timeout=TIMEOUT_S)
    ready = requests.get(server.url("/readyz"), timeout=TIMEOUT_S)
    metrics = requests.get(server.url("/metrics"), timeout=TIMEOUT_S)

    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
    assert metrics.status_code == 200
    assert metrics.headers["Content-Type"].startswith("text/plain")
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(metrics.text)
        for sample in family.samples
    }
    key = (
        "leadrelay_webhooks_received_total",
        (("answer", "invalid_signature"), ("source", "gitleads")),
    )
    assert samples[key] >= 1


def test_other_errors_are_json(server: ServeProcess) -> None:
    assert_json_error(
        requests.get(server.url("/nothing/here"), timeout=TIMEOUT_S), 404, "not_found"
    )
    assert_json_error(
        requests.put(server.url("/webhooks/gitleads"), data=b"{}", timeout=TIMEOUT_S),
        405,
        "method_not_allowed",
    )
