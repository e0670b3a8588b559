"""Read-only queries for the CLI and metrics (`Store` inherits them)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from leadrelay.core.schema import LeadEvent
from leadrelay.core.store.records import DeliveryFilter, EventFilter, load_lead_event
from leadrelay.core.store.tables import (
    attempts,
    deliveries,
    events,
    identity_conflicts,
    inbox,
)

# What a listing of events shows (CLI and console).
EVENT_LISTING = (
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
# What a listing of deliveries shows: the delivery and its event's source, type and lead.
DELIVERY_LISTING = (
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
)


class StoreQueries(ABC):
    @abstractmethod
    def _read(self) -> AbstractContextManager[Connection]:
        """A read-only transaction; StoreUnavailable when the database cannot answer."""

    def list_events(self, f: EventFilter) -> list[dict[str, Any]]:
        query = select(*EVENT_LISTING)
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
            rows = [dict(row._mapping) for row in conn.execute(query)]
            conflicts: dict[str, list[str]] = {}
            for conflict in conn.execute(
                select(identity_conflicts)
                .where(identity_conflicts.c.event_id.in_([row["event_id"] for row in rows]))
                .order_by(identity_conflicts.c.identifier)
            ):
                conflicts.setdefault(conflict.event_id, []).append(
                    f"{conflict.identifier} is {conflict.other_key}'s"
                )
        for row in rows:
            found = conflicts.get(row["event_id"])
            row["identity_conflict"] = "; ".join(found) if found else None
        return rows

    def get_event(self, event_id: str) -> dict[str, Any] | None:
        with self._read() as conn:
            row = conn.execute(select(events).where(events.c.event_id == event_id)).first()
            return dict(row._mapping) if row else None

    def list_deliveries(self, f: DeliveryFilter) -> list[dict[str, Any]]:
        """Deliveries, newest first; `waits_for` is the id of the pending delivery of the
        same lead and connector this one waits behind (None when it does not wait)."""
        before = deliveries.alias("before")
        waits_for = (
            select(func.min(before.c.id))
            .where(
                before.c.connector == deliveries.c.connector,
                before.c.lead_key == deliveries.c.lead_key,
                before.c.status == "pending",
                before.c.id < deliveries.c.id,
                deliveries.c.status == "pending",
            )
            .scalar_subquery()
        )
        query = select(*DELIVERY_LISTING, waits_for.label("waits_for")).join(
            events, events.c.event_id == deliveries.c.event_id
        )
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
        """Counts by (connector, status), the age of the oldest pending delivery, and the
        events still journaled (the read moves them in first: more than a few means
        moves are failing)."""
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
            journaled = conn.execute(select(func.count()).select_from(inbox)).scalar_one()
        age = (now - oldest).total_seconds() if oldest else 0.0
        return {"counts": counts, "oldest_pending_age_s": max(age, 0.0), "journaled": journaled}

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
        query = select(
            events.c.normalized, events.c.body, events.c.lead_key, events.c.identities
        ).where(
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
            return [
                load_lead_event(row.normalized, row.body, row.lead_key, row.identities)
                for row in conn.execute(query)
            ]
