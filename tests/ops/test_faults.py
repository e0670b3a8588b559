"""Faults, and what survives them: nothing acknowledged is lost, nothing is sent twice
where the destination can tell, and retries keep to the schedule.

- SQLite locked by another connection (BEGIN EXCLUSIVE) for ~2 s: requests wait on the
  busy timeout and then succeed; held past the timeout (slow): 503, then a retry succeeds.
- A destination down for a simulated 10 minutes (injected clock): every event delivered
  once it is back, each try exactly on the backoff schedule.
- A 429 storm longer than `max_attempts`: no attempt spent, Retry-After honoured, all
  delivered after.
- A worker that dies holding a lease: nothing is sent until the lease expires, then
  everything once; the dead worker's late report is refused. And a real `connectors
  worker` SIGKILLed mid-request: its lease expires and a second worker delivers.
- The CSV path unwritable: retried on schedule, then dead with the OS reason; replay after
  the fix delivers.
- A duplicate storm (each event 5 times at once, 4 gunicorn processes, SQLite and
  PostgreSQL): stored once, delivered once (counted by webhook-id at the destination).
- PostgreSQL cut away mid-load (a TCP proxy is stopped, the server itself is untouched):
  503s while it is gone, recovery after, and every event ever answered 2xx is in the
  database.
"""

from __future__ import annotations

import itertools
import random
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
import requests
from sqlalchemy.engine import make_url

from leadrelay.core.delivery.contract import (
    Connector,
    Delivered,
    Outcome,
    RateLimited,
    Retryable,
)
from leadrelay.core.delivery.worker import Worker
from leadrelay.core.ingest.receiver import create_app
from leadrelay.core.schema import LeadEvent
from leadrelay.core.store.store import DeliveryFilter, DeliveryUpdate, Store, utcnow
from tests.conftest import gitleads_body, make_config, migrated_store, signed_headers
from tests.fakes.tcp_proxy import TcpProxy
from tests.ops.helpers import (
    SECRET,
    GunicornProcess,
    RecordingDestination,
    encode,
    gitleads_payload,
    per_process_counter,
    pg_dsn,
    post_signed,
    postgres_counts,
    postgres_schema,
    sqlite_counts,
    wait_until,
)
from tests.process import ServeProcess, write_config
from tests.recording import RecordingOptions

# -- in-process harness: the real receiver and store, a worker on an injected clock --------


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance_to(self, when: datetime) -> None:
        self.now = max(self.now, when)


class ScriptedDestination(Connector[RecordingOptions]):
    """Answers each event with `answer(event, now)` and records every try."""

    type_name: ClassVar[str] = "recording"
    options_model = RecordingOptions
    batch_size: ClassVar[int] = 10

    def __init__(self, clock: FakeClock, answer: Callable[[LeadEvent, datetime], Outcome]) -> None:
        super().__init__("rec", RecordingOptions(type="recording"))
        self.clock = clock
        self.answer = answer
        self.tries: dict[str, list[datetime]] = {}
        self.delivered: Counter[str] = Counter()

    def send(self, batch: Sequence[LeadEvent]) -> list[Outcome]:
        outcomes = []
        for event in batch:
            now = self.clock()
            self.tries.setdefault(event.event_id, []).append(now)
            outcome = self.answer(event, now)
            if isinstance(outcome, Delivered):
                self.delivered[event.event_id] += 1
            outcomes.append(outcome)
        return outcomes

    def preview(self, event: LeadEvent) -> dict[str, Any]:
        return {"event_id": event.event_id}


def ingest(store: Store, config: Any, count: int, first: int = 0) -> list[str]:
    """`count` signed GitLeads events through the real Flask receiver; their event ids."""
    client = create_app(config, store).test_client()
    event_ids = []
    for n in range(first, first + count):
        body = gitleads_body(n)
        response = client.post(
            "/webhooks/gitleads", data=body, headers=signed_headers("gitleads", body)
        )
        assert response.status_code == 200, response.get_data()
        assert response.get_json()["status"] == "accepted"
        event_ids.append(response.get_json()["event_id"])
    return event_ids


def run_until_settled(worker: Worker, store: Store, clock: FakeClock, rounds: int = 500) -> None:
    """Drain, then jump the clock to the next due retry, until nothing is pending."""
    for _ in range(rounds):
        worker.drain("rec")
        due = store.next_due_at("rec")
        if due is None:
            return
        clock.advance_to(due)
    raise AssertionError("deliveries still pending after many rounds")


