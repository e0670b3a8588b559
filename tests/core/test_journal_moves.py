"""Moving journaled events into the tables when something goes wrong: an event that cannot
be stored is kept quarantined (and can be replayed after a fix) without holding up the
journal behind it; a failure of the database itself sets nothing aside."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from leadrelay.core.app.replay import reparse_quarantined
from leadrelay.core.ingest.receiver import create_app
from leadrelay.core.store import store as store_module
from leadrelay.core.store.event_rows import PreparedEvent
from leadrelay.core.store.store import DeliveryFilter, EventFilter, Store, StoreUnavailable, utcnow
from tests.conftest import accept_gitleads, gitleads_body, make_config, signed_headers


@contextmanager
def failing_moves(
    store: Store, fails: Callable[[Sequence[PreparedEvent]], Exception | None]
) -> Iterator[None]:
    """Make the store's inserts of moved events raise what `fails` returns for them."""
    rows = store._inbox._rows
    real = rows.insert

    def insert(conn: Any, prepared: Sequence[PreparedEvent]) -> Any:
        exc = fails(prepared)
        if exc is not None:
            raise exc
        return real(conn, prepared)

    rows.insert = insert  # type: ignore[method-assign]
    try:
        yield
    finally:
        rows.insert = real  # type: ignore[method-assign]


def routed(prepared: Sequence[PreparedEvent]) -> bool:
    return any(p.delivery_rows for p in prepared)


def claim_all(store: Store) -> list[str]:
    claimed = store.claim("rec", "w", 100, utcnow() + timedelta(seconds=1), timedelta(minutes=1))
    return [c.event_id for c in claimed]


def test_an_event_that_cannot_be_moved_in_is_kept_quarantined_and_the_journal_moves_on(
    store_url: str, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    config = make_config(store_url)
    broken = accept_gitleads(config, store, 1)
    behind = accept_gitleads(config, store, 2)

    def only_the_first(prepared: Sequence[PreparedEvent]) -> Exception | None:
        # Not a constraint: any error of one event's own rows (here an adapter-like bug).
        if any(p.event_id == broken and p.delivery_rows for p in prepared):
            return RuntimeError("cannot store this one")
        return None

    with caplog.at_level("ERROR", logger="leadrelay.store"), failing_moves(store, only_the_first):
        assert claim_all(store) == [behind]

    assert store.get_event(broken) is None
    [kept] = store.list_events(EventFilter(status="quarantined"))
    assert kept["reason"].startswith(f"not stored as routed (acknowledged as {broken}): ")
    assert kept["event_id"] != broken
    assert "journaled event not stored as routed" in caplog.text
    assert store.queue_stats(utcnow())["journaled"] == 0


def test_an_event_kept_quarantined_by_a_move_is_stored_and_delivered_by_a_replay(
    store_url: str, store: Store
) -> None:
    config = make_config(store_url)
    with failing_moves(
        store, lambda p: IntegrityError("INSERT", {}, Exception("x")) if routed(p) else None
    ):
        event_id = accept_gitleads(config, store, 1)
        store.settle()
        # A retry of the event before the fix is kept once, not twice.
        accept_gitleads(config, store, 1)
        store.settle()
    [kept] = store.list_events(EventFilter(status="quarantined"))

    outcome = reparse_quarantined(config, store, store.get_event(kept["event_id"]) or {})

    assert not outcome.stuck, outcome.message
    stored = store.get_event(event_id)
    assert stored is not None
    assert stored["status"] == "accepted"
    assert store.get_event(kept["event_id"])["status"] == "replayed"  # type: ignore[index]
    assert claim_all(store) == [event_id]


def test_a_replay_whose_move_fails_again_leaves_the_event_quarantined(
    store_url: str, store: Store
) -> None:
    config = make_config(store_url)
    with failing_moves(store, lambda p: RuntimeError("still broken") if routed(p) else None):
        accept_gitleads(config, store, 1)
        store.settle()
        [kept] = store.list_events(EventFilter(status="quarantined"))

        outcome = reparse_quarantined(config, store, store.get_event(kept["event_id"]) or {})

    assert outcome.stuck
    assert "not stored as routed" in outcome.message
    assert [e["status"] for e in store.list_events(EventFilter())] == ["quarantined"]


def test_a_failure_of_the_database_itself_sets_no_event_aside(store: Store, store_url: str) -> None:
    config = make_config(store_url)
    event_id = accept_gitleads(config, store, 1)
    lost = OperationalError("INSERT", {}, Exception("server closed the connection"))
    lost.connection_invalidated = True

    # Only the routed form fails: the quarantined form would go in, were it tried.
    with (
        failing_moves(store, lambda p: lost if routed(p) else None),
        pytest.raises((OperationalError, StoreUnavailable)),
    ):
        claim_all(store)

    assert store.queue_stats(utcnow())["journaled"] == 0  # the read moved it, fault gone
    assert store.list_events(EventFilter(status="quarantined")) == []
    assert claim_all(store) == [event_id]


def test_a_lead_id_too_long_for_an_index_does_not_hold_up_the_events_behind_it(
    store_url: str, store: Store
) -> None:
    # PostgreSQL refuses an index entry over ~2.7 kB (the console's provider-id index):
    # the event was acknowledged, so it is kept quarantined and the next one is delivered.
    config = make_config(store_url)
    payload = json.loads(gitleads_body(1))
    payload["data"]["id"] = secrets.token_urlsafe(6000)  # 8 kB that do not compress
    body = json.dumps(payload).encode()
    answer = (
        create_app(config, store)
        .test_client()
        .post("/webhooks/gitleads", data=body, headers=signed_headers("gitleads", body))
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)
    behind = accept_gitleads(config, store, 2)

    claimed = claim_all(store)

    assert behind in claimed
    assert store.queue_stats(utcnow())["journaled"] == 0
    assert len(store.list_deliveries(DeliveryFilter(event_id=behind))) == 1


def test_a_read_moves_a_bounded_backlog_and_says_the_rest_waits(
    store: Store, store_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A read must answer in time however long no worker ran: it moves a few batches,
    # shows those, and warns; claims move the rest.
    monkeypatch.setattr(store_module, "MOVE_BATCH", 1)
    monkeypatch.setattr(store_module, "_READ_SETTLE_MOVES", 2)
    config = make_config(store_url)
    ids = [accept_gitleads(config, store, n) for n in range(5)]

    with caplog.at_level("WARNING", logger="leadrelay.store"):
        listed = store.list_events(EventFilter())

    assert len(listed) == 2
    assert "is a delivery worker running?" in caplog.text
    assert store.queue_stats(utcnow())["journaled"] == 1  # two more moved by this read
    assert sorted(claim_all(store) + claim_all(store)) == sorted(ids)
