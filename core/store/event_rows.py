"""Incoming events as driver-ready rows, and the inserts that store a group of them.

Rows are bound in the request's own thread (`prepare`), before the group commit: whatever
runs in `insert` runs while every other writer waits.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection

from leadrelay.core.store.backend import Backend
from leadrelay.core.store.bulk_insert import BulkInsert
from leadrelay.core.store.records import IncomingEvent, IngestResult
from leadrelay.core.store.tables import dedup_keys, deliveries, events


class PreparedEvent(NamedTuple):
    source: str
    idempotency_key: str
    event_id: str
    key_row: tuple[Any, ...]
    event_row: tuple[Any, ...]
    delivery_rows: tuple[tuple[Any, ...], ...]


class GroupInsert(NamedTuple):
    results: list[IngestResult]
    # Whether the group added deliveries (workers have something new to send).
    new_deliveries: bool


class EventRows:
    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        dialect = backend.engine.dialect
        self._dedup_keys = BulkInsert(
            dedup_keys,
            ("source", "idempotency_key", "event_id", "first_seen_at"),
            dialect,
            suffix=backend.dedup_insert_suffix,
        )
        self._events = BulkInsert(events, _EVENT_COLUMNS, dialect)
        self._deliveries = BulkInsert(
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

    def prepare(self, record: IncomingEvent, now: datetime) -> PreparedEvent:
        return PreparedEvent(
            source=record.source,
            idempotency_key=record.idempotency_key,
            event_id=record.event_id,
            key_row=self._dedup_keys.bind(
                (record.source, record.idempotency_key, record.event_id, now)
            ),
            event_row=self._events.bind(_event_row(record)),
            delivery_rows=tuple(
                self._deliveries.bind((record.event_id, name, "pending", 0, now, now, now))
                for name in record.connectors
            ),
        )

    def insert(self, conn: Connection, records: Sequence[PreparedEvent]) -> GroupInsert:
        """Store the records in `conn`'s transaction; one result per record, in order.

        A record repeating an earlier record's (source, idempotency key), in this group or
        in the store, is a duplicate: nothing of it is stored.
        """
        first_index: dict[tuple[str, str], int] = {}
        for i, record in enumerate(records):
            first_index.setdefault((record.source, record.idempotency_key), i)
        unique_at = list(first_index.values())
        unique = [records[i] for i in unique_at]
        fresh = self._backend.claim_keys(
            conn,
            [(r.source, r.idempotency_key) for r in unique],
            [r.key_row for r in unique],
            self._dedup_keys,
        )
        rows = [row for n in fresh for row in unique[n].delivery_rows]
        if fresh:
            self._events.execute(conn, [unique[n].event_row for n in fresh])
            if rows:
                self._deliveries.execute(conn, rows)
                self._backend.notify(conn)
        stored = {unique_at[n] for n in fresh}
        return GroupInsert(
            results=[
                IngestResult(event_id=record.event_id, duplicate=i not in stored)
                for i, record in enumerate(records)
            ],
            new_deliveries=bool(rows),
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
