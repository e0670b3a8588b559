"""Replays: re-parse quarantined events with the current provider code and source
configuration (after a fix, an upgrade, or a corrected field mapping), and backfill a
connector added later with the leads it missed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from leadrelay.core.app.config import Config
from leadrelay.core.delivery.routing import matches
from leadrelay.core.ingest.providers import Unreadable
from leadrelay.core.ingest.receiver import record_for
from leadrelay.core.store.store import Store


@dataclass(frozen=True)
class Reparsed:
    """A one-line account of a re-parse; `stuck` when the event now parses but still
    cannot be stored (it stays quarantined, with that reason, and the command fails)."""

    message: str
    stuck: bool = False


def reparse_quarantined(config: Config, store: Store, stored: dict[str, Any]) -> Reparsed:
    """Parse a stored quarantined event again."""
    event_id = stored["event_id"]
    source = config.sources.get(stored["source"])
    if source is None or stored.get("body") is None:
        return Reparsed(
            f"{event_id}: cannot re-parse (source no longer configured or payload purged)"
        )
    # The source as configured now: its mapping may have been fixed since.
    provider = source.adapter
    body: bytes = stored["body"]
    headers = json.loads(stored.get("headers") or "{}")
    try:
        payload = json.loads(body)
    except ValueError:
        return Reparsed(f"{event_id}: still unreadable: body is not JSON")
    # The original receipt time: the event is as old as when the provider sent it.
    received_at = stored["received_at"]
    result = provider.parse(
        payload, source=stored["source"], received_at=received_at, headers=headers
    )
    if isinstance(result, Unreadable):
        return Reparsed(f"{event_id}: still quarantined: {result.reason}")
    record = record_for(
        config,
        source=stored["source"],
        provider=provider.name,
        result=result,
        body=body,
        headers=headers,
        received_at=received_at,
        canonical_body=provider.canonical_body,
    )
    if record.status == "quarantined":
        # Parsed, but not storable: resolving it would mark it replayed as a duplicate of
        # itself, and it could never be replayed again.
        reason = record.reason or "cannot be stored"
        store.set_quarantine_reason(event_id, reason)
        return Reparsed(f"{event_id}: still quarantined: {reason}", stuck=True)
    outcome = store.resolve_quarantined(event_id, record)
    if outcome is None:
        return Reparsed(
            f"{event_id}: still quarantined: parsed, but not stored as routed"
            " (the ERROR log says why)",
            stuck=True,
        )
    if outcome.duplicate:
        return Reparsed(f"{event_id}: same event as {outcome.event_id}, already stored")
    deliveries = len(record.connectors)
    return Reparsed(
        f"{event_id}: now {record.status} as {outcome.event_id} ({deliveries} deliveries)"
    )


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