def statuses(store: Store) -> Counter[str]:
    return Counter(row["status"] for row in store.list_deliveries(DeliveryFilter(limit=10_000)))


@pytest.fixture
def harness(sqlite_url: str) -> Iterator[Callable[..., tuple[Any, Store, FakeClock]]]:
    stores: list[Store] = []

    def build(**delivery: Any) -> tuple[Any, Store, FakeClock]:
        policy = {"jitter": 0, "lease": "2m", **delivery}
        config = make_config(sqlite_url, delivery=policy)
        store = migrated_store(sqlite_url)
        stores.append(store)
        return config, store, FakeClock(utcnow() + timedelta(seconds=1))

    yield build
    for store in stores:
        store.close()


# -- destination down for ten minutes --------------------------------------------------------


def test_destination_down_for_ten_minutes_then_everything_delivered_on_schedule(
    harness: Callable[..., tuple[Any, Store, FakeClock]],
) -> None:
    backoff = [timedelta(seconds=30), timedelta(minutes=2), timedelta(minutes=10)]
    config, store, clock = harness(max_attempts=8, backoff=["30s", "2m", "10m", "1h"])
    event_ids = ingest(store, config, 25)
    outage_ends = clock.now + timedelta(minutes=10)

    def answer(_event: LeadEvent, now: datetime) -> Outcome:
        return Retryable("HTTP 503 Service Unavailable") if now < outage_ends else Delivered()

    destination = ScriptedDestination(clock, answer)
    worker = Worker(config, store, {"rec": destination}, clock=clock)
    started = clock.now
    run_until_settled(worker, store, clock)

    assert destination.delivered == Counter({event_id: 1 for event_id in event_ids})
    assert statuses(store) == Counter({"delivered": len(event_ids)})
    for event_id in event_ids:
        tries = destination.tries[event_id]
        # 0, +30 s, +2 m, +10 m: the 4th try (12 m 30 s in) is the first after the outage.
        assert [b - a for a, b in itertools.pairwise(tries)] == backoff
        assert tries[0] == started
        assert tries[-1] >= outage_ends > tries[-2]
    [row] = store.list_deliveries(DeliveryFilter(event_id=event_ids[0]))
    assert row["attempts"] == 4
    assert [a["outcome"] for a in store.attempts_of(row["id"])] == ["retryable"] * 3 + ["delivered"]


# -- 429 storm -------------------------------------------------------------------------------


def test_429_storm_spends_no_attempts_and_honours_retry_after(
    harness: Callable[..., tuple[Any, Store, FakeClock]],
) -> None:
    storm = 12  # far more 429s per event than max_attempts
    config, store, clock = harness(max_attempts=3, backoff=["30s"])
    event_ids = ingest(store, config, 20)
    limited: Counter[str] = Counter()

    def answer(event: LeadEvent, _now: datetime) -> Outcome:
        if limited[event.event_id] < storm:
            limited[event.event_id] += 1
            return RateLimited("HTTP 429 Too Many Requests", retry_after=60)
        return Delivered()

    destination = ScriptedDestination(clock, answer)
    worker = Worker(config, store, {"rec": destination}, clock=clock)
    run_until_settled(worker, store, clock)

    assert destination.delivered == Counter({event_id: 1 for event_id in event_ids})
    assert statuses(store) == Counter({"delivered": len(event_ids)})
    for event_id in event_ids:
        tries = destination.tries[event_id]
        assert len(tries) == storm + 1
        assert {b - a for a, b in itertools.pairwise(tries)} == {timedelta(seconds=60)}
        [row] = store.list_deliveries(DeliveryFilter(event_id=event_id))
        assert row["attempts"] == 1  # only the successful try counted
    outcomes = Counter(
        a["outcome"]
        for row in store.list_deliveries(DeliveryFilter(limit=100))
        for a in store.attempts_of(row["id"])
    )
    assert outcomes == Counter({"rate_limited": storm * 20, "delivered": 20})


# -- a worker dies holding its lease ---------------------------------------------------------


