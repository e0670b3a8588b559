"""The durable store: migrations, one-transaction ingest, retention and group commit."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import DateTime, inspect, update
from sqlalchemy.dialects import sqlite

from leadrelay.core.ingest.receiver import create_app
from leadrelay.core.store.group_commit import GroupCommitter
from leadrelay.core.store.store import (
    DeliveryFilter,
    EventFilter,
    IncomingEvent,
    Store,
    utcnow,
)
from leadrelay.core.store.tables import UTCDateTime, dedup_keys, deliveries, events, inbox
from tests.conftest import (
    gitleads_body,
    make_config,
    migrated_store,
    signed_headers,
    table_rows,
)
from tests.factories import delivered_update

RETENTION = timedelta(days=30)
DEDUP_RETENTION = timedelta(days=365)
TABLES = {"dedup_keys", "events", "deliveries", "attempts", "connector_state", "housekeeping"}


@pytest.fixture
def client(store_url: str, store: Store) -> FlaskClient:
    return create_app(make_config(store_url), store).test_client()


def post_event(client: FlaskClient, n: int) -> dict[str, str]:
    body = gitleads_body(n)
    response = client.post(
        "/webhooks/gitleads", data=body, headers=signed_headers("gitleads", body)
    )
    assert response.status_code == 200
    answer: dict[str, str] = response.get_json()
    return answer


def record(n: int, *, connectors: tuple[str, ...] = ("rec",)) -> IncomingEvent:
    now = utcnow()
    return IncomingEvent(
        event_id=f"evt_test_{n}",
        source="gitleads",
        provider="gitleads",
        status="ignored",
        idempotency_key=f"key-{n}",
        received_at=now,
        body=b'{"event":"x"}',
        headers={},
        connectors=connectors,
    )


def purge_at(store: Store, days_from_now: float) -> dict[str, int]:
    return store.purge(utcnow() + timedelta(days=days_from_now), RETENTION, DEDUP_RETENTION)


def deliver(store: Store, event_ids: set[str] | None = None) -> int:
    """Mark the `rec` deliveries of `event_ids` (default: all due) delivered, as a worker would."""
    now = utcnow()
    claimed = store.claim("rec", "test-worker", 100, now, timedelta(minutes=1))
    chosen = [c for c in claimed if event_ids is None or c.event_id in event_ids]
    updates = [delivered_update(c.id, now) for c in chosen]
    held = store.complete("test-worker", updates, now)
    store.release("test-worker", [c.id for c in claimed if c not in chosen])
    return held


# -- migrations ----------------------------------------------------------------------------


def test_migrate_is_idempotent_and_keeps_data(store_url: str) -> None:
    store = Store(store_url)
    try:
        store.migrate()
        store.migrate()
        assert set(inspect(store.engine).get_table_names()) >= TABLES
        [result] = store.submit_many([record(1)])
        store.migrate()
        again = Store(store_url)
        again.migrate()
        again.close()

        assert result.duplicate is False
        assert [e["event_id"] for e in store.list_events(EventFilter())] == ["evt_test_1"]
        store.ping()
    finally:
        store.close()


def test_fresh_sqlite_file_is_created_by_migrate(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    store = Store(url)
    try:
        store.migrate()
        store.ping()
        with store.engine.connect() as conn:
            journal = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
            synchronous = conn.exec_driver_sql("PRAGMA synchronous").scalar()
    finally:
        store.close()

    assert journal == "wal"
    assert synchronous == 2  # FULL: an acknowledged event survives a power cut


# -- ingest ------------------------------------------------------------------------------


def test_group_ingest_answers_each_record_in_order(store: Store) -> None:
    results = store.submit_many([record(1), record(2), record(1), record(3), record(2)])

    assert [(r.event_id, r.duplicate) for r in results] == [
        ("evt_test_1", False),
        ("evt_test_2", False),
        ("evt_test_1", True),
        ("evt_test_3", False),
        ("evt_test_2", True),
    ]
    assert len(store.list_events(EventFilter())) == 3
    assert len(store.list_deliveries(DeliveryFilter())) == 3


def test_one_record_twice_in_a_group_is_stored_once(store: Store) -> None:
    same = record(1)

    results = store.submit_many([same, same])

    assert [r.duplicate for r in results] == [False, True]


def test_same_key_from_another_source_is_another_event(store: Store) -> None:
    other = replace(record(1), source="open", event_id="evt_test_other")

    results = store.submit_many([record(1), other])

    assert [r.duplicate for r in results] == [False, False]
    assert table_rows(store, dedup_keys) == 2


# -- retention -------------------------------------------------------------------------------


def test_purge_keeps_dedup_keys_so_an_old_replay_is_still_a_duplicate(
    client: FlaskClient, store: Store
) -> None:
    answer = post_event(client, 1)
    assert deliver(store) == 1

    counts = purge_at(store, days_from_now=40)
    replay = post_event(client, 1)

    assert counts["events"] == 1
    assert counts["deliveries"] == 1
    assert counts["attempts"] == 1
    assert counts["dedup_keys"] == 0
    assert store.get_event(answer["event_id"]) is None
    assert replay == {"status": "duplicate", "event_id": answer["event_id"]}
    assert store.list_events(EventFilter()) == []
    assert store.list_deliveries(DeliveryFilter()) == []


def test_purge_drops_dedup_keys_after_dedup_retention(client: FlaskClient, store: Store) -> None:
    answer = post_event(client, 1)
    deliver(store)

    counts = purge_at(store, days_from_now=400)
    replay = post_event(client, 1)

    assert counts["dedup_keys"] == 1
    assert replay == {"status": "accepted", "event_id": answer["event_id"]}


def test_purge_keeps_recent_events(client: FlaskClient, store: Store) -> None:
    answer = post_event(client, 1)
    deliver(store)

    counts = purge_at(store, days_from_now=10)

    assert counts == {
        "events": 0,
        "deliveries": 0,
        "attempts": 0,
        "dedup_keys": 0,
        "identities": 0,
        "lead_progress": 0,
    }
    assert store.get_event(answer["event_id"]) is not None


def test_pending_delivery_keeps_its_event_and_dedup_key(client: FlaskClient, store: Store) -> None:
    pending = post_event(client, 1)
    done = post_event(client, 2)
    assert deliver(store, {done["event_id"]}) == 1

    counts = purge_at(store, days_from_now=400)
    replay = post_event(client, 1)

    assert counts["events"] == 1
    assert store.get_event(done["event_id"]) is None
    kept = store.get_event(pending["event_id"])
    assert kept is not None
    assert kept["normalized"] is not None
    assert [(d["event_id"], d["status"]) for d in store.list_deliveries(DeliveryFilter())] == [
        (pending["event_id"], "pending")
    ]
    # Its dedup key outlived dedup_retention because the event is still there.
    assert replay == {"status": "duplicate", "event_id": pending["event_id"]}
    [claimed] = store.claim("rec", "late-worker", 100, utcnow(), timedelta(minutes=1))
    assert claimed.event.event_id == pending["event_id"]
    assert claimed.event.raw["data"]["id"] == "lead_1"


# -- group commit ---------------------------------------------------------------------------


def test_group_commit_isolates_a_failing_record() -> None:
    committed: list[Sequence[int]] = []
    lock = threading.Lock()

    def commit(records: Sequence[int]) -> list[int]:
        with lock:
            committed.append(list(records))
        if 13 in records:
            raise ValueError("bad record")
        return [r * 10 for r in records]

    committer: GroupCommitter[int, int] = GroupCommitter(commit)
    barrier = threading.Barrier(20, timeout=10)

    def submit(value: int) -> int | str:
        barrier.wait()
        try:
            return committer.submit(value)
        except ValueError as exc:
            return str(exc)

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(submit, range(20)))

    assert answers == [v * 10 if v != 13 else "bad record" for v in range(20)]
    assert [13] in committed  # retried alone, after failing its group


def test_group_commit_shared_failure_fails_the_whole_group() -> None:
    class Down(Exception):
        pass

    def commit(records: Sequence[int]) -> list[int]:
        raise Down("store down")

    committer: GroupCommitter[int, int] = GroupCommitter(
        commit, shared_failure=lambda exc: isinstance(exc, Down)
    )

    for value in range(3):
        with pytest.raises(Down):
            committer.submit(value)


def test_a_group_larger_than_one_statement_is_stored_whole(store: Store) -> None:
    # 1,200 events with two deliveries each take several multi-row statements per table
    # and two dedup lookups on SQLite; events stored before, at the start and the end of
    # the group, come back as duplicates.
    before = [*range(50), *range(1150, 1200)]
    store.submit_many([record(n) for n in before])
    group = [record(n, connectors=("rec", "other")) for n in range(1200)]

    results = store.submit_many(group)

    assert [r.duplicate for r in results] == [True] * 50 + [False] * 1100 + [True] * 50
    assert table_rows(store, dedup_keys) == 1200
    events = store.list_events(EventFilter(limit=2000))
    assert len(events) == 1200
    stored = {e["event_id"]: e for e in events}["evt_test_1149"]
    assert stored["received_at"] == group[1149].received_at
    deliveries = store.list_deliveries(DeliveryFilter(limit=5000))
    assert len(deliveries) == 100 + 1100 * 2


def test_bulk_inserted_times_are_stored_in_the_same_text_as_other_writes(
    sqlite_url: str,
) -> None:
    # SQLite keeps datetimes as text, compared as text: the ingest's multi-row inserts
    # must write the format SQLAlchemy writes elsewhere, also for a time on a whole second
    # (the driver's own adapter would drop the ".000000").
    on_the_second = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    event = replace(record(1), received_at=on_the_second)

    store = migrated_store(sqlite_url)
    try:
        store.submit_many([event])
        with store.engine.begin() as conn:
            stored = conn.exec_driver_sql("SELECT received_at FROM events").scalar_one()
            conn.execute(update(events).values(occurred_at=on_the_second))
            written_by_core = conn.exec_driver_sql("SELECT occurred_at FROM events").scalar_one()
    finally:
        store.close()
    assert stored == written_by_core == "2026-01-02 03:04:05.000000"


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        datetime(2026, 11, 30, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 3, 1, 0, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
    ],
)
def test_sqlite_times_bind_to_the_text_sqlalchemy_writes(moment: datetime) -> None:
    dialect = sqlite.dialect()
    core_form = DateTime().dialect_impl(dialect).bind_processor(dialect)
    ours = UTCDateTime().bind_processor(dialect)
    assert core_form is not None
    assert ours is not None
    assert ours(moment) == core_form(moment.astimezone(UTC).replace(tzinfo=None))
    with pytest.raises(ValueError, match="naive datetime"):
        ours(moment.replace(tzinfo=None))


def test_an_acknowledged_event_is_one_journal_row_until_a_read_moves_it(store: Store) -> None:
    result = store.submit(record(1))

    assert not result.duplicate
    assert [table_rows(store, t) for t in (inbox, events, dedup_keys, deliveries)] == [1, 0, 0, 0]
    assert store.get_event(result.event_id) is not None  # a read moves the journal first
    assert [table_rows(store, t) for t in (inbox, events, dedup_keys, deliveries)] == [0, 1, 1, 1]
    # A copy of a moved event: a duplicate, and nothing of it stays in the journal.
    assert store.submit(record(1)).duplicate
    assert table_rows(store, inbox) == 0
