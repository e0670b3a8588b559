"""Helpers for the per-lead order tests: events of chosen leads and versions, stored as the
receiver stores them, and waiting for a queue to settle."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from leadrelay.core.schema import LeadEvent
from leadrelay.core.store.store import (
    DeliveryFilter,
    IncomingEvent,
    Store,
    dump_normalized,
    utcnow,
)
from tests.factories import make_event

FIRST_VERSION_AT = datetime(2026, 4, 24, 10, 0, tzinfo=UTC)


def version(lead: int, number: int, **fields: Any) -> LeadEvent:
    """Version `number` of lead `lead`: its title is `v<number>`, it happened `number`
    minutes after the first, and it is received now."""
    event = make_event(
        type="lead.created" if number == 0 else "lead.updated",
        email=f"lead{lead}@example.com",
        first_name=f"Lead{lead}",
        last_name="Person",
        title=f"v{number}",
        **fields,
    )
    return event.model_copy(
        update={
            "occurred_at": FIRST_VERSION_AT + timedelta(minutes=number),
            "received_at": utcnow(),
        }
    )


def record_of(event: LeadEvent, connectors: tuple[str, ...]) -> IncomingEvent:
    """What the receiver stores for `event`, routed to `connectors`."""
    return IncomingEvent(
        event_id=event.event_id,
        source=event.source,
        provider=event.provider,
        status="accepted",
        idempotency_key=event.idempotency_key,
        received_at=event.received_at,
        body=json.dumps(event.raw).encode(),
        headers={},
        type=event.type,
        provider_event=event.provider_event,
        lead_key=event.lead.key,
        occurred_at=event.occurred_at,
        normalized=dump_normalized(event),
        connectors=connectors,
    )


def store_event(store: Store, event: LeadEvent, *connectors: str) -> str:
    [result] = store.submit_many([record_of(event, connectors)])
    return result.event_id


def statuses(store: Store, connector: str | None = None) -> Counter[str]:
    rows = store.list_deliveries(DeliveryFilter(connector=connector, limit=100_000))
    return Counter(row["status"] for row in rows)


def delivery(store: Store, event_id: str, connector: str) -> dict[str, Any]:
    [row] = store.list_deliveries(DeliveryFilter(event_id=event_id, connector=connector))
    return row


def wait_settled(store: Store, expected: int, timeout: float) -> Counter[str]:
    """Delivery statuses once `expected` deliveries exist and none is pending, or at the
    deadline (polling: the workers run in other threads)."""
    deadline = time.monotonic() + timeout
    while True:
        counts = statuses(store)
        settled = sum(counts.values()) >= expected and not counts["pending"]
        if settled or time.monotonic() > deadline:
            return counts
        time.sleep(0.05)
