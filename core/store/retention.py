"""Retention: payloads and delivery history go after `retention`, dedup keys and idle
persons' identity entries after `dedup_retention`.

Events with a delivery still pending are kept whatever their age, and a dedup key outlives
its event's payload (`dedup_retention`), so a provider replaying an old signed body is
still answered `duplicate`. A lead's newest delivered event (`lead_progress`, for
superseded events) is kept as long as the dedup keys.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, select

from leadrelay.core.store.identity_admin import purge_identities
from leadrelay.core.store.tables import attempts, dedup_keys, deliveries, events, lead_progress


def purge_old_rows(
    conn: Connection, now: datetime, retention: timedelta, dedup_retention: timedelta
) -> dict[str, int]:
    cutoff = now - retention
    still_pending = select(deliveries.c.event_id).where(deliveries.c.status == "pending")
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
        delete(events).where(events.c.received_at < cutoff, events.c.event_id.not_in(still_pending))
    ).rowcount
    # A key whose event is still stored stays: without it the same body would be taken as
    # new and collide with that event's row (retention > dedup_retention, or a delivery
    # pending that long).
    n_progress = conn.execute(
        delete(lead_progress).where(lead_progress.c.updated_at < now - dedup_retention)
    ).rowcount
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
        "identities": purge_identities(conn, now, dedup_retention),
        "lead_progress": n_progress,
    }
