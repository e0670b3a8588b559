"""Incoming events as driver-ready rows, and the inserts that store a group of them.

Rows are bound in the request's own thread (`prepare`), before the group commit: whatever
runs in `insert` runs while every other writer waits.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

import orjson
from sqlalchemy import Connection

from leadrelay.core.store.backend import Backend
from leadrelay.core.store.bulk_insert import BulkInsert
from leadrelay.core.store.identity_map import Claim, IdentityMap
from leadrelay.core.store.records import IncomingEvent, IngestResult
from leadrelay.core.store.tables import dedup_keys, deliveries, events


class PreparedEvent(NamedTuple):
    source: str
    idempotency_key: str
    event_id: str
    key_row: tuple[Any, ...]
    event_row: tuple[Any, ...]
    delivery_rows: tuple[tuple[Any, ...], ...]
    # Who the event is about, resolved to a person in `insert` (None: nothing to resolve).
    claim: Claim | None
    prepared_at: datetime


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
        self._identity_map = IdentityMap(dialect)
        self._deliveries = BulkInsert(deliveries, _DELIVERY_COLUMNS, dialect)

    def prepare(self, record: IncomingEvent, now: datetime) -> PreparedEvent:
        return PreparedEvent(
            source=record.source,
            idempotency_key=record.idempotency_key,
            event_id=record.event_id,
            key_row=self._dedup_keys.bind(
                (record.source, record.idempotency_key, record.event_id, now)
            ),
            event_row=self._events.bind(_event_row(record)),
            # Due since the event arrived: a move from the journal comes later, and the claim
            # that made it must find them due.
            delivery_rows=tuple(
                self._deliveries.bind(
                    (
                        record.event_id,
                        name,
                        record.lead_key,
                        "pending",
                        0,
                        record.received_at,
                        now,
                        now,
                    )
                )
                for name in record.connectors
            ),
            claim=Claim(record.event_id, record.lead_key, record.identifiers, record.received_at)
            if record.identifiers and record.lead_key
            else None,
            prepared_at=now,
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
        rows: list[tuple[Any, ...]] = []
        if fresh:
            new_records = [unique[n] for n in fresh]
            event_rows = [record.event_row for record in new_records]
            conflicts = self._resolve_persons(conn, new_records, event_rows)
            self._events.execute(conn, event_rows)
            self._identity_map.record_conflicts(conn, conflicts)
            # Each delivery is ordered by its event's person (resolved just above).
            rows = [
                _with_lead(row, event_row[_LEAD_KEY_AT])
                for record, event_row in zip(new_records, event_rows, strict=True)
                for row in record.delivery_rows
            ]
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

    def _resolve_persons(
        self,
        conn: Connection,
        stored: Sequence[PreparedEvent],
        event_rows: list[tuple[Any, ...]],
    ) -> list[tuple[Any, ...]]:
        """Give each event its person's key and identities (patched into `event_rows`);
        returns the identity conflicts, to record once the events exist."""
        at = [k for k, record in enumerate(stored) if record.claim is not None]
        claims = [claim for record in stored if (claim := record.claim) is not None]
        if not claims:
            return []
        resolution = self._identity_map.resolve(conn, claims, stored[0].prepared_at)
        for k, person in zip(at, resolution.resolved, strict=True):
            event_rows[k] = _with_person(event_rows[k], person.key, person.identities_json)
        return resolution.conflicts


# What the receiver made of an event (`events` and `inbox` both hold these columns).
RECEIVED_COLUMNS = (
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
_EVENT_COLUMNS = (*RECEIVED_COLUMNS, "identities")
_LEAD_KEY_AT = _EVENT_COLUMNS.index("lead_key")
_DELIVERY_COLUMNS = (
    "event_id",
    "connector",
    "lead_key",
    "status",
    "attempts",
    "next_attempt_at",
    "created_at",
    "updated_at",
)
_DELIVERY_LEAD_KEY_AT = _DELIVERY_COLUMNS.index("lead_key")
_IDENTITIES_AT = _EVENT_COLUMNS.index("identities")


def _with_lead(delivery_row: tuple[Any, ...], lead_key: str | None) -> tuple[Any, ...]:
    # Text binds as it is, like `_with_person`.
    patched = list(delivery_row)
    patched[_DELIVERY_LEAD_KEY_AT] = lead_key
    return tuple(patched)


def _with_person(row: tuple[Any, ...], key: str, identities_json: str) -> tuple[Any, ...]:
    # Both columns hold text, which binds as it is: the bound row can be patched in place.
    patched = list(row)
    patched[_LEAD_KEY_AT] = key
    patched[_IDENTITIES_AT] = identities_json
    return tuple(patched)


def _event_row(r: IncomingEvent) -> tuple[Any, ...]:
    return (*received_values(r), None)  # identities: known once the person is resolved


def received_values(r: IncomingEvent) -> tuple[Any, ...]:
    """`r`'s values for `RECEIVED_COLUMNS`, in order."""
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
        json_text(r.headers),
        r.normalized,
        r.reason,
    )


def json_text(value: Any) -> str:
    return orjson.dumps(value).decode()