def test_worker_dying_mid_batch_leaves_the_batch_to_the_next_after_the_lease(
    harness: Callable[..., tuple[Any, Store, FakeClock]],
) -> None:
    config, store, clock = harness(lease="2m")
    event_ids = ingest(store, config, 8)
    # The dying worker claims a batch and never reports back.
    claimed = store.claim("rec", "dead-worker", 5, clock.now, timedelta(minutes=2))
    assert len(claimed) == 5
    destination = ScriptedDestination(clock, lambda _event, _now: Delivered())
    survivor = Worker(config, store, {"rec": destination}, clock=clock)

    survivor.drain("rec")
    assert sum(destination.delivered.values()) == 3  # only the unclaimed ones
    clock.advance_to(clock.now + timedelta(minutes=2) - timedelta(seconds=1))
    survivor.drain("rec")
    assert sum(destination.delivered.values()) == 3  # the lease still holds
    clock.advance_to(clock.now + timedelta(seconds=2))
    survivor.drain("rec")

    assert destination.delivered == Counter({event_id: 1 for event_id in event_ids})
    assert statuses(store) == Counter({"delivered": 8})
    # The dead worker comes back late: its report is refused, the delivery stays delivered.
    late = [
        DeliveryUpdate(
            id=c.id,
            status="dead",
            attempts=1,
            next_attempt_at=clock.now,
            last_error="late report",
            outcome="permanent",
            started_at=clock.now,
            attempt_number=1,
        )
        for c in claimed
    ]
    assert store.complete("dead-worker", late, clock.now) == 0
    assert statuses(store) == Counter({"delivered": 8})
    outcomes = [a["outcome"] for a in store.attempts_of(claimed[0].id)]
    assert outcomes == ["delivered", "lost_lease"]


# -- CSV path unwritable ----------------------------------------------------------------------


