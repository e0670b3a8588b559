"""The worker: leases, lost leases, graceful stop, concurrent claims, wake-ups, purge."""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest

from leadrelay.core.app.config import Config
from leadrelay.core.delivery.contract import Delivered, Permanent, Retryable
from leadrelay.core.delivery.worker import Worker
from leadrelay.core.store.store import (
    DeliveryFilter,
    DeliveryUpdate,
    IncomingEvent,
    Store,
    utcnow,
)
from tests.conftest import gitleads_body, make_config, migrated_store, request_record
from tests.recording import RecordingConnector

LEASE = timedelta(minutes=2)
WAIT_S = 20.0


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> datetime:
        self.now += delta
        return self.now


def gitleads_record(config: Config, n: int) -> IncomingEvent:
    return request_record(config, "gitleads", gitleads_body(n))


def ingest(config: Config, store: Store, n: int) -> str:
    return store.submit_many([gitleads_record(config, n)])[0].event_id


def delivery_of(store: Store, event_id: str, connector: str = "rec") -> dict[str, Any]:
    [row] = store.list_deliveries(DeliveryFilter(event_id=event_id, connector=connector))
    return row


def statuses(store: Store) -> Counter[str]:
    return Counter(row["status"] for row in store.list_deliveries(DeliveryFilter(limit=100_000)))


@pytest.fixture
def engine(store_url: str) -> Any:
    config = make_config(store_url, delivery={"lease": "2m", "backoff": ["30s"], "jitter": 0})
    store = migrated_store(store_url)
    yield config, store
    store.close()


# -- leases ---------------------------------------------------------------------------------


def test_an_expired_lease_is_taken_again_and_the_late_complete_is_refused(engine: Any) -> None:
    config, store = engine
    event_id = ingest(config, store, 1)
    clock = FakeClock(utcnow() + timedelta(seconds=1))
    t0 = clock()

    # Worker A claims the delivery and "dies": it never completes.
    [claimed] = store.claim("rec", "worker-a", 10, t0, LEASE)
    assert claimed.event_id == event_id

    b = Worker(config, store, worker_id="worker-b", clock=clock)
    clock.advance(LEASE - timedelta(seconds=1))
    assert b.run_once("rec") == 0  # A's lease still holds
    assert RecordingConnector.sent["rec"] == []

    clock.now = t0 + LEASE + timedelta(seconds=1)
    assert b.run_once("rec") == 1
    row = delivery_of(store, event_id)
    assert (row["status"], row["attempts"]) == ("delivered", 1)

    # A comes back to life and reports a failure: it no longer holds the lease.
    late = DeliveryUpdate(
        id=claimed.id,
        status="pending",
        attempts=1,
        next_attempt_at=clock() + timedelta(seconds=30),
        last_error="503 from a stale worker",
        outcome="retryable",
        started_at=t0,
        attempt_number=1,
    )
    assert store.complete("worker-a", [late], clock()) == 0
    row = delivery_of(store, event_id)
    assert (row["status"], row["attempts"], row["last_error"]) == ("delivered", 1, None)
    history = [(a["worker"], a["outcome"]) for a in store.attempts_of(claimed.id)]
    assert history == [("worker-b", "delivered"), ("worker-a", "lost_lease")]
    assert [e.event_id for e in RecordingConnector.sent["rec"]] == [event_id]


