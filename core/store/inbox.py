"""The ingest journal: what an accepted request commits, and the move into the tables.

Why a journal: an event stored in full touches 23 B-trees (its dedup key, its row and
the console's indexes on it, a delivery per connector, the identity map), and under the
ingest benchmark's load that commit cost the receiver more CPU than everything else it
does for a request (benchmarks/README.md). A request now commits one `inbox` row: the
event as the receiver made it, in one table and one unique index. Only then is it
answered, so "2xx only after commit" holds. The delivery worker's claims, and any read or
admin write of the store, move journaled rows into the tables in batches of up to
`MOVE_BATCH`, where a batch shares its pages and its commit. The event is durable from
the first commit on; the move is one transaction, so a crash leaves each row either
journaled or moved.

Dedup stays exact: a key is in `dedup_keys` or in `inbox`, never in both (a move inserts
the one and deletes the other in one transaction). Appending inserts the inbox row first,
where the unique index decides between requests racing with one key (on PostgreSQL it
also waits for a move holding that row), then looks the keys it won up in `dedup_keys`:
a move that committed before that lookup is seen there, and the row just inserted is
taken back. On SQLite the write lock makes all of this one writer's view anyway.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, NamedTuple

from sqlalchemy import Connection, and_, delete, select
from sqlalchemy.exc import DBAPIError

from leadrelay.core.logs import fields
from leadrelay.core.schema import event_id_for
from leadrelay.core.store.backend import Backend
from leadrelay.core.store.bulk_insert import MAX_PARAMETERS, BulkInsert, existing_keys
from leadrelay.core.store.event_rows import (
    RECEIVED_COLUMNS,
    EventRows,
    GroupInsert,
    PreparedEvent,
    json_text,
    received_values,
)
from leadrelay.core.store.records import IncomingEvent, IngestResult, describe, utcnow
from leadrelay.core.store.tables import dedup_keys, inbox

log = logging.getLogger("leadrelay.store")

# Rows moved per transaction: large enough that a batch shares most of its pages (140 µs
# an event in-process at 500, 235 at 8), small enough that ingest waits for the write
# lock no more than a full batch's move, about 70 ms in-process.
MOVE_BATCH = 500


class JournalEntry(NamedTuple):
    """One request's record, bound for the inbox in the request's own thread."""

    source: str
    idempotency_key: str
    event_id: str
    row: tuple[Any, ...]
    # Whether the event has connectors to go to (moving it in queues deliveries).
    routed: bool


class Moved(NamedTuple):
    count: int
    # Whether the moved events added deliveries (workers have something new to send).
    new_deliveries: bool


_NOTHING_MOVED = Moved(0, False)


class Inbox:
    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._insert = BulkInsert(
            inbox, _COLUMNS, backend.engine.dialect, suffix=backend.dedup_insert_suffix
        )
        self._rows = EventRows(backend)

    def entry(self, record: IncomingEvent) -> JournalEntry:
        return JournalEntry(
            record.source,
            record.idempotency_key,
            record.event_id,
            self._insert.bind(_inbox_row(record)),
            bool(record.connectors),
        )

    def append(self, conn: Connection, entries: Sequence[JournalEntry]) -> list[IngestResult]:
        """Journal the entries in `conn`'s transaction; one result per entry, in order.

        An entry repeating a key journaled or stored before, or earlier in `entries`, is
        a duplicate: nothing of it is kept.
        """
        first_index: dict[tuple[str, str], int] = {}
        for i, entry in enumerate(entries):
            first_index.setdefault((entry.source, entry.idempotency_key), i)
        unique_at = list(first_index.values())
        keys = list(first_index)
        won = self._backend.claim_keys(
            conn, keys, [entries[i].row for i in unique_at], self._insert
        )
        stored = existing_keys(conn, dedup_keys, [keys[n] for n in won])
        if stored:
            self._take_back(conn, stored)
        fresh = {unique_at[n] for n in won if keys[n] not in stored}
        if fresh:
            self._backend.notify(conn)
        return [
            IngestResult(event_id=entry.event_id, duplicate=i not in fresh)
            for i, entry in enumerate(entries)
        ]

    def move(self, conn: Connection, limit: int, *, wait: bool) -> Moved:
        """Move up to `limit` journaled events, oldest first, into the tables in `conn`'s
        transaction. Without `wait`, nothing when another transaction is moving."""
        if not self._backend.lock_for_inbox(conn, wait=wait):
            return _NOTHING_MOVED
        rows = conn.execute(select(inbox).order_by(inbox.c.seq).limit(limit)).all()
        if not rows:
            return _NOTHING_MOVED
        records = [_record(row) for row in rows]
        try:
            with conn.begin_nested():
                inserted = self._rows.insert(conn, self._prepared(records))
        except Exception as exc:
            if _retry_whole_transaction(exc):
                raise
            inserted = self._insert_one_by_one(conn, records)
        seqs = [row.seq for row in rows]
        for start in range(0, len(seqs), MAX_PARAMETERS):
            conn.execute(delete(inbox).where(inbox.c.seq.in_(seqs[start : start + MAX_PARAMETERS])))
        if inserted.new_deliveries:
            self._backend.notify(conn)
        return Moved(len(rows), inserted.new_deliveries)

    def _prepared(self, records: Sequence[IncomingEvent]) -> list[PreparedEvent]:
        now = utcnow()
        return [self._rows.prepare(record, now) for record in records]

    def _insert_one_by_one(self, conn: Connection, records: Sequence[IncomingEvent]) -> GroupInsert:
        """The batch failed: move each event alone. One that still fails alone while its
        bare form (no deliveries, person or normalized form) can be stored is kept as a
        quarantined event with the reason, logged as an ERROR: it was acknowledged, so
        it must not be lost, and it must not hold up the journal behind it. If even the
        bare form fails, the fault is the database's, not the event's: that raises."""
        new_deliveries = False
        for record in records:
            try:
                with conn.begin_nested():
                    inserted = self._rows.insert(conn, self._prepared([record]))
                new_deliveries |= inserted.new_deliveries
            except Exception as exc:
                if _retry_whole_transaction(exc):
                    raise
                log.error(
                    "journaled event not stored as routed; kept quarantined",
                    extra=fields(event_id=record.event_id, error=describe(exc)),
                )
                with conn.begin_nested():
                    self._rows.insert(conn, self._prepared([_quarantined_copy(record, exc)]))
        return GroupInsert([], new_deliveries)

    def pending(self, conn: Connection) -> bool:
        return conn.execute(select(inbox.c.seq).limit(1)).first() is not None

    def _take_back(self, conn: Connection, keys: set[tuple[str, str]]) -> None:
        # Rows this transaction just inserted for keys a move had already stored.
        for source, key in keys:
            conn.execute(
                delete(inbox).where(and_(inbox.c.source == source, inbox.c.idempotency_key == key))
            )


_COLUMNS = (*RECEIVED_COLUMNS, "connectors", "identifiers")


def _inbox_row(r: IncomingEvent) -> tuple[Any, ...]:
    return (*received_values(r), json_text(r.connectors), json_text(r.identifiers))


def _retry_whole_transaction(exc: Exception) -> bool:
    """A failure of the connection or of the transaction as a whole (lost connection,
    deadlock, serialization failure): no event of the batch is at fault, so none is set
    aside; the claim or read that moves fails and the next one moves them."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None) or ""
    return sqlstate.startswith(("08", "40", "57"))


