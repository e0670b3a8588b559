"""Read-only queries for the operator console: search, keyset pages, counts over time.

Search finds an event by event id, lead key, lead email or provider lead id; each of those
is indexed (migration 0003), so a search costs a few index lookups however many events
are stored. Lists are keyset-paginated (newest first), so page 1000 costs what page 1
costs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    and_,
    exists,
    func,
    literal_column,
    or_,
    select,
)

from leadrelay.core.store.queries import DELIVERY_LISTING, EVENT_LISTING
from leadrelay.core.store.store import Store
from leadrelay.core.store.tables import deliveries, events

# Delivery states that are not finished (`waiting` is a pending delivery held for per-lead
# order, where the store records it).
OPEN_STATUSES = ("pending", "waiting")

# The same expressions as the indexes of migration 0003 (they must match to be used; the
# migration says why PostgreSQL's read a pattern).
_LEAD_FIELD_SQL = {
    "sqlite": {
        "email": "lower(json_extract(events.normalized, '$.lead.email'))",
        "provider_lead_id": "json_extract(events.normalized, '$.lead.provider_lead_id')",
    },
    "postgresql": {
        "email": 'lower(substring(events.normalized from \'"email":"([^"\\\\]*)"\'))',
        "provider_lead_id": (
            'substring(events.normalized from \'"provider_lead_id":"([^"\\\\]*)"\')'
        ),
    },
}
_HOUR_SQL = {
    "sqlite": "strftime('%Y-%m-%d %H', events.received_at)",
    "postgresql": "to_char(date_trunc('hour', events.received_at), 'YYYY-MM-DD HH24')",
}


def _no_index(column: ColumnElement[Any]) -> ColumnElement[Any]:
    """`column` as an expression no index provides, labelled as the column.

    Grouping a time range by indexed columns makes SQLite walk the whole grouping index
    (to skip a sort) instead of the time range; grouping by an expression keeps it on the
    range: 1 ms instead of a second on a million events.
    """
    return func.coalesce(column, "").label(column.key)  # type: ignore[attr-defined]


def lead_field(dialect: str, name: str) -> ColumnElement[Any]:
    """The indexed SQL expression reading lead `name` (email lower-cased) from an event."""
    return literal_column(_LEAD_FIELD_SQL[dialect][name])


# -- events -------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventCursor:
    """Where a page of events (newest first) ends: the next page starts after it."""

    received_at: datetime
    event_id: str

    def encode(self) -> str:
        return f"{self.received_at.isoformat()}|{self.event_id}"

    @classmethod
    def decode(cls, text: str) -> EventCursor | None:
        """None for anything malformed (a hand-edited URL): the first page, not an error."""
        when, _, event_id = text.partition("|")
        try:
            received_at = datetime.fromisoformat(when)
        except ValueError:
            return None
        if received_at.tzinfo is None or not event_id:
            return None
        return cls(received_at, event_id)


@dataclass(frozen=True)
class EventQuery:
    search: str | None = None
    source: str | None = None
    type: str | None = None
    status: str | None = None
    connector: str | None = None
    outcome: str | None = None  # a delivery status, for `connector` (or any connector)
    since: datetime | None = None
    until: datetime | None = None
    after: EventCursor | None = None
    limit: int = 50


@dataclass(frozen=True)
class Page:
    rows: list[dict[str, Any]]
    next_cursor: str | None


def search_condition(dialect: str, text: str) -> ColumnElement[bool]:
    """Events whose id, lead key, lead email or provider lead id is `text` (exactly;
    emails in any case)."""
    text = text.strip()
    lowered = text.lower()
    has_lead = events.c.normalized.is_not(None)
    return or_(
        events.c.event_id == text,
        events.c.lead_key.in_([text, f"email:{lowered}"]),
        and_(has_lead, lead_field(dialect, "email") == lowered),
        and_(has_lead, lead_field(dialect, "provider_lead_id") == text),
    )


def search_events(store: Store, q: EventQuery) -> Page:
    """One page of events matching `q`, newest first, and the cursor of the next page."""
    query = select(*EVENT_LISTING)
    if q.search and q.search.strip():
        query = query.where(search_condition(store.engine.dialect.name, q.search))
    if q.source:
        query = query.where(events.c.source == q.source)
    if q.type:
        query = query.where(events.c.type == q.type)
    if q.status:
        query = query.where(events.c.status == q.status)
    if q.connector or q.outcome:
        delivery = [deliveries.c.event_id == events.c.event_id]
        if q.connector:
            delivery.append(deliveries.c.connector == q.connector)
        if q.outcome:
            delivery.append(deliveries.c.status == q.outcome)
        query = query.where(exists().where(*delivery))
    if q.since:
        query = query.where(events.c.received_at >= q.since)
    if q.until:
        query = query.where(events.c.received_at < q.until)
    if q.after:
        query = query.where(
            events.c.received_at <= q.after.received_at,
            or_(
                events.c.received_at < q.after.received_at,
                events.c.event_id < q.after.event_id,
            ),
        )
    query = query.order_by(events.c.received_at.desc(), events.c.event_id.desc()).limit(q.limit + 1)
    with store._read() as conn:
        rows = [dict(row._mapping) for row in conn.execute(query)]
    more = len(rows) > q.limit
    rows = rows[: q.limit]
    cursor = EventCursor(rows[-1]["received_at"], rows[-1]["event_id"]) if more else None
    return Page(rows, cursor.encode() if cursor else None)


def events_by_ids(store: Store, event_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Whole stored events (body, headers, normalized) for these ids."""
    if not event_ids:
        return []
    with store._read() as conn:
        rows = conn.execute(select(events).where(events.c.event_id.in_(list(event_ids))))
        return [dict(row._mapping) for row in rows]