def test_a_stale_complete_cannot_overwrite_the_new_holders_outcome(engine: Any) -> None:
    config, store = engine
    ingest(config, store, 1)
    t0 = utcnow() + timedelta(seconds=1)
    [stale] = store.claim("rec", "worker-a", 10, t0, LEASE)
    later = t0 + LEASE + timedelta(seconds=1)
    [fresh] = store.claim("rec", "worker-b", 10, later, LEASE)
    assert fresh.id == stale.id

    def update(status: str, outcome: str, error: str | None) -> DeliveryUpdate:
        return DeliveryUpdate(
            id=stale.id,
            status=status,
            attempts=1,
            next_attempt_at=later,
            last_error=error,
            outcome=outcome,
            started_at=later,
            attempt_number=1,
        )

    assert store.complete("worker-a", [update("dead", "permanent", "400 stale")], later) == 0
    assert store.complete("worker-b", [update("delivered", "delivered", None)], later) == 1
    row = delivery_of(store, fresh.event_id)
    assert (row["status"], row["last_error"]) == ("delivered", None)
    outcomes = [(a["worker"], a["outcome"]) for a in store.attempts_of(stale.id)]
    assert outcomes == [("worker-a", "lost_lease"), ("worker-b", "delivered")]


def test_concurrent_claims_take_disjoint_deliveries(engine: Any) -> None:
    config, store = engine
    for n in range(5):
        ingest(config, store, n)
    now = utcnow() + timedelta(seconds=1)
    first = store.claim("rec", "worker-a", 3, now, LEASE)
    second = store.claim("rec", "worker-b", 3, now, LEASE)
    third = store.claim("rec", "worker-c", 3, now, LEASE)
    assert [len(first), len(second), len(third)] == [3, 2, 0]
    assert not {c.id for c in first} & {c.id for c in second}


def test_next_due_counts_a_leased_delivery_from_its_lease_end(engine: Any) -> None:
    config, store = engine
    ingest(config, store, 1)
    now = utcnow() + timedelta(seconds=1)
    assert store.next_due_at("rec") <= now
    store.claim("rec", "worker-a", 10, now, LEASE)
    assert store.next_due_at("rec") == now + LEASE
    assert store.next_due_at("other") is None


def test_a_stopping_worker_gives_its_claim_back_at_once(engine: Any) -> None:
    config, store = engine
    event_id = ingest(config, store, 1)
    clock = FakeClock(utcnow() + timedelta(seconds=1))
    leaving = Worker(config, store, worker_id="leaving", clock=clock)
    leaving.stop()
    assert leaving.run_once("rec") == 0
    row = delivery_of(store, event_id)
    assert (row["status"], row["attempts"]) == ("pending", 0)

    # No waiting for a lease to expire: the next worker takes it at the same instant.
    assert Worker(config, store, worker_id="next", clock=clock).run_once("rec") == 1
    assert delivery_of(store, event_id)["status"] == "delivered"
    assert RecordingConnector.calls["rec"] == 1


