"""Replays: re-parse quarantined events with the current provider code and source
configuration (after a fix, an upgrade, or a corrected field mapping), and backfill a
connector added later with the leads it missed."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from leadrelay.core.app.config import Config
from leadrelay.core.delivery.routing import matches
from leadrelay.core.ingest.providers import Unreadable
from leadrelay.core.ingest.receiver import record_for
from leadrelay.core.store.store import Store


def reparse_quarantined(config: Config, store: Store, stored: dict[str, Any]) -> str:
    """Parse a stored quarantined event again; returns a one-line account of what happened."""
    event_id = stored["event_id"]
    source = config.sources.get(stored["source"])
    if source is None or stored.get("body") is None:
        return f"{event_id}: cannot re-parse (source no longer configured or payload purged)"
    # The source as configured now: its mapping may have been fixed since.
    provider = source.adapter
    body: bytes = stored["body"]
    headers = json.loads(stored.get("headers") or "{}")
    try:
        payload = json.loads(body)
    except ValueError:
        return f"{event_id}: still unreadable: body is not JSON"
    # The original receipt time: the event is as old as when the provider sent it.
    received_at = stored["received_at"]
    result = provider.parse(
        payload, source=stored["source"], received_at=received_at, headers=headers
    )
    if isinstance(result, Unreadable):
        return f"{event_id}: still quarantined: {result.reason}"
    record = record_for(
        config,
        source=stored["source"],
        provider=provider.name,
        result=result,
        body=body,
        headers=headers,
        received_at=received_at,
    )
    outcome = store.resolve_quarantined(event_id, record)
    if outcome.duplicate:
        return f"{event_id}: same event as {outcome.event_id}, already stored"
    deliveries = len(record.connectors)
    return f"{event_id}: now {record.status} as {outcome.event_id} ({deliveries} deliveries)"


def backfill(
    config: Config,
    store: Store,
    connector: str,
    *,
    since: datetime | None = None,
    source: str | None = None,
    event_type: str | None = None,
) -> int:
    """Queue `connector` deliveries for stored accepted events that route to it and have
    none (a connector added or enabled later); returns how many were queued.

    Routing is the connector's own (`events`, `sources`, `require`), whatever `enabled`
    says: a disabled connector's backfilled deliveries wait until it is enabled.
    """
    options = config.connectors[connector]
    candidates = store.accepted_without_delivery(
        connector, since=since, source=source, event_type=event_type
    )
    chosen = [event.event_id for event in candidates if matches(event, options)]
    return store.add_deliveries(connector, chosen)