def test_unwritable_csv_path_is_retried_then_dead_with_the_os_reason(
    tmp_path: Path, sqlite_url: str
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the CSV's directory should be")
    csv_path = blocker / "leads.csv"
    config = make_config(
        sqlite_url,
        connectors={"rec": {"type": "csv", "path": str(csv_path)}},
        delivery={"max_attempts": 3, "backoff": ["30s", "2m"], "jitter": 0},
    )
    store = migrated_store(sqlite_url)
    try:
        event_ids = ingest(store, config, 4)
        clock = FakeClock(utcnow() + timedelta(seconds=1))
        worker = Worker(config, store, clock=clock)
        started = clock.now
        run_until_settled(worker, store, clock)

        rows = store.list_deliveries(DeliveryFilter(limit=100))
        assert {row["event_id"] for row in rows} == set(event_ids)
        for row in rows:
            assert row["status"] == "dead"
            assert row["attempts"] == 3
            assert "gave up after 3 attempts" in row["last_error"]
            assert "Not a directory" in row["last_error"]
            assert str(blocker) in row["last_error"]
            tries = store.attempts_of(row["id"])
            assert [a["outcome"] for a in tries] == ["retryable"] * 3
            assert all("Not a directory" in a["error"] for a in tries)
            assert [a["started_at"] - started for a in tries] == [
                timedelta(0),
                timedelta(seconds=30),
                timedelta(seconds=30) + timedelta(minutes=2),
            ]
        # Fixed and replayed: delivered, one row per event.
        blocker.unlink()
        blocker.mkdir()
        assert store.requeue(statuses=["dead"]) == 4
        clock.advance_to(utcnow() + timedelta(seconds=1))
        run_until_settled(worker, store, clock)
        assert statuses(store) == Counter({"delivered": 4})
        lines = csv_path.read_text(encoding="utf-8").splitlines()
        assert sorted(line.split(",")[0] for line in lines[1:]) == sorted(event_ids)
    finally:
        store.close()


# -- SQLite locked by another connection -----------------------------------------------------


@pytest.fixture
def sqlite_serve(tmp_path: Path) -> Iterator[tuple[ServeProcess, Path]]:
    db_path = tmp_path / "leadrelay.db"
    config = write_config(
        tmp_path / "connectors.yaml",
        {
            "store": f"sqlite:///{db_path}",
            "sources": {"gitleads": {"provider": "gitleads", "secrets": [SECRET]}},
            "connectors": {"archive": {"type": "csv", "path": str(tmp_path / "leads.csv")}},
        },
    )
    server = ServeProcess(config).start()
    try:
        yield server, db_path
    finally:
        server.kill()


def hold_exclusive(db_path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db_path, isolation_level=None, timeout=10)
    conn.execute("BEGIN EXCLUSIVE")
    return conn


def test_sqlite_locked_for_two_seconds_requests_wait_then_succeed(
    sqlite_serve: tuple[ServeProcess, Path],
) -> None:
    server, db_path = sqlite_serve
    bodies = [encode(gitleads_payload(n)) for n in range(12)]
    lock = hold_exclusive(db_path)
    try:
        with ThreadPoolExecutor(max_workers=12) as pool:
            futures = [pool.submit(post_signed, server.base_url, body) for body in bodies]
            time.sleep(2.0)  # the fault itself: another process holds the write lock
            # Nothing can have committed, so no request may have been answered yet.
            assert not any(f.done() for f in futures), [f.result().text for f in futures]
            lock.execute("COMMIT")
            responses = [f.result() for f in futures]
    finally:
        lock.close()
    assert [r.status_code for r in responses] == [200] * len(bodies)
    assert {r.json()["status"] for r in responses} == {"accepted"}
    assert sqlite_counts(db_path)["events"] == len(bodies)


@pytest.mark.slow
def test_sqlite_locked_past_the_busy_timeout_answers_503_then_recovers(
    sqlite_serve: tuple[ServeProcess, Path],
) -> None:
    server, db_path = sqlite_serve
    body = encode(gitleads_payload(1))
    lock = hold_exclusive(db_path)
    try:
        refused = post_signed(server.base_url, body)  # waits the 5 s busy timeout, then 503
    finally:
        lock.execute("COMMIT")
        lock.close()
    assert refused.status_code == 503
    assert refused.json()["error"] == "store_unavailable"
    assert sqlite_counts(db_path)["events"] == 0
    retried = post_signed(server.base_url, body)
    assert (retried.status_code, retried.json()["status"]) == (200, "accepted")
    assert sqlite_counts(db_path)["events"] == 1


# -- duplicate storm across four gunicorn processes ------------------------------------------

STORM_EVENTS = 30
STORM_COPIES = 5


@pytest.mark.parametrize(
    "store_kind",
    ["sqlite", pytest.param("postgres", marks=[pytest.mark.postgres, pytest.mark.slow])],
)
def test_duplicate_storm_across_four_processes_stores_and_delivers_once(
    store_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    db_path = tmp_path / "leadrelay.db"
    store_url = (
        request.getfixturevalue("postgres_url")
        if store_kind == "postgres"
        else f"sqlite:///{db_path}"
    )

    def count_rows() -> dict[str, int]:
        if store_kind == "postgres":
            return postgres_counts(store_url)
        return sqlite_counts(db_path)

    destination = RecordingDestination()
    with destination.running() as hook:
        config = write_config(
            tmp_path / "connectors.yaml",
            {
                "store": store_url,
                "sources": {"gitleads": {"provider": "gitleads", "secrets": [SECRET]}},
                "connectors": {"hook": {"type": "webhook", "url": f"{hook.base_url}/in"}},
            },
        )
        server = GunicornProcess(config, processes=4)
        with server:
            wait_until(
                lambda: len(server.children()) == 4,
                timeout=20,
                message="gunicorn did not fork 4 workers",
            )
            bodies = [encode(gitleads_payload(n)) for n in range(STORM_EVENTS)]
            sends = [body for body in bodies for _ in range(STORM_COPIES)]
            random.Random(7).shuffle(sends)
            with ThreadPoolExecutor(max_workers=20) as pool:
                responses = list(pool.map(lambda b: post_signed(server.base_url, b), sends))
            answers_by_body: dict[bytes, Counter[str]] = {}
            ids_by_body: dict[bytes, set[str]] = {}
            for body, response in zip(sends, responses, strict=True):
                assert response.status_code == 200, response.text
                answers_by_body.setdefault(body, Counter())[response.json()["status"]] += 1
                ids_by_body.setdefault(body, set()).add(response.json()["event_id"])
            for body in bodies:
                assert answers_by_body[body] == Counter(
                    {"accepted": 1, "duplicate": STORM_COPIES - 1}
                )
                assert len(ids_by_body[body]) == 1
            event_ids = {next(iter(ids)) for ids in ids_by_body.values()}
            counts = count_rows()
            assert counts["events"] == STORM_EVENTS
            assert counts["deliveries"] == STORM_EVENTS
            wait_until(
                lambda: set(destination.webhook_ids()) == event_ids,
                timeout=30,
                message=lambda: f"destination got {destination.count()}/{STORM_EVENTS}",
            )
            served = {
                pid
                for answer in ("accepted", "duplicate")
                for pid, n in per_process_counter(
                    server.metrics_dir,
                    "leadrelay_webhooks_received_total",
                    source="gitleads",
                    answer=answer,
                ).items()
                if n
            }
            assert len(served) >= 2, served
    assert destination.webhook_ids() == Counter({event_id: 1 for event_id in event_ids})


# -- PostgreSQL cut away mid-load ------------------------------------------------------------


@pytest.mark.postgres
def test_postgres_unavailable_mid_load_503s_then_recovers_with_nothing_lost(
    tmp_path: Path, postgres_base_url: str
) -> None:
    with postgres_schema(postgres_base_url) as direct_url:
        parsed = make_url(direct_url)
        proxy = TcpProxy(parsed.host or "127.0.0.1", parsed.port or 5432).start()
        proxied_url = parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(
            hide_password=False
        )
        config = write_config(
            tmp_path / "connectors.yaml",
            {
                "store": proxied_url,
                "sources": {"gitleads": {"provider": "gitleads", "secrets": [SECRET]}},
                "connectors": {"archive": {"type": "csv", "path": str(tmp_path / "leads.csv")}},
                # A batch claimed just before the cut may fail to record its outcome; a
                # short lease lets it be taken again well inside the recovery deadline.
                "delivery": {"poll_interval": "200ms", "lease": "3s"},
            },
        )
        results: list[tuple[bytes, int, dict[str, Any]]] = []
        stop_load = threading.Event()

        def load(worker_number: int) -> None:
            n = worker_number * 100_000
            while not stop_load.is_set():
                body = encode(gitleads_payload(n))
                n += 1
                response = post_signed(server.base_url, body, timeout=30)
                results.append((body, response.status_code, response.json()))

        def answered(status: int) -> int:
            return sum(1 for _, code, _ in results if code == status)

        try:
            with ServeProcess(config) as server:
                threads = [threading.Thread(target=load, args=(i,)) for i in range(4)]
                for thread in threads:
                    thread.start()
                try:
                    wait_until(lambda: answered(200) >= 20, timeout=30, message="no load accepted")
                    proxy.stop()
                    wait_until(
                        lambda: answered(503) >= 8,
                        timeout=30,
                        message=lambda: (
                            f"no 503s with the database away: {Counter(c for _, c, _ in results)}"
                        ),
                    )
                    ready = requests.get(server.url("/readyz"), timeout=10)
                    assert ready.status_code == 503
                    assert ready.json()["error"] == "store_unavailable"
                    accepted_before = answered(200)
                    proxy.start()
                    wait_until(
                        lambda: answered(200) >= accepted_before + 20,
                        timeout=30,
                        message="no recovery after the database came back",
                    )
                finally:
                    stop_load.set()
                    for thread in threads:
                        thread.join(timeout=60)
                # Providers retry what was refused; then every event sent is stored once.
                for body, code, _ in list(results):
                    if code == 503:
                        retried = post_signed(server.base_url, body)
                        assert retried.status_code == 200
                        assert retried.json()["status"] in {"accepted", "duplicate"}
                codes = Counter(code for _, code, _ in results)
                assert set(codes) <= {200, 503}, codes
                assert all(
                    answer.get("error") == "store_unavailable"
                    for _, code, answer in results
                    if code == 503
                )
                wait_until(
                    lambda: (
                        postgres_counts(direct_url)["deliveries"]
                        == postgres_counts(direct_url)["events"]
                        and _pending(direct_url) == 0
                    ),
                    timeout=30,
                    message="deliveries did not recover",
                )
        finally:
            proxy.stop()
        acknowledged = {answer["event_id"] for _, code, answer in results if code == 200}
        stored = _event_ids(direct_url)
        assert acknowledged <= stored  # every 2xx is in the database
        assert len(stored) == len({body for body, _, _ in results})  # every event, once
        assert codes[503] >= 8


def _event_ids(url: str) -> set[str]:
    import psycopg

    with psycopg.connect(pg_dsn(url)) as conn:
        return {row[0] for row in conn.execute("SELECT event_id FROM events")}


def _pending(url: str) -> int:
    import psycopg

    with psycopg.connect(pg_dsn(url)) as conn:
        row = conn.execute("SELECT count(*) FROM deliveries WHERE status <> 'delivered'").fetchone()
    return int(row[0]) if row else 0
