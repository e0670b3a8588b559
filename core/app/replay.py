"""Re-parse quarantined events with the current provider code and source configuration
(after a fix, an upgrade, or a corrected field mapping)."""

from __future__ import annotations

import json
from typing import Any

from leadrelay.core.app.config import Config
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