# -- deliveries ---------------------------------------------------------------------------


def deliveries_page(
    store: Store,
    *,
    status: str | None = None,
    connector: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> tuple[list[dict[str, Any]], int | None]:
    """Deliveries newest first (by id) with their event's source and lead key, and the id
    the next page starts before (None on the last page)."""
    query = select(*DELIVERY_LISTING).join(events, events.c.event_id == deliveries.c.event_id)
    if status:
        query = query.where(deliveries.c.status == status)
    if connector:
        query = query.where(deliveries.c.connector == connector)
    if before_id is not None:
        query = query.where(deliveries.c.id < before_id)
    query = query.order_by(deliveries.c.id.desc()).limit(limit + 1)
    with store._read() as conn:
        rows = [dict(row._mapping) for row in conn.execute(query)]
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1]["id"] if more else None)


def deliveries_by_ids(store: Store, ids: Sequence[int]) -> list[dict[str, Any]]:
    if not ids:
        return []
    with store._read() as conn:
        rows = conn.execute(
            select(
                deliveries.c.id,
                deliveries.c.event_id,
                deliveries.c.connector,
                deliveries.c.status,
            ).where(deliveries.c.id.in_(list(ids)))
        )
        return [dict(row._mapping) for row in rows]


# -- counts -------------------------------------------------------------------------------


def event_counts_by_source(store: Store, since: datetime) -> dict[str, dict[str, int]]:
    """source -> stored status (accepted, ignored, quarantined, replayed) -> events since."""
    source, status = _no_index(events.c.source), _no_index(events.c.status)
    query = (
        select(source, status, func.count().label("n"))
        .where(events.c.received_at >= since)
        .group_by(source, status)
    )
    counts: dict[str, dict[str, int]] = {}
    with store._read() as conn:
        for row in conn.execute(query):
            counts.setdefault(row.source, {})[row.status] = row.n
    return counts


def delivery_counts_by_connector(store: Store, since: datetime) -> dict[str, dict[str, int]]:
    """connector -> counts: `pending` (never tried), `retrying` (pending after a failed
    try), `waiting`, `dead` (all, they wait for a replay), and `delivered` / `skipped` /
    `dead_recent` finished since `since`."""
    counts: dict[str, dict[str, int]] = {}

    def add(connector: str, key: str, n: int) -> None:
        bucket = counts.setdefault(connector, {})
        bucket[key] = bucket.get(key, 0) + n

    retried = (deliveries.c.attempts > 0).label("retried")
    with store._read() as conn:
        for row in conn.execute(
            select(deliveries.c.connector, deliveries.c.status, retried, func.count().label("n"))
            .where(deliveries.c.status.in_((*OPEN_STATUSES, "dead")))
            .group_by(deliveries.c.connector, deliveries.c.status, retried)
        ):
            key = "retrying" if row.status == "pending" and row.retried else row.status
            add(row.connector, key, row.n)
        connector, status = _no_index(deliveries.c.connector), _no_index(deliveries.c.status)
        for row in conn.execute(
            select(connector, status, func.count().label("n"))
            .where(deliveries.c.finished_at >= since)
            .group_by(connector, status)
        ):
            add(row.connector, "dead_recent" if row.status == "dead" else row.status, row.n)
    return counts


def events_per_hour(store: Store, now: datetime, hours: int = 24) -> list[tuple[datetime, int]]:
    """(hour start, events received in it) for the last `hours` hours, oldest first; the
    last bucket is the current, unfinished hour."""
    current = now.replace(minute=0, second=0, microsecond=0)
    starts = [current - timedelta(hours=h) for h in range(hours - 1, -1, -1)]
    bucket = literal_column(_HOUR_SQL[store.engine.dialect.name]).label("hour")
    query = (
        select(bucket, func.count().label("n"))
        .where(events.c.received_at >= starts[0])
        .group_by(bucket)
    )
    with store._read() as conn:
        by_hour = {row.hour: row.n for row in conn.execute(query)}
    return [(start, by_hour.get(start.strftime("%Y-%m-%d %H"), 0)) for start in starts]
