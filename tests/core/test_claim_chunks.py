"""One-event-per-call connectors claim several deliveries per transaction, send them one by
one, and stop at the first sign of trouble, giving the rest back untouched."""

from __future__ import annotations

from leadrelay.core.delivery.contract import Delivered, RateLimited, Retryable
from leadrelay.core.delivery.worker import Worker
from leadrelay.core.ingest.receiver import create_app
from leadrelay.core.store.store import DeliveryFilter, Store
from tests.conftest import gitleads_body, make_config, migrated_store, signed_headers
from tests.recording import RecordingConnector


def _accept(sqlite_url: str, n: int) -> tuple[Worker, Store, list[str]]:
    config = make_config(sqlite_url, connectors={"rec": {"type": "recording", "batch": 1}})
    store = migrated_store(sqlite_url)
    client = create_app(config, store).test_client()
    ids = []
    for i in range(n):
        body = gitleads_body(i)
        ids.append(
            client.post(
                "/webhooks/gitleads", data=body, headers=signed_headers("gitleads", body)
            ).json["event_id"]
        )
    return Worker(config, store), store, ids


def _rows(store: Store) -> dict[str, tuple[str, int]]:
    return {
        r["event_id"]: (r["status"], r["attempts"])
        for r in store.list_deliveries(DeliveryFilter(limit=100))
    }


def test_batch_of_one_connector_sends_a_whole_claim_in_one_cycle(sqlite_url: str) -> None:
    worker, store, ids = _accept(sqlite_url, 5)

    assert worker.run_once("rec") == 5

    assert RecordingConnector.calls["rec"] == 5
    assert [e.event_id for e in RecordingConnector.sent["rec"]] == ids
    assert set(_rows(store).values()) == {("delivered", 1)}


def test_trouble_stops_the_cycle_and_gives_the_rest_back(sqlite_url: str) -> None:
    worker, store, ids = _accept(sqlite_url, 5)
    RecordingConnector.scripts["rec"] = [Delivered(), Retryable("503 from the destination")]

    assert worker.run_once("rec") == 2

    rows = _rows(store)
    assert rows[ids[0]] == ("delivered", 1)
    assert rows[ids[1]] == ("pending", 1)
    # Not tried: no attempt spent, claimable again at once.
    assert [rows[i] for i in ids[2:]] == [("pending", 0)] * 3
    assert RecordingConnector.calls["rec"] == 2

    RecordingConnector.scripts["rec"] = [RateLimited("429", retry_after=60)]
    assert worker.run_once("rec") == 1
    assert RecordingConnector.calls["rec"] == 3
