"""The delivery queue: claims in per-lead order, leases, outcomes, superseded events.

One lead's deliveries to a connector form a line in id order (the order their events were
received). A claim takes the head of each line (no pending delivery of its lead before
it, none of its lead leased) and what is queued behind it, so a lead has one holder at a
time, across threads, processes and hosts. `Store` inherits these methods.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, bindparam, case, func, or_, select, update
from sqlalchemy.engine import Dialect

from leadrelay.core.store.backend import Backend
from leadrelay.core.store.bulk_insert import BulkInsert
from leadrelay.core.store.inbox import Moved
from leadrelay.core.store.records import (
    ClaimedDelivery,
    DeliveryUpdate,
    LeasedDelivery,
    NewestDelivered,
    UnloadableDelivery,
    load_error,
    load_lead_event,
    utcnow,
)
from leadrelay.core.store.tables import deliveries, events, lead_progress


class DeliveryQueue(ABC):
    _backend: Backend
    _insert_attempts: BulkInsert
    # Upserts of `lead_progress` (`progress_rows`), one multi-row statement per batch.
    _progress_rows: BulkInsert

    @abstractmethod
    def _read(self, *, settle: bool = True) -> AbstractContextManager[Connection]:
        """A read-only transaction; StoreUnavailable when the database cannot answer.
        With `settle`, journaled events are moved into the tables first."""

    @abstractmethod
    def _write(self) -> AbstractContextManager[Connection]:
        """A write transaction; StoreUnavailable when the database cannot take it now."""

    @abstractmethod
    def _wake_subscribers(self) -> None:
        """Tell this process's waiting workers that deliveries may be due."""

    @abstractmethod
    def _move_journaled(self, conn: Connection) -> Moved:
        """Move a batch of journaled events into the tables in `conn`'s transaction."""

    @abstractmethod
    def _moved(self, moved: Moved) -> None:
        """After the transaction that moved them committed: wake whoever should know."""

    def claim(
        self,
        connector: str,
        worker: str,
        limit: int,
        now: datetime,
        lease: timedelta,
    ) -> list[LeasedDelivery]:
        """Lease up to `limit` due deliveries of one connector, one lead's in id order.

        Taken: the head of each lead's line (no pending delivery of its lead before it, and
        none of its lead leased), then the deliveries queued behind those heads, in id order
        and as long as they are due, so one worker sends a lead's backlog in order and a
        batching connector can write it at once. A delivery without a lead key is a line of
        its own. Claims of one connector take turns (`lock_for_claim`), so a lead has one
        holder at a time; an expired lease (its worker died) makes the row claimable again.
        A delivery whose stored event this code cannot load comes back as an
        UnloadableDelivery: the caller's retry policy decides what becomes of it.
        """
        heads = (
            select(deliveries.c.id, deliveries.c.lead_key)
            .where(
                deliveries.c.status == "pending",
                deliveries.c.connector == connector,
                deliveries.c.next_attempt_at <= now,
                _lease_free(deliveries, now),
                ~_waiting(now),
            )
            .order_by(deliveries.c.next_attempt_at, deliveries.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        with self._write() as conn:
            # Journaled events first: their deliveries join the queue before the claim.
            moved = self._move_journaled(conn)
            self._backend.lock_for_claim(conn, connector)
            claimed, loaded = _lease(conn, heads, connector, worker, limit, now, lease)
        self._moved(moved)
        out: list[LeasedDelivery] = []
        for row in sorted(claimed, key=lambda r: r.id):
            stored = loaded[row.event_id]
            leased = (row.id, row.event_id, connector, row.attempts, row.created_at)
            try:
                event = load_lead_event(
                    stored.normalized, stored.body, stored.lead_key, stored.identities
                )
                out.append(ClaimedDelivery(*leased, event, lead_key=row.lead_key))
            except ValueError as exc:
                out.append(UnloadableDelivery(*leased, load_error(exc), lead_key=row.lead_key))
        return out

    def renew(self, worker: str, ids: Sequence[int], now: datetime, lease: timedelta) -> set[int]:
        """Extend the leases `worker` still holds among `ids`; returns those ids.

        The holder's heartbeat: a lease is renewed while its worker works, so only a worker
        that stopped (died, hung, lost the database) loses it.
        """
        if not ids:
            return set()
        with self._write() as conn:
            return set(
                conn.execute(
                    update(deliveries)
                    .where(
                        deliveries.c.id.in_(ids),
                        deliveries.c.lease_owner == worker,
                        deliveries.c.status == "pending",
                    )
                    .values(lease_expires_at=now + lease)
                    .returning(deliveries.c.id)
                ).scalars()
            )

    def still_held(self, worker: str, ids: Sequence[int], now: datetime) -> set[int]:
        """Which of `ids` `worker` holds a live lease on (checked before each send)."""
        if not ids:
            return set()
        with self._read(settle=False) as conn:
            return set(
                conn.execute(
                    select(deliveries.c.id).where(
                        deliveries.c.id.in_(ids),
                        deliveries.c.lease_owner == worker,
                        deliveries.c.status == "pending",
                        deliveries.c.lease_expires_at > now,
                    )
                ).scalars()
            )

    def lease_owners(self, now: datetime) -> set[str]:
        """Owners of the live leases (a starting process looks for its dead neighbours)."""
        with self._read(settle=False) as conn:
            return set(
                conn.execute(
                    select(deliveries.c.lease_owner)
                    .where(
                        deliveries.c.status == "pending",
                        deliveries.c.lease_owner.is_not(None),
                        deliveries.c.lease_expires_at > now,
                    )
                    .distinct()
                ).scalars()
            )

    def release_owners(self, owners: Sequence[str]) -> int:
        """Free every lease held by `owners` (processes known to be dead); returns how many."""
        if not owners:
            return 0
        with self._write() as conn:
            released = conn.execute(
                update(deliveries)
                .where(deliveries.c.lease_owner.in_(owners), deliveries.c.status == "pending")
                .values(lease_owner=None, lease_expires_at=None)
            ).rowcount
            if released:
                self._backend.notify(conn)
        if released:
            self._wake_subscribers()
        return released

    def newest_delivered(self, connector: str, lead_keys: set[str]) -> dict[str, NewestDelivered]:
        """Per lead key, the newest event (by `occurred_at`) delivered to `connector`."""
        if not lead_keys:
            return {}
        with self._read(settle=False) as conn:
            rows = conn.execute(
                select(
                    lead_progress.c.lead_key, lead_progress.c.occurred_at, lead_progress.c.event_id
                ).where(
                    lead_progress.c.connector == connector,
                    lead_progress.c.lead_key.in_(lead_keys),
                )
            )
            return {row.lead_key: NewestDelivered(row.occurred_at, row.event_id) for row in rows}

    def complete(self, worker: str, updates: Sequence[DeliveryUpdate], now: datetime) -> int:
        """Record the outcome of claimed deliveries; returns how many this worker still held.

        One UPDATE per distinct outcome (a batch that all went through is one statement)
        and one multi-row INSERT of attempts: a statement per delivery made recording a
        batch of 100 cost more than sending it.
        """
        if not updates:
            return 0
        same_outcome: dict[tuple[Any, ...], list[int]] = {}
        for u in updates:
            finished_at = now if u.status in ("delivered", "skipped", "dead") else None
            key = (u.status, u.attempts, u.next_attempt_at, u.last_error, finished_at)
            same_outcome.setdefault(key, []).append(u.id)
        with self._write() as conn:
            # Locked on PostgreSQL, so a worker re-claiming an expired lease waits for us.
            held = set(
                conn.execute(
                    select(deliveries.c.id)
                    .where(
                        deliveries.c.id.in_([u.id for u in updates]),
                        deliveries.c.lease_owner == worker,
                    )
                    .with_for_update()
                ).scalars()
            )
            for (status, tries, next_at, error, finished_at), ids in same_outcome.items():
                conn.execute(
                    _RECORD_OUTCOME,
                    {
                        "b_ids": ids,
                        "b_worker": worker,
                        "b_status": status,
                        "b_attempts": tries,
                        "b_next_attempt_at": next_at,
                        "b_last_error": error,
                        "b_now": now,
                        "b_finished_at": finished_at,
                    },
                )
            # A delivery deleted while it was being sent (`connectors forget`) has no row
            # to hang an attempt on; the rest of the batch is recorded as usual.
            unheld = [u.id for u in updates if u.id not in held]
            still_there = held | (
                set(
                    conn.execute(
                        select(deliveries.c.id).where(deliveries.c.id.in_(unheld))
                    ).scalars()
                )
                if unheld
                else set()
            )
            self._insert_attempts.execute(
                conn,
                [
                    self._insert_attempts.bind(
                        (
                            u.id,
                            u.attempt_number,
                            worker,
                            u.started_at,
                            now,
                            u.outcome if u.id in held else "lost_lease",
                            u.answer,
                            u.request,
                        )
                    )
                    for u in updates
                    if u.id in still_there
                ],
            )
            delivered = [u.id for u in updates if u.status == "delivered" and u.id in held]
            if delivered:
                self._record_progress(conn, delivered, now)
            dead = [u.id for u in updates if u.status == "dead" and u.id in held]
            if dead:
                _note_released(conn, dead)
        return len(held)

    def _record_progress(self, conn: Connection, delivered: list[int], now: datetime) -> None:
        """Keep, per (connector, lead), the newest event delivered (for `on_stale`)."""
        newest: dict[tuple[str, str], tuple[datetime, str]] = {}
        for row in conn.execute(
            select(
                deliveries.c.connector,
                deliveries.c.lead_key,
                events.c.occurred_at,
                events.c.event_id,
            )
            .join(events, events.c.event_id == deliveries.c.event_id)
            .where(
                deliveries.c.id.in_(delivered),
                deliveries.c.lead_key.is_not(None),
                events.c.occurred_at.is_not(None),
            )
            .order_by(deliveries.c.id)
        ):
            key = (row.connector, row.lead_key)
            if key not in newest or row.occurred_at >= newest[key][0]:
                newest[key] = (row.occurred_at, row.event_id)
        if not newest:
            return
        self._progress_rows.execute(
            conn,
            [
                self._progress_rows.bind((connector, lead_key, occurred_at, event_id, now))
                for (connector, lead_key), (occurred_at, event_id) in newest.items()
            ],
        )

    def release(self, worker: str, ids: Sequence[int]) -> None:
        """Give leased deliveries back unsent (graceful shutdown)."""
        if not ids:
            return
        with self._write() as conn:
            conn.execute(
                update(deliveries)
                .where(deliveries.c.id.in_(ids), deliveries.c.lease_owner == worker)
                .values(lease_owner=None, lease_expires_at=None)
            )

    def next_due_at(self, connector: str, now: datetime | None = None) -> datetime | None:
        """When a pending delivery of `connector` next becomes claimable, None if none is.

        A leased delivery counts from its lease's end, and one waiting behind its lead's
        earlier delivery does not count: counting either as due would have the other
        workers poll in a tight loop while the holder sends or the head waits to retry.
        """
        now = now or utcnow()
        claimable_at = case(
            (
                deliveries.c.lease_expires_at > deliveries.c.next_attempt_at,
                deliveries.c.lease_expires_at,
            ),
            else_=deliveries.c.next_attempt_at,
        )
        with self._read(settle=False) as conn:
            return conn.execute(
                select(func.min(claimable_at)).where(
                    deliveries.c.status == "pending",
                    deliveries.c.connector == connector,
                    ~_waiting(now),
                )
            ).scalar()


def _lease(
    conn: Connection,
    heads: Any,
    connector: str,
    worker: str,
    limit: int,
    now: datetime,
    lease: timedelta,
) -> tuple[list[Any], dict[str, Any]]:
    """Lease the due heads and the deliveries queued behind them: the leased rows, and
    their events' stored forms by event id."""
    taken = conn.execute(heads).all()
    if not taken:
        return [], {}
    ids = [row.id for row in taken]
    lines = {row.lead_key for row in taken if row.lead_key is not None}
    if lines and len(ids) < limit:
        ids += _queued_behind(conn, connector, lines, set(ids), limit - len(ids), now)
    claimed = conn.execute(
        update(deliveries)
        .where(deliveries.c.id.in_(ids))
        .values(lease_owner=worker, lease_expires_at=now + lease, updated_at=now)
        .returning(
            deliveries.c.id,
            deliveries.c.event_id,
            deliveries.c.attempts,
            deliveries.c.created_at,
            deliveries.c.lead_key,
        )
    ).all()
    loaded = {
        row.event_id: row
        for row in conn.execute(
            select(
                events.c.event_id,
                events.c.normalized,
                events.c.body,
                events.c.lead_key,
                events.c.identities,
            ).where(events.c.event_id.in_({row.event_id for row in claimed}))
        )
    }
    return claimed, loaded


def _lease_free(table: Any, now: datetime) -> Any:
    return or_(table.c.lease_expires_at.is_(None), table.c.lease_expires_at < now)


def _waiting(now: datetime) -> Any:
    """A delivery's lead has another pending delivery before it, or one leased now.

    Written as scalar subqueries, which both databases evaluate per candidate row with an
    index lookup (`ix_deliveries_lead_order`), so a claim walking the due index in order
    stops after `limit` heads. As NOT EXISTS, PostgreSQL planned an anti join without
    statistics on a fresh table and compared every pending row with every other one.
    """
    before, leased = deliveries.alias("before"), deliveries.alias("leased")
    first_in_line = (
        select(func.min(before.c.id))
        .where(
            before.c.connector == deliveries.c.connector,
            before.c.lead_key == deliveries.c.lead_key,
            before.c.status == "pending",
        )
        .scalar_subquery()
    )
    # min(id), like the line above, so the planners read the same index in id order even
    # without statistics (as max(lease_expires_at) PostgreSQL scanned the due index).
    leased_sibling = (
        select(func.min(leased.c.id))
        .where(
            leased.c.connector == deliveries.c.connector,
            leased.c.lead_key == deliveries.c.lead_key,
            leased.c.status == "pending",
            leased.c.lease_expires_at >= now,
            leased.c.id != deliveries.c.id,
        )
        .scalar_subquery()
    )
    return and_(
        deliveries.c.lead_key.is_not(None),
        or_(
            func.coalesce(first_in_line, deliveries.c.id) < deliveries.c.id,
            leased_sibling.is_not(None),
        ),
    )


def progress_rows(dialect: Dialect) -> BulkInsert:
    """The multi-row upsert keeping each (connector, lead)'s newest delivered event; the
    same SQL on SQLite and PostgreSQL."""
    return BulkInsert(
        lead_progress,
        ("connector", "lead_key", "occurred_at", "event_id", "updated_at"),
        dialect,
        suffix=(
            "ON CONFLICT (connector, lead_key) DO UPDATE SET occurred_at = excluded.occurred_at, "
            "event_id = excluded.event_id, updated_at = excluded.updated_at "
            "WHERE lead_progress.occurred_at <= excluded.occurred_at"
        ),
    )


def _note_released(conn: Connection, dead: list[int]) -> None:
    """A dead-lettered delivery no longer holds up its lead: say so on it, naming the
    delivery of the same lead that goes on without it."""
    after = deliveries.alias("after")
    next_in_line = (
        select(func.min(after.c.id))
        .where(
            after.c.connector == deliveries.c.connector,
            after.c.lead_key == deliveries.c.lead_key,
            after.c.id > deliveries.c.id,
        )
        .scalar_subquery()
    )
    released = conn.execute(
        select(deliveries.c.id, deliveries.c.last_error, next_in_line.label("next_id")).where(
            deliveries.c.id.in_(dead), deliveries.c.lead_key.is_not(None)
        )
    ).all()
    for row in released:
        if row.next_id is None:
            continue
        note = f"dead: released delivery {row.next_id}, next for this lead"
        conn.execute(
            update(deliveries)
            .where(deliveries.c.id == row.id)
            .values(last_error=f"{row.last_error}; {note}" if row.last_error else note)
        )


def _queued_behind(
    conn: Connection, connector: str, lines: set[str], heads: set[int], room: int, now: datetime
) -> list[int]:
    """The deliveries behind the claimed heads of `lines`, in id order, while they are due
    and unleased (a lead's line is cut at the first that is not)."""
    queued = conn.execute(
        select(
            deliveries.c.id,
            deliveries.c.lead_key,
            deliveries.c.next_attempt_at,
            deliveries.c.lease_expires_at,
        )
        .where(
            deliveries.c.connector == connector,
            deliveries.c.lead_key.in_(lines),
            deliveries.c.status == "pending",
            deliveries.c.id.not_in(heads),
        )
        .order_by(deliveries.c.id)
        .limit(room)
    ).all()
    cut: set[str] = set()
    taken: list[int] = []
    for row in queued:
        if row.lead_key in cut:
            continue
        leased = row.lease_expires_at is not None and row.lease_expires_at >= now
        if row.next_attempt_at > now or leased:
            cut.add(row.lead_key)
            continue
        taken.append(row.id)
    return taken


# One outcome for the leased deliveries `b_ids` that `b_worker` still holds.
_RECORD_OUTCOME = (
    update(deliveries)
    .where(
        deliveries.c.id.in_(bindparam("b_ids", expanding=True)),
        deliveries.c.lease_owner == bindparam("b_worker"),
    )
    .values(
        status=bindparam("b_status"),
        attempts=bindparam("b_attempts"),
        next_attempt_at=bindparam("b_next_attempt_at"),
        last_error=bindparam("b_last_error"),
        lease_owner=None,
        lease_expires_at=None,
        updated_at=bindparam("b_now"),
        finished_at=bindparam("b_finished_at"),
    )
)