def _quarantined_copy(record: IncomingEvent, exc: Exception) -> IncomingEvent:
    """What is kept of an event that could not be moved in: the body and headers as
    received, quarantined, under a key and id of its own. The key cannot be the event's:
    a replay (after a fix) re-parses the body into the event's own key and id, which must
    not be taken already, or it would be answered as a duplicate of this copy."""
    key = "unstored:" + hashlib.sha256(record.idempotency_key.encode()).hexdigest()
    return replace(
        record,
        event_id=event_id_for(record.source, key),
        idempotency_key=key,
        status="quarantined",
        lead_key=None,
        normalized=None,
        connectors=(),
        identifiers=(),
        reason=f"not stored as routed (acknowledged as {record.event_id}): {describe(exc)}"[:2000],
    )


def _record(row: Any) -> IncomingEvent:
    return IncomingEvent(
        event_id=row.event_id,
        source=row.source,
        provider=row.provider,
        status=row.status,
        idempotency_key=row.idempotency_key,
        received_at=row.received_at,
        body=row.body,
        headers=json.loads(row.headers) if row.headers else {},
        type=row.type,
        provider_event=row.provider_event,
        lead_key=row.lead_key,
        occurred_at=row.occurred_at,
        normalized=row.normalized,
        reason=row.reason,
        connectors=tuple(json.loads(row.connectors)),
        identifiers=tuple(json.loads(row.identifiers)),
    )
