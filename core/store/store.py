"""The durable store: events, dedup keys and the delivery queue, on SQLite or PostgreSQL.

Durability rules this module keeps:
- An event is acknowledged only after the transaction journaling it has committed
  (SQLite: WAL with `synchronous=FULL`); moving it into the tables later is one more
  transaction, so a crash never loses it (`inbox.py`).
- Dedup is a unique key on (source, idempotency key), in the journal and in
  `dedup_keys`, so racing receivers, processes or hosts cannot both accept one event.
- One way in: `submit` journals a record in a group with whatever other threads are
  submitting at that moment (one transaction and one fsync for all of them);
  `submit_many` stores a batch the caller already has in hand.
- What readers see: every read (and every admin write) first moves what is journaled
  (`settle`), so the store reads as if every acknowledged event were in its tables; the
  delivery worker's claims move it too, a batch at a time.
- One way to wait: `subscribe` wakes its callback when deliveries may be due, after this
  process commits some and, on PostgreSQL, when another process does (LISTEN/NOTIFY).

The delivery queue (claims in per-lead order, leases, outcomes) is `queue.py`; what
differs between the databases lives in `sqlite.py` and `postgres.py`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from importlib.resources import files

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from leadrelay.core import metrics
from leadrelay.core.logs import fields
from leadrelay.core.store.backend import Backend, Listener
from leadrelay.core.store.bulk_insert import BulkInsert
from leadrelay.core.store.group_commit import GroupCommitter
from leadrelay.core.store.identity_admin import IdentityAdmin, UnknownPerson
from leadrelay.core.store.inbox import MOVE_BATCH, Inbox, JournalEntry, Moved
from leadrelay.core.store.postgres import PostgresBackend
from leadrelay.core.store.queries import StoreQueries
from leadrelay.core.store.queue import DeliveryQueue, progress_rows
from leadrelay.core.store.records import (
    ClaimedDelivery,
    DeliveryFilter,
    DeliveryUpdate,
    EventFilter,
    IncomingEvent,
    IngestResult,
    LeasedDelivery,
    NewestDelivered,
    StoreUnavailable,
    UnloadableDelivery,
    describe,
    dump_normalized,
    load_lead_event,
    utcnow,
)
from leadrelay.core.store.retention import purge_old_rows
from leadrelay.core.store.sqlite import SqliteBackend
from leadrelay.core.store.tables import (
    attempts,
    connector_state,
    deliveries,
    events,
    housekeeping,
)
from leadrelay.core.store.write_lock import WriteLockTimeout

# The records are the store's vocabulary: importable from here with the Store.
__all__ = [
    "ClaimedDelivery",
    "DeliveryFilter",
    "DeliveryUpdate",
    "EventFilter",
    "IncomingEvent",
    "IngestResult",
    "LeasedDelivery",
    "NewestDelivered",
    "Store",
    "StoreUnavailable",
    "UnknownPerson",
    "UnloadableDelivery",
    "dump_normalized",
    "load_lead_event",
    "make_engine",
    "utcnow",
]

log = logging.getLogger("leadrelay.store")

_BACKENDS: dict[str, type[Backend]] = {"sqlite": SqliteBackend, "postgresql": PostgresBackend}


# Rows per statement when queuing many deliveries at once (a backfill).
_ROWS_PER_STATEMENT = 500
# Moves per `settle`: ingest keeps journaling meanwhile, so it stops after this many
# full batches rather than chase a stream (the next read or claim moves the rest).
_MAX_SETTLE_MOVES = 1000
# Moves before a read: a read must answer in time (a console page under gunicorn's
# timeout), and a backlog this large means no delivery worker has been moving it.
_READ_SETTLE_MOVES = 10


def _backend_class(url: str) -> type[Backend]:
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    if scheme not in _BACKENDS:
        raise ValueError(f"unsupported store URL scheme {scheme!r}: use sqlite or postgresql")
    return _BACKENDS[scheme]


def make_engine(url: str) -> Engine:
    """An engine with the settings the store uses for `url`'s database."""
    return _backend_class(url).create_engine(url)


