"""The durable store: events, dedup keys and the delivery queue, on SQLite or PostgreSQL.

Durability rules this module keeps:
- An event is acknowledged only after the transaction holding its dedup key, its row
  and its deliveries has committed (SQLite: WAL with `synchronous=FULL`).
- Dedup is a primary key on (source, idempotency key), so racing receivers, processes
  or hosts cannot both accept one event.
- Writers on SQLite start with `BEGIN IMMEDIATE`, so they queue on the busy timeout
  instead of failing half-way when another writer holds the lock.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from importlib.resources import files
from typing import Any, NamedTuple

from pydantic import ValidationError
from sqlalchemy import (
    Connection,
    Engine,
    and_,
    bindparam,
    case,
    create_engine,
    delete,
    event,
    func,
    insert,
    make_url,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from leadrelay.core.logs import fields
from leadrelay.core.schema import LeadEvent
from leadrelay.core.store.bulk_insert import MAX_PARAMETERS, BulkInsert, driver_execute
from leadrelay.core.store.tables import attempts, connector_state, dedup_keys, deliveries, events
from leadrelay.core.store.write_lock import WriteLock, WriteLockTimeout

log = logging.getLogger("leadrelay.store")

NOTIFY_CHANNEL = "leadrelay_deliveries"
SQLITE_BUSY_TIMEOUT_S = 5.0


class StoreUnavailable(Exception):
    """The database cannot be reached or written right now (answered 503, retried later)."""


def utcnow() -> datetime:
    return datetime.now(UTC)


# -- records ------------------------------------------------------------------------------


@dataclass(frozen=True)
class IncomingEvent:
    """What the receiver stores for one verified request."""

    event_id: str
    source: str
    provider: str
    status: str  # accepted | ignored | quarantined
    idempotency_key: str
    received_at: datetime
    body: bytes
    headers: dict[str, str]
    type: str | None = None
    provider_event: str | None = None
    lead_key: str | None = None
    occurred_at: datetime | None = None
    normalized: str | None = None
    reason: str | None = None
    connectors: tuple[str, ...] = ()


class PreparedEvent(NamedTuple):
    """An IncomingEvent as driver-ready rows (`Store.prepare`)."""

    source: str
    idempotency_key: str
    event_id: str
    key_row: tuple[Any, ...]
    event_row: tuple[Any, ...]
    delivery_rows: tuple[tuple[Any, ...], ...]


@dataclass(frozen=True)
class IngestResult:
    event_id: str
    duplicate: bool


@dataclass(frozen=True)
class ClaimedDelivery:
    id: int
    event_id: str
    connector: str
    attempts: int
    created_at: datetime
    event: LeadEvent


@dataclass(frozen=True)
class DeliveryUpdate:
    """The new state of one claimed delivery after a try (decided by the worker)."""

    id: int
    status: str  # pending | delivered | skipped | dead
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    outcome: str
    started_at: datetime
    attempt_number: int


@dataclass(frozen=True)
class EventFilter:
    status: str | None = None
    source: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100


@dataclass(frozen=True)
class DeliveryFilter:
    status: str | None = None
    source: str | None = None
    connector: str | None = None
    event_id: str | None = None
    delivery_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100


# -- engine -------------------------------------------------------------------------------


def _create_private(path: str | None) -> None:
    """Create the SQLite file owner-only (0600) before SQLite creates it with the umask's
    mode: it holds lead data. SQLite gives its -wal and -shm files the same mode."""
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    with contextlib.suppress(FileExistsError, FileNotFoundError, PermissionError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))


def _sqlite_engine(url: str) -> Engine:
    _create_private(make_url(url).database)
    engine = create_engine(
        url,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
        pool_size=16,
        max_overflow=16,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves (pysqlite's implicit BEGIN is deferred).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        readonly = connection.get_execution_options().get("readonly", False)
        connection.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

    return engine


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    if url.startswith("postgresql"):
        return create_engine(
            url,
            pool_pre_ping=True,
            pool_size=10,
            max_overflow=20,
            connect_args={"connect_timeout": 3},
        )
    return create_engine(url, pool_pre_ping=True)


# -- store --------------------------------------------------------------------------------


class Store:
    def __init__(self, url: str, engine: Engine | None = None) -> None:
        self.url = url
        self.engine = engine or make_engine(url)
        self.dialect = self.engine.dialect.name
        self._after_commit: list[Callable[[], None]] = []
        self._write_lock = (
            WriteLock(self.engine.url.database, SQLITE_BUSY_TIMEOUT_S)
            if self.dialect == "sqlite"
            else None
        )
        dialect = self.engine.dialect
        self._insert_dedup_keys = BulkInsert(
            dedup_keys,
            ("source", "idempotency_key", "event_id", "first_seen_at"),
            dialect,
            suffix=(
                "ON CONFLICT DO NOTHING RETURNING source, idempotency_key"
                if self.dialect == "postgresql"
                else ""
            ),
        )
        self._insert_events = BulkInsert(events, _EVENT_COLUMNS, dialect)
        self._insert_attempts = BulkInsert(
            attempts,
            ("delivery_id", "number", "worker", "started_at", "finished_at", "outcome", "error"),
            dialect,
        )
        self._insert_deliveries = BulkInsert(
            deliveries,
            (
                "event_id",
                "connector",
                "status",
                "attempts",
                "next_attempt_at",
                "created_at",
                "updated_at",
            ),
            dialect,
        )

    # lifecycle

    def migrate(self) -> None:
        """Bring the schema to the newest revision (idempotent; safe to run at every start)."""
        from alembic import command
        from alembic.config import Config as AlembicConfig

        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(files("leadrelay.core.store") / "migrations"))
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                # Several processes may start at once; one migrates, the others wait.
                conn.execute(text("SELECT pg_advisory_xact_lock(74201)"))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def close(self) -> None:
        self.engine.dispose()
        if self._write_lock is not None:
            self._write_lock.close()

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` after each ingest commit that created deliveries (wakes workers)."""
        self._after_commit.append(callback)

    def _wake_workers(self) -> None:
        """Run the `on_commit` callbacks: new deliveries were committed."""
        for callback in self._after_commit:
            callback()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        try:
            with (
                self._write_lock.held() if self._write_lock else nullcontext(),
                self.engine.begin() as conn,
            ):
                yield conn
        except WriteLockTimeout as exc:
            raise StoreUnavailable(f"database is locked: {exc}") from exc
        except DBAPIError as exc:
            if exc.connection_invalidated or _is_unavailable(exc):
                raise StoreUnavailable(_describe(exc)) from exc
            raise

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                conn = conn.execution_options(readonly=True)
                with conn.begin():
                    yield conn
        except DBAPIError as exc:
            raise StoreUnavailable(_describe(exc)) from exc

    def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers and the schema is there."""
        try:
            with self._read() as conn:
                conn.execute(select(func.count()).select_from(connector_state))
        except SQLAlchemyError as exc:
            raise StoreUnavailable(_describe(exc)) from exc

    # ingest

    def ingest(self, records: Sequence[IncomingEvent]) -> list[IngestResult]:
        """Store a group of events in one transaction; one result per record, in order.

        A record repeating an earlier record's (source, idempotency key), in this group or
        in the store, is a duplicate: nothing of it is stored.
        """
        now = utcnow()
        return self.ingest_prepared([self.prepare(record, now) for record in records])

    def prepare(self, record: IncomingEvent, now: datetime | None = None) -> PreparedEvent:
        """`record` as the rows `ingest_prepared` inserts, ready for the driver.

        The receiver calls this in the request's own thread, before the group commit:
        whatever runs while the write lock is held keeps every other writer waiting.
        """
        now = now or utcnow()
        return PreparedEvent(
            source=record.source,
            idempotency_key=record.idempotency_key,
            event_id=record.event_id,
            key_row=self._insert_dedup_keys.bind(
                (record.source, record.idempotency_key, record.event_id, now)
            ),
            event_row=self._insert_events.bind(_event_row(record)),
            delivery_rows=tuple(
                self._insert_deliveries.bind((record.event_id, name, "pending", 0, now, now, now))
                for name in record.connectors
            ),
        )

    def ingest_prepared(self, records: Sequence[PreparedEvent]) -> list[IngestResult]:
        """`ingest` for records made by `prepare`."""
        if not records:
            return []
        first_index: dict[tuple[str, str], int] = {}
        for i, record in enumerate(records):
            first_index.setdefault((record.source, record.idempotency_key), i)
        unique_at = list(first_index.values())
        unique = [records[i] for i in unique_at]
        with self._write() as conn:
            fresh = self._claim_keys(conn, unique)
            if fresh:
                self._insert_events.execute(conn, [unique[n].event_row for n in fresh])
                rows = [row for n in fresh for row in unique[n].delivery_rows]
                if rows:
                    self._insert_deliveries.execute(conn, rows)
                    if self.dialect == "postgresql":
                        conn.execute(
                            text("SELECT pg_notify(:channel, '')"), {"channel": NOTIFY_CHANNEL}
                        )
        stored = {unique_at[n] for n in fresh}
        if any(unique[n].delivery_rows for n in fresh):
            self._wake_workers()
        return [
            IngestResult(event_id=record.event_id, duplicate=i not in stored)
            for i, record in enumerate(records)
        ]

    def _claim_keys(self, conn: Connection, records: Sequence[PreparedEvent]) -> list[int]:
        """Insert the records' dedup keys; returns the positions of those not there before."""
        key_rows = [r.key_row for r in records]
        if self.dialect == "postgresql":
            # Other transactions may insert the same keys concurrently: the primary key
            # decides, and RETURNING names the rows this transaction won.
            won = {tuple(row) for row in self._insert_dedup_keys.execute(conn, key_rows)}
            return [n for n, r in enumerate(records) if (r.source, r.idempotency_key) in won]
        # SQLite: this transaction holds the database's only write lock, so a key absent
        # now stays absent until the commit. The lookup returns only the duplicates
        # (usually none: one step), where RETURNING would step once per new row.
        keys_by_source: dict[str, list[str]] = {}
        for r in records:
            keys_by_source.setdefault(r.source, []).append(r.idempotency_key)
        existing: set[tuple[str, str]] = set()
        for source, keys in keys_by_source.items():
            for start in range(0, len(keys), _KEYS_PER_LOOKUP):
                chunk = keys[start : start + _KEYS_PER_LOOKUP]
                rows = driver_execute(conn, _existing_keys_sql(len(chunk)), (source, *chunk))
                existing.update((source, row[0]) for row in rows)
        fresh = [n for n, r in enumerate(records) if (r.source, r.idempotency_key) not in existing]
        if fresh:
            self._insert_dedup_keys.execute(conn, [key_rows[n] for n in fresh])
        return fresh

    # delivery queue

    def claim(
        self,
        connector: str,
        worker: str,
        limit: int,
        now: datetime,
        lease: timedelta,
    ) -> list[ClaimedDelivery]:
        """Lease up to `limit` due deliveries of one connector.

        PostgreSQL: `FOR UPDATE SKIP LOCKED`, so concurrent workers take disjoint rows.
        SQLite: the UPDATE runs under `BEGIN IMMEDIATE`, which already serializes writers.
        An expired lease (its worker died) makes the row claimable again.
        """
        due = (
            select(deliveries.c.id)
            .where(
                deliveries.c.status == "pending",
                deliveries.c.connector == connector,
                deliveries.c.next_attempt_at <= now,
                or_(deliveries.c.lease_expires_at.is_(None), deliveries.c.lease_expires_at < now),
            )
            .order_by(deliveries.c.next_attempt_at, deliveries.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        with self._write() as conn:
            claimed = conn.execute(
                update(deliveries)
                .where(deliveries.c.id.in_(due.scalar_subquery()))
                .values(lease_owner=worker, lease_expires_at=now + lease, updated_at=now)
                .returning(
                    deliveries.c.id,
                    deliveries.c.event_id,
                    deliveries.c.attempts,
                    deliveries.c.created_at,
                )
            ).all()
            if not claimed:
                return []
            loaded = {
                row.event_id: row
                for row in conn.execute(
                    select(events.c.event_id, events.c.normalized, events.c.body).where(
                        events.c.event_id.in_({row.event_id for row in claimed})
                    )
                )
            }
        out = []
        unloadable = []
        for row in sorted(claimed, key=lambda r: r.id):
            stored = loaded[row.event_id]
            try:
                lead_event = load_lead_event(stored.normalized, stored.body)
            except ValueError as exc:
                # Claimed first every time, a row this code cannot load would block its
                # connector's queue for good: dead-letter it instead (replayable later).
                unloadable.append(
                    DeliveryUpdate(
                        id=row.id,
                        status="dead",
                        attempts=row.attempts + 1,
                        next_attempt_at=now,
                        last_error=f"stored event cannot be loaded: {_load_error(exc)}",
                        outcome="permanent",
                        started_at=now,
                        attempt_number=row.attempts + 1,
                    )
                )
                continue
            out.append(
                ClaimedDelivery(
                    id=row.id,
                    event_id=row.event_id,
                    connector=connector,
                    attempts=row.attempts,
                    created_at=row.created_at,
                    event=lead_event,
                )
            )
        if unloadable:
            log.error(
                "dead-lettered deliveries whose stored event cannot be loaded",
                extra=fields(deliveries=[u.id for u in unloadable]),
            )
            self.complete(worker, unloadable, now)
        return out

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
                            u.last_error if u.outcome != "delivered" else None,
                        )
                    )
                    for u in updates
                ],
            )
        return len(held)

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

    def next_due_at(self, connector: str) -> datetime | None:
        """When a pending delivery of `connector` next becomes claimable, None if none is.

        A leased delivery counts from its lease's end: counting it as due would have the
        other workers poll in a tight loop while its holder sends it.
        """
        claimable_at = case(
            (
                deliveries.c.lease_expires_at > deliveries.c.next_attempt_at,
                deliveries.c.lease_expires_at,
            ),
            else_=deliveries.c.next_attempt_at,
        )
        with self._read() as conn:
            return conn.execute(
                select(func.min(claimable_at)).where(
                    deliveries.c.status == "pending", deliveries.c.connector == connector
                )
            ).scalar()

    # connector state

    def disabled_connectors(self) -> dict[str, str]:
        with self._read() as conn:
            rows = conn.execute(
                select(connector_state.c.connector, connector_state.c.disabled_reason).where(
                    connector_state.c.disabled_at.is_not(None)
                )
            )
            return {row.connector: row.disabled_reason or "" for row in rows}

    def set_connector_disabled(self, connector: str, reason: str | None) -> None:
        """Persist a run-time disable (reason) or clear it (None)."""
        with self._write() as conn:
            conn.execute(delete(connector_state).where(connector_state.c.connector == connector))
            if reason is not None:
                conn.execute(
                    insert(connector_state).values(
                        connector=connector, disabled_reason=reason, disabled_at=utcnow()
                    )
                )

    # queries for the CLI and metrics

    def list_events(self, f: EventFilter) -> list[dict[str, Any]]:
        query = select(
            events.c.event_id,
            events.c.received_at,
            events.c.source,
            events.c.provider,
            events.c.status,
            events.c.type,
            events.c.provider_event,
            events.c.lead_key,
            events.c.reason,
        )
        if f.status:
            query = query.where(events.c.status == f.status)
        if f.source:
            query = query.where(events.c.source == f.source)
        if f.since:
            query = query.where(events.c.received_at >= f.since)
        if f.until:
            query = query.where(events.c.received_at < f.until)
        query = query.order_by(events.c.received_at.desc(), events.c.event_id).limit(f.limit)
        with self._read() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def get_event(self, event_id: str) -> dict[str, Any] | None:
        with self._read() as conn:
            row = conn.execute(select(events).where(events.c.event_id == event_id)).first()
            return dict(row._mapping) if row else None

    def list_deliveries(self, f: DeliveryFilter) -> list[dict[str, Any]]:
        query = select(
            deliveries.c.id,
            deliveries.c.event_id,
            deliveries.c.connector,
            deliveries.c.status,
            deliveries.c.attempts,
            deliveries.c.next_attempt_at,
            deliveries.c.last_error,
            deliveries.c.created_at,
            deliveries.c.finished_at,
            events.c.source,
            events.c.type,
            events.c.lead_key,
        ).join(events, events.c.event_id == deliveries.c.event_id)
        if f.status:
            query = query.where(deliveries.c.status == f.status)
        if f.source:
            query = query.where(events.c.source == f.source)
        if f.connector:
            query = query.where(deliveries.c.connector == f.connector)
        if f.event_id:
            query = query.where(deliveries.c.event_id == f.event_id)
        if f.delivery_id is not None:
            query = query.where(deliveries.c.id == f.delivery_id)
        if f.since:
            query = query.where(deliveries.c.created_at >= f.since)
        if f.until:
            query = query.where(deliveries.c.created_at < f.until)
        query = query.order_by(deliveries.c.id.desc()).limit(f.limit)
        with self._read() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def attempts_of(self, delivery_id: int) -> list[dict[str, Any]]:
        with self._read() as conn:
            rows = conn.execute(
                select(attempts)
                .where(attempts.c.delivery_id == delivery_id)
                .order_by(attempts.c.id)
            )
            return [dict(row._mapping) for row in rows]

    def queue_stats(self, now: datetime) -> dict[str, Any]:
        """Counts by (connector, status) and the age of the oldest pending delivery."""
        with self._read() as conn:
            counts = {
                (row.connector, row.status): row.n
                for row in conn.execute(
                    select(
                        deliveries.c.connector, deliveries.c.status, func.count().label("n")
                    ).group_by(deliveries.c.connector, deliveries.c.status)
                )
            }
            oldest = conn.execute(
                select(func.min(deliveries.c.created_at)).where(deliveries.c.status == "pending")
            ).scalar()
        age = (now - oldest).total_seconds() if oldest else 0.0
        return {"counts": counts, "oldest_pending_age_s": max(age, 0.0)}

    # replay

    def requeue(
        self,
        *,
        event_ids: Sequence[str] | None = None,
        connector: str | None = None,
        statuses: Sequence[str] = ("dead",),
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        """Put finished deliveries back in the queue, due now, with a fresh attempt count."""
        now = utcnow()
        conditions = [deliveries.c.status.in_(statuses)]
        if event_ids is not None:
            conditions.append(deliveries.c.event_id.in_(event_ids))
        if connector:
            conditions.append(deliveries.c.connector == connector)
        if since:
            conditions.append(deliveries.c.created_at >= since)
        if until:
            conditions.append(deliveries.c.created_at < until)
        with self._write() as conn:
            result = conn.execute(
                update(deliveries)
                .where(and_(*conditions))
                .values(
                    status="pending",
                    attempts=0,
                    next_attempt_at=now,
                    lease_owner=None,
                    lease_expires_at=None,
                    updated_at=now,
                    finished_at=None,
                )
            )
            if result.rowcount and self.dialect == "postgresql":
                conn.execute(text("SELECT pg_notify(:channel, '')"), {"channel": NOTIFY_CHANNEL})
        if result.rowcount:
            self._wake_workers()
        return result.rowcount

    def accepted_without_delivery(
        self,
        connector: str,
        *,
        since: datetime | None = None,
        source: str | None = None,
        event_type: str | None = None,
    ) -> list[LeadEvent]:
        """Stored accepted events with no delivery to `connector`, in received order."""
        has_one = select(deliveries.c.event_id).where(deliveries.c.connector == connector)
        query = select(events.c.normalized, events.c.body).where(
            events.c.status == "accepted",
            events.c.normalized.is_not(None),
            events.c.event_id.not_in(has_one),
        )
        if since:
            query = query.where(events.c.received_at >= since)
        if source:
            query = query.where(events.c.source == source)
        if event_type:
            query = query.where(events.c.type == event_type)
        query = query.order_by(events.c.received_at, events.c.event_id)
        with self._read() as conn:
            return [load_lead_event(row.normalized, row.body) for row in conn.execute(query)]

    def add_deliveries(self, connector: str, event_ids: Sequence[str]) -> int:
        """Queue `connector` deliveries for events that have none, due now, in the given order."""
        if not event_ids:
            return 0
        now = utcnow()
        with self._write() as conn:
            wanted = list(dict.fromkeys(event_ids))
            existing: set[str] = set()
            for start in range(0, len(wanted), 500):
                existing.update(
                    conn.execute(
                        select(deliveries.c.event_id).where(
                            deliveries.c.connector == connector,
                            deliveries.c.event_id.in_(wanted[start : start + 500]),
                        )
                    ).scalars()
                )
            rows = [
                {
                    "event_id": event_id,
                    "connector": connector,
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                    "updated_at": now,
                }
                for event_id in wanted
                if event_id not in existing
            ]
            for start in range(0, len(rows), 500):
                conn.execute(insert(deliveries), rows[start : start + 500])
            if rows and self.dialect == "postgresql":
                conn.execute(text("SELECT pg_notify(:channel, '')"), {"channel": NOTIFY_CHANNEL})
        if rows:
            self._wake_workers()
        return len(rows)

    def resolve_quarantined(self, event_id: str, record: IncomingEvent) -> IngestResult:
        """Replace a quarantined event by what the current code makes of it.

        The quarantined row is kept for audit with status `replayed` and a pointer to the
        new event; the new event goes through dedup like any incoming one.
        """
        result = self.ingest([record])[0]
        with self._write() as conn:
            conn.execute(
                update(events)
                .where(events.c.event_id == event_id, events.c.status == "quarantined")
                .values(status="replayed", reason=f"re-parsed as {result.event_id}")
            )
        return result

    # retention

    def purge(
        self, now: datetime, retention: timedelta, dedup_retention: timedelta
    ) -> dict[str, int]:
        """Delete payloads and history older than `retention`, dedup keys after theirs.

        Events with a delivery still pending are kept whatever their age.
        """
        cutoff = now - retention
        still_pending = select(deliveries.c.event_id).where(deliveries.c.status == "pending")
        with self._write() as conn:
            old_events = select(events.c.event_id).where(
                events.c.received_at < cutoff, events.c.event_id.not_in(still_pending)
            )
            old_deliveries = select(deliveries.c.id).where(deliveries.c.event_id.in_(old_events))
            n_attempts = conn.execute(
                delete(attempts).where(attempts.c.delivery_id.in_(old_deliveries))
            ).rowcount
            n_deliveries = conn.execute(
                delete(deliveries).where(deliveries.c.event_id.in_(old_events))
            ).rowcount
            n_events = conn.execute(
                delete(events).where(
                    events.c.received_at < cutoff, events.c.event_id.not_in(still_pending)
                )
            ).rowcount
            # A key whose event is still stored stays: without it the same body would be
            # taken as new and collide with that event's row (retention > dedup_retention,
            # or a delivery pending that long).
            n_keys = conn.execute(
                delete(dedup_keys).where(
                    dedup_keys.c.first_seen_at < now - dedup_retention,
                    dedup_keys.c.event_id.not_in(select(events.c.event_id)),
                )
            ).rowcount
        return {
            "events": n_events,
            "deliveries": n_deliveries,
            "attempts": n_attempts,
            "dedup_keys": n_keys,
        }


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


_EVENT_COLUMNS = (
    "event_id",
    "source",
    "provider",
    "status",
    "type",
    "provider_event",
    "idempotency_key",
    "lead_key",
    "occurred_at",
    "received_at",
    "body",
    "headers",
    "normalized",
    "reason",
)


_KEYS_PER_LOOKUP = MAX_PARAMETERS - 1


@lru_cache(maxsize=64)
def _existing_keys_sql(count: int) -> str:
    # Per source, so SQLite searches the primary key (a (source, key) IN (VALUES ...) scans).
    keys = ", ".join(["?"] * count)
    return (
        f"SELECT idempotency_key FROM dedup_keys WHERE source = ? AND idempotency_key IN ({keys})"  # noqa: S608
    )


def _event_row(r: IncomingEvent) -> tuple[Any, ...]:
    return (
        r.event_id,
        r.source,
        r.provider,
        r.status,
        r.type,
        r.provider_event,
        r.idempotency_key,
        r.lead_key,
        r.occurred_at,
        r.received_at,
        r.body,
        json.dumps(r.headers),
        r.normalized,
        r.reason,
    )


def load_lead_event(normalized: str, body: bytes) -> LeadEvent:
    data = json.loads(normalized)
    data["raw"] = json.loads(body)
    return LeadEvent.model_validate(data)


def _load_error(exc: ValueError) -> str:
    """Where and what, never the stored values (they are personal data)."""
    if isinstance(exc, ValidationError):
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        return f"{where}: {first['msg']}"
    return _describe(exc)


def dump_normalized(lead_event: LeadEvent) -> str:
    """The normalized form without `raw` (the body is already stored once)."""
    return lead_event.model_dump_json(exclude={"raw"})


def _is_unavailable(exc: DBAPIError) -> bool:
    # Operational errors are the server/file being unreachable, locked or read-only;
    # integrity or programming errors are bugs and must not be hidden as 503s.
    name = type(exc.orig).__name__ if exc.orig is not None else ""
    return (
        name in {"OperationalError", "InterfaceError"} or "OperationalError" in type(exc).__name__
    )


def _describe(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    # The first line only: driver messages can go on to echo SQL and parameters.
    return str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