def test_a_long_host_name_still_fits_the_lease_column(
    engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, store = engine
    event_id = ingest(config, store, 1)
    monkeypatch.setattr("socket.gethostname", lambda: "worker-" + "x" * 80 + ".cluster.local")
    worker = Worker(config, store, clock=FakeClock(utcnow() + timedelta(seconds=1)))
    assert len(worker.worker_id) <= 64
    assert worker.worker_id.startswith("worker-xxx")
    assert worker.run_once("rec") == 1
    [attempt] = store.attempts_of(delivery_of(store, event_id)["id"])
    assert attempt["worker"] == worker.worker_id


def test_a_stored_event_this_code_cannot_load_is_dead_lettered_not_blocking(
    engine: Any,
) -> None:
    config, store = engine
    record = gitleads_record(config, 1)
    # As after a downgrade: the stored form has a field this version's schema refuses.
    normalized = json.loads(record.normalized)
    normalized["lead"]["favourite_colour"] = "green"
    [poisoned] = store.submit_many([replace(record, normalized=json.dumps(normalized))])
    healthy = ingest(config, store, 2)
    clock = FakeClock(utcnow() + timedelta(seconds=1))
    worker = Worker(config, store, worker_id="w1", clock=clock)

    assert worker.drain("rec") == 1

    assert [e.event_id for e in RecordingConnector.sent["rec"]] == [healthy]
    row = delivery_of(store, poisoned.event_id)
    assert (row["status"], row["attempts"]) == ("dead", 1)
    assert row["last_error"] == (
        "stored event cannot be loaded: lead.favourite_colour: Extra inputs are not permitted"
    )
    assert "green" not in row["last_error"]
    [attempt] = store.attempts_of(row["id"])
    assert (attempt["worker"], attempt["outcome"]) == ("w1", "permanent")


# -- run-time disable -----------------------------------------------------------------------


def test_disabled_connector_deliveries_wait_and_resume(engine: Any) -> None:
    config, store = engine
    event_id = ingest(config, store, 1)
    store.set_connector_disabled("rec", "410 Gone")
    clock = FakeClock(utcnow() + timedelta(seconds=1))
    worker = Worker(config, store, clock=clock)
    assert worker.run_once("rec") == 0
    # Due work for a disabled connector must not make its thread spin.
    assert worker._idle_timeout("rec", 5.0) == 5.0
    assert delivery_of(store, event_id)["status"] == "pending"

    store.set_connector_disabled("rec", None)
    resumed = Worker(config, store, clock=clock)
    assert resumed.run_once("rec") == 1
    assert delivery_of(store, event_id)["status"] == "delivered"


def test_a_connector_asking_to_be_disabled_is_disabled(engine: Any) -> None:
    config, store = engine
    ingest(config, store, 1)
    second = ingest(config, store, 2)
    clock = FakeClock(utcnow() + timedelta(seconds=1))
    worker = Worker(config, store, clock=clock)
    RecordingConnector.scripts["rec"] = [Permanent("410 Gone"), Delivered()]
    connector = worker.connectors["rec"]
    connector.batch_size = 1
    connector.disable_requested = "410 Gone: the endpoint asked to stop"
    assert worker.run_once("rec") == 1
    assert store.disabled_connectors() == {"rec": "410 Gone: the endpoint asked to stop"}
    assert worker.run_once("rec") == 0
    assert delivery_of(store, second)["status"] == "pending"


def test_dead_deliveries_are_announced_to_the_on_dead_connector(sqlite_url: str) -> None:
    config = make_config(
        sqlite_url,
        connectors={
            "rec": {"type": "recording", "on_dead": "alerts", "events": ["lead.created"]},
            "alerts": {"type": "recording", "events": ["lead.activity"]},
        },
    )
    store = migrated_store(sqlite_url)
    event_id = ingest(config, store, 1)
    RecordingConnector.scripts["rec"] = [Permanent("400 invalid property")]
    worker = Worker(config, store, clock=FakeClock(utcnow() + timedelta(seconds=1)))
    assert worker.run_once("rec") == 1
    [notice] = RecordingConnector.sent["alerts"]
    assert notice.event_id == event_id
    assert notice.activity is not None
    assert notice.activity.kind == "delivery_dead"
    assert notice.activity.text == "Delivery to rec failed for good: 400 invalid property"
    store.close()


# -- many workers at once, on one SQLite file -----------------------------------------------


def test_concurrent_workers_deliver_each_event_once_on_sqlite(sqlite_url: str) -> None:
    config = make_config(sqlite_url, connectors={"rec": {"type": "recording", "batch": 7}})
    setup = migrated_store(sqlite_url)
    expected = {ingest(config, setup, n) for n in range(240)}
    setup.close()
    # One store (engine) per worker, as separate processes would have.
    stores = [Store(sqlite_url) for _ in range(4)]
    workers = [Worker(config, s, worker_id=f"w{i}") for i, s in enumerate(stores)]
    errors: list[BaseException] = []

    def drain(worker: Worker) -> None:
        try:
            worker.drain("rec")
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=drain, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert workers[0].drain("rec") == 0

    sent = Counter(e.event_id for e in RecordingConnector.sent["rec"])
    assert set(sent) == expected
    assert max(sent.values()) == 1
    assert statuses(stores[0]) == Counter({"delivered": 240})
    for s in stores:
        s.close()


# -- running: wake-ups and graceful stop ----------------------------------------------------


def test_an_ingest_commit_wakes_the_running_worker(sqlite_url: str) -> None:
    # A poll interval far longer than the test's wait: only the wake-up can deliver in time.
    config = make_config(sqlite_url, delivery={"poll_interval": "1h", "backoff": ["30s"]})
    store = migrated_store(sqlite_url)
    delivered = threading.Event()

    def record(_event: Any) -> Delivered:
        delivered.set()
        return Delivered()

    RecordingConnector.scripts["rec"] = [record]
    worker = Worker(config, store)
    worker.start()
    try:
        event_id = ingest(config, store, 1)
        assert delivered.wait(WAIT_S)
    finally:
        worker.stop()
    assert delivery_of(store, event_id)["status"] == "delivered"
    store.close()


def test_stop_finishes_the_in_flight_batch_and_claims_no_more(sqlite_url: str) -> None:
    config = make_config(
        sqlite_url,
        connectors={"rec": {"type": "recording", "batch": 1}},
        delivery={"poll_interval": "1h", "backoff": ["30s"]},
    )
    store = migrated_store(sqlite_url)
    first = ingest(config, store, 1)
    second = ingest(config, store, 2)
    in_flight = threading.Event()
    release = threading.Event()

    def slow_send(_event: Any) -> Delivered:
        in_flight.set()
        assert release.wait(WAIT_S)
        return Delivered()

    RecordingConnector.scripts["rec"] = [slow_send]
    worker = Worker(config, store)
    worker.start()
    assert in_flight.wait(WAIT_S)
    stopper = threading.Thread(target=worker.stop)
    stopper.start()
    assert worker._stopping.wait(WAIT_S)
    release.set()
    stopper.join(WAIT_S)
    assert not stopper.is_alive()

    assert delivery_of(store, first)["status"] == "delivered"
    row = delivery_of(store, second)
    assert (row["status"], row["attempts"]) == ("pending", 0)
    assert [e.event_id for e in RecordingConnector.sent["rec"]] == [first]
    store.close()


# -- retention --------------------------------------------------------------------------------


def test_purge_keeps_pending_work_and_dedup_keys_outlive_payloads(sqlite_url: str) -> None:
    config = make_config(sqlite_url, connectors={"rec": {"type": "recording", "batch": 1}})
    store = migrated_store(sqlite_url)
    done = ingest(config, store, 1)
    waiting = ingest(config, store, 2)
    clock = FakeClock(utcnow() + timedelta(seconds=1))
    RecordingConnector.scripts["rec"] = [Delivered(), Retryable("destination down")]
    assert Worker(config, store, clock=clock).run_once("rec") == 2
    assert delivery_of(store, done)["status"] == "delivered"
    assert delivery_of(store, waiting)["status"] == "pending"

    counts = store.purge(clock() + timedelta(days=31), timedelta(days=30), timedelta(days=365))
    assert counts == {
        "events": 1,
        "deliveries": 1,
        "attempts": 1,
        "dedup_keys": 0,
        "identities": 0,
        "lead_progress": 0,
    }
    assert store.get_event(done) is None
    assert store.get_event(waiting) is not None
    # A provider replaying the old signed body a month later is still a duplicate.
    assert ingest(config, store, 1) == done
    assert store.get_event(done) is None

    counts = store.purge(clock() + timedelta(days=366), timedelta(days=30), timedelta(days=365))
    # `done`'s key and person (lead id, email, GitHub) go; `waiting` is still stored
    # (pending), so its key and person must stay. The record of `done` being its lead's
    # newest delivered event lives as long as the key.
    assert counts == {
        "events": 0,
        "deliveries": 0,
        "attempts": 0,
        "dedup_keys": 1,
        "identities": 3,
        "lead_progress": 1,
    }
    assert ingest(config, store, 2) == waiting
    store.close()