class Store(StoreQueries, DeliveryQueue, IdentityAdmin):
    def __init__(self, url: str, engine: Engine | None = None, *, max_group: int = 500) -> None:
        self.url = url
        self._backend = _backend_class(url)(url, engine)
        self._inbox = Inbox(self._backend)
        self._committer: GroupCommitter[JournalEntry, IngestResult] = GroupCommitter(
            self._journal_submitted,
            shared_failure=lambda exc: isinstance(exc, StoreUnavailable),
            max_group=max_group,
        )
        self._subscribers: list[Callable[[], None]] = []
        self._subscribers_lock = threading.Lock()
        self._listener: Listener | None = None
        self._insert_attempts = BulkInsert(
            attempts,
            (
                "delivery_id",
                "number",
                "worker",
                "started_at",
                "finished_at",
                "outcome",
                "error",
                "request",
            ),
            self._backend.engine.dialect,
        )
        self._progress_rows = progress_rows(self._backend.engine.dialect)

    @property
    def engine(self) -> Engine:
        return self._backend.engine

    @engine.setter
    def engine(self, engine: Engine) -> None:
        self._backend.engine = engine

    # lifecycle

    def migrate(self) -> None:
        """Bring the schema to the newest revision (idempotent; safe to run at every start)."""
        from alembic import command
        from alembic.config import Config as AlembicConfig

        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(files("leadrelay.core.store") / "migrations"))
        with self.engine.begin() as conn:
            self._backend.lock_for_migration(conn)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def close(self) -> None:
        with self._subscribers_lock:
            self._subscribers.clear()
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()
        self._backend.close()

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` whenever new deliveries may be due; returns the unsubscribe.

        Woken after this store commits deliveries (ingest, requeue) and, on PostgreSQL,
        when another process does (NOTIFY). Callbacks run in the committing or listening
        thread, so they should only signal (set an Event). Missing a wake-up costs a poll
        interval at most: waiters still poll.
        """
        with self._subscribers_lock:
            self._subscribers.append(callback)
            if self._listener is None:
                self._listener = self._backend.listen(self._wake_subscribers)

        def unsubscribe() -> None:
            with self._subscribers_lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)
                listener = None
                if not self._subscribers:
                    listener, self._listener = self._listener, None
            if listener is not None:
                listener.stop()

        return unsubscribe

    def _wake_subscribers(self) -> None:
        with self._subscribers_lock:
            callbacks = list(self._subscribers)
        for callback in callbacks:
            callback()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        try:
            with self._backend.write_lock(), self.engine.begin() as conn:
                yield conn
        except WriteLockTimeout as exc:
            raise StoreUnavailable(f"database is locked: {exc}") from exc
        except DBAPIError as exc:
            if exc.connection_invalidated or _is_unavailable(exc):
                raise StoreUnavailable(describe(exc)) from exc
            raise

    @contextmanager
    def _read(self, *, settle: bool = True) -> Iterator[Connection]:
        """A read-only transaction; with `settle`, journaled events are moved in first
        (when the database cannot take that write now, the read goes on without it)."""
        if settle:
            try:
                if not self.settle(max_moves=_READ_SETTLE_MOVES):
                    log.warning(
                        "events still journaled after moving some in before a read;"
                        " is a delivery worker running?"
                    )
            except StoreUnavailable as exc:
                # The read goes on and shows what is moved; the events still journaled
                # show in `leadrelay_journaled_events`.
                log.warning(
                    "could not move journaled events in before reading",
                    extra=fields(error=str(exc)),
                )
        try:
            with self.engine.connect() as conn:
                conn = conn.execution_options(readonly=True)
                with conn.begin():
                    yield conn
        except DBAPIError as exc:
            raise StoreUnavailable(describe(exc)) from exc

    def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers and the schema is there."""
        try:
            with self._read(settle=False) as conn:
                conn.execute(select(func.count()).select_from(connector_state))
        except SQLAlchemyError as exc:
            raise StoreUnavailable(describe(exc)) from exc

    # ingest

    def submit(self, record: IncomingEvent) -> IngestResult:
        """Journal one record durably, in a group with whatever other threads submit now.

        The record's row is bound in the caller's thread; the commit is shared. A record
        repeating a stored or journaled (source, idempotency key) is a duplicate: nothing
        of it is stored. Raises StoreUnavailable when the database cannot take it now.
        """
        return self._committer.submit(self._inbox.entry(record))

    def submit_many(self, records: Sequence[IncomingEvent]) -> list[IngestResult]:
        """Store a batch (journaled in one transaction, then moved in); one result per
        record, in order (a record repeating an earlier one of the batch is a duplicate too)."""
        results = self._journal([self._inbox.entry(record) for record in records])
        self.settle()
        return results

    def settle(self, *, max_moves: int = _MAX_SETTLE_MOVES) -> bool:
        """Move journaled events into the tables, with their deliveries and person, in up
        to `max_moves` batches; True when the journal was emptied."""
        with self._read(settle=False) as conn:
            if not self._inbox.pending(conn):
                return True
        for _ in range(max_moves):
            with self._write() as conn:
                moved = self._inbox.move(conn, MOVE_BATCH, wait=True)
            self._moved(moved)
            if moved.count < MOVE_BATCH:
                return True
        return False

    def _move_journaled(self, conn: Connection) -> Moved:
        # A claim's first step: whatever a concurrent claim is not moving already.
        return self._inbox.move(conn, MOVE_BATCH, wait=False)

    def _moved(self, moved: Moved) -> None:
        if moved.new_deliveries:
            self._wake_subscribers()

    def _journal_submitted(self, group: Sequence[JournalEntry]) -> list[IngestResult]:
        metrics.INGEST_GROUP_SIZE.observe(len(group))
        results = self._journal(group)
        if any(e.routed and not r.duplicate for e, r in zip(group, results, strict=True)):
            # This process's workers move the new events in at their next claim.
            self._wake_subscribers()
        return results

    def _journal(self, entries: Sequence[JournalEntry]) -> list[IngestResult]:
        if not entries:
            return []
        with self._write() as conn:
            return self._inbox.append(conn, entries)

    # connector state

    def disabled_connectors(self) -> dict[str, str]:
        with self._read(settle=False) as conn:
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
        self.settle()
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
            if result.rowcount:
                self._backend.notify(conn)
        if result.rowcount:
            self._wake_subscribers()
        return result.rowcount

    def add_deliveries(self, connector: str, event_ids: Sequence[str]) -> int:
        """Queue `connector` deliveries for events that have none, due now, in the given order."""
        if not event_ids:
            return 0
        self.settle()
        now = utcnow()
        wanted = list(dict.fromkeys(event_ids))
        with self._write() as conn:
            existing: set[str] = set()
            # Each delivery joins its lead's line, behind what is already queued for it.
            lead_keys: dict[str, str | None] = {}
            for start in range(0, len(wanted), _ROWS_PER_STATEMENT):
                chunk = wanted[start : start + _ROWS_PER_STATEMENT]
                existing.update(
                    conn.execute(
                        select(deliveries.c.event_id).where(
                            deliveries.c.connector == connector,
                            deliveries.c.event_id.in_(chunk),
                        )
                    ).scalars()
                )
                lead_keys.update(
                    (row.event_id, row.lead_key)
                    for row in conn.execute(
                        select(events.c.event_id, events.c.lead_key).where(
                            events.c.event_id.in_(chunk)
                        )
                    )
                )
            rows = [
                {
                    "event_id": event_id,
                    "connector": connector,
                    "lead_key": lead_keys.get(event_id),
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                    "updated_at": now,
                }
                for event_id in wanted
                if event_id not in existing
            ]
            for start in range(0, len(rows), _ROWS_PER_STATEMENT):
                conn.execute(insert(deliveries), rows[start : start + _ROWS_PER_STATEMENT])
            if rows:
                self._backend.notify(conn)
        if rows:
            self._wake_subscribers()
        return len(rows)

    def resolve_quarantined(self, event_id: str, record: IncomingEvent) -> IngestResult | None:
        """Replace a quarantined event by what the current code makes of it.

        The new event goes through dedup like any incoming one and is moved in at once;
        then the quarantined row is kept for audit with status `replayed` and a pointer
        to the new event. None when the new event could not be moved in either (the move
        kept it quarantined again, `inbox.py`): the row stays quarantined.
        """
        [result] = self._journal([self._inbox.entry(record)])
        self.settle()
        with self._write() as conn:
            stored = result.duplicate or (
                conn.execute(
                    select(events.c.event_id).where(events.c.event_id == result.event_id)
                ).first()
                is not None
            )
            if stored:
                conn.execute(
                    update(events)
                    .where(events.c.event_id == event_id, events.c.status == "quarantined")
                    .values(status="replayed", reason=f"re-parsed as {result.event_id}")
                )
        return result if stored else None

    def set_quarantine_reason(self, event_id: str, reason: str) -> None:
        """Record why a quarantined event is still quarantined after a re-parse."""
        with self._write() as conn:
            conn.execute(
                update(events)
                .where(events.c.event_id == event_id, events.c.status == "quarantined")
                .values(reason=reason[:2000])
            )

    # retention

    def purge(
        self, now: datetime, retention: timedelta, dedup_retention: timedelta
    ) -> dict[str, int]:
        """Delete payloads and history older than `retention`, dedup keys after theirs,
        and persons (identity entries) `dedup_retention` after their last event.

        Events with a delivery still pending are kept whatever their age.
        """
        self.settle()
        with self._write() as conn:
            return purge_old_rows(conn, now, retention, dedup_retention)

    def purge_if_due(
        self, now: datetime, retention: timedelta, dedup_retention: timedelta, every: timedelta
    ) -> dict[str, int] | None:
        """`purge`, unless any process sharing this database purged less than `every` ago
        (then None).

        The purge's last run is a row in `housekeeping`, taken in the purge's own
        transaction: of processes checking at once, one purges and the others find it done.
        """
        self.settle()
        with self._write() as conn:
            taken = conn.execute(
                update(housekeeping)
                .where(housekeeping.c.task == "purge", housekeeping.c.last_run_at <= now - every)
                .values(last_run_at=now)
            ).rowcount
            if not taken:
                return None
            return purge_old_rows(conn, now, retention, dedup_retention)


def _is_unavailable(exc: DBAPIError) -> bool:
    # Operational errors are the server/file being unreachable, locked or read-only;
    # integrity or programming errors are bugs and must not be hidden as 503s.
    name = type(exc.orig).__name__ if exc.orig is not None else ""
    return (
        name in {"OperationalError", "InterfaceError"} or "OperationalError" in type(exc).__name__
    )
