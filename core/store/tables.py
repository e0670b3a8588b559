"""Database tables (SQLAlchemy Core). Alembic migrations in `migrations/` create the same.

- `inbox` is the ingest journal: an accepted request commits one row here (the event as
  received, and its dedup key in the unique index) and nothing else; the delivery worker
  (or any read of the store) moves the rows into the tables below in large batches
  (`inbox.py` says why).
- `dedup_keys` holds one compact row per (source, idempotency key): it is the dedup
  authority and outlives payloads (`dedup_retention`), so an old replay stays a duplicate.
- `events` holds what was received (raw body, normalized form) until `retention`.
- `deliveries` is the queue: one row per (event, connector), leased by workers.
- `attempts` is the delivery history, one row per try.
- `connector_state` records connectors disabled at run time (a webhook answered 410).
- `housekeeping` records when periodic jobs (the retention purge) last ran.
- `persons`, `identities` and `identity_conflicts` are the identity map: which
  identifiers (emails, LinkedIn and GitHub usernames, provider lead ids) are one person,
  and events whose identifiers named two people. Kept for `dedup_retention` after the
  person's last event, like the dedup keys.
- `lead_progress` holds, per (connector, lead), the newest event delivered, so an older
  one arriving late can be recognized as superseded.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on SQLite and PostgreSQL alike."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return _naive_utc(value)

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        # The text SQLAlchemy's SQLite DATETIME writes ("%04d-%02d-%02d %02d:%02d:%02d.%06d"),
        # made in one call: moving a journal batch in binds about nine times per event, and
        # the two chained processors were a fifth of the move's CPU.
        def process(value: Any) -> str | None:
            if value is None:
                return None
            return _naive_utc(value).isoformat(" ", "microseconds")

        return process

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


def _naive_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the store; use UTC-aware datetimes")
    return value.astimezone(UTC).replace(tzinfo=None)


metadata = MetaData()

dedup_keys = Table(
    "dedup_keys",
    metadata,
    Column("source", String(64), primary_key=True),
    Column("idempotency_key", String(255), primary_key=True),
    Column("event_id", String(40), nullable=False),
    Column("first_seen_at", UTCDateTime, nullable=False, index=True),
)


def _received_columns(*, event_id_is_key: bool) -> list[Column[Any]]:
    """The columns of an event as the receiver makes it: `events` and `inbox` both hold them."""
    return [
        Column("event_id", String(40), primary_key=event_id_is_key, nullable=False),
        Column("source", String(64), nullable=False),
        Column("provider", String(32), nullable=False),
        # accepted | ignored | quarantined
        Column("status", String(16), nullable=False),
        Column("type", String(32)),
        Column("provider_event", String(128)),
        Column("idempotency_key", String(255), nullable=False),
        Column("lead_key", String(320)),
        Column("occurred_at", UTCDateTime),
        Column("received_at", UTCDateTime, nullable=False),
        Column("body", LargeBinary),
        # The provider-relevant request headers (never the signature), for re-parsing later.
        Column("headers", Text),
        # LeadEvent as JSON without `raw` (rebuilt from `body`), for accepted events.
        Column("normalized", Text),
        Column("reason", Text),
    ]


events = Table(
    "events",
    metadata,
    *_received_columns(event_id_is_key=True),
    # The person's identifiers when the event arrived (JSON list). With `lead_key` it
    # replaces the lead's key and identities in `normalized` when the event is loaded:
    # both are known only when the event is moved in, after `normalized` was serialized.
    Column("identities", Text),
    Index("ix_events_received_at", "received_at"),
    Index("ix_events_source_status", "source", "status"),
    Index("ix_events_lead_key", "lead_key", "received_at"),
    # Migration 0003 also makes the console's search indexes on expressions over
    # `normalized` (email, provider lead id), written per dialect, so not declared here.
)

# One row per journaled event: what the receiver made of it, plus what the move needs to
# finish the event (its connectors and identifiers, as JSON lists). `seq` keeps arrival
# order, which becomes the deliveries' order.
inbox = Table(
    "inbox",
    metadata,
    Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    *_received_columns(event_id_is_key=False),
    Column("connectors", Text, nullable=False),
    Column("identifiers", Text, nullable=False),
    UniqueConstraint("source", "idempotency_key", name="uq_inbox_source_key"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column(
        "event_id",
        String(40),
        ForeignKey("events.event_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("connector", String(64), nullable=False),
    # The event's lead: one lead's deliveries to a connector go one at a time, in id order.
    # NULL: not ordered.
    Column("lead_key", String(320)),
    # pending | delivered | skipped | dead
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("lease_owner", String(64)),
    Column("lease_expires_at", UTCDateTime),
    Column("last_error", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    UniqueConstraint("event_id", "connector", name="uq_deliveries_event_connector"),
    # With `id`, claims (ordered by next_attempt_at, id) read it in order and stop early.
    Index("ix_deliveries_due", "status", "connector", "next_attempt_at", "id"),
    Index("ix_deliveries_finished_at", "finished_at"),
    Index("ix_deliveries_lead_order", "connector", "lead_key", "status", "id"),
)

attempts = Table(
    "attempts",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column(
        "delivery_id",
        BigInteger().with_variant(Integer, "sqlite"),
        ForeignKey("deliveries.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("number", Integer, nullable=False),
    Column("worker", String(64), nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=False),
    # delivered | retryable | rate_limited | permanent | skipped | lost_lease
    Column("outcome", String(16), nullable=False),
    # The destination's answer: the error text, or for a delivered try what was written.
    Column("error", Text),
    # The request the connector built for the event (its preview: secrets masked).
    Column("request", Text),
)

connector_state = Table(
    "connector_state",
    metadata,
    Column("connector", String(64), primary_key=True),
    Column("disabled_reason", Text),
    Column("disabled_at", UTCDateTime),
)

# Periodic jobs shared by every process on this database: when each last ran, so a job
# due once an hour runs once an hour in all, not once per process.
housekeeping = Table(
    "housekeeping",
    metadata,
    Column("task", String(32), primary_key=True),
    Column("last_run_at", UTCDateTime, nullable=False),
)

# One row per person: the key every event of the person carries, and when its last
# event arrived (the identity entries expire `dedup_retention` after it).
persons = Table(
    "persons",
    metadata,
    Column("person_key", String(320), primary_key=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_event_at", UTCDateTime, nullable=False, index=True),
)

# Identifier (`email:<addr>`, `linkedin:<user>`, `github:<user>`,
# `<provider>:<lead id>@<source>`) → the person it belongs to. The primary key makes an
# identifier one person's, however many transactions add it at once.
identities = Table(
    "identities",
    metadata,
    Column("identifier", String(400), primary_key=True),
    Column("person_key", String(320), nullable=False, index=True),
    Column("first_seen_at", UTCDateTime, nullable=False),
)

# An event whose identifiers belonged to two people: it kept `kept_key` (its strongest
# match), and `identifier` stayed with `other_key`.
identity_conflicts = Table(
    "identity_conflicts",
    metadata,
    Column(
        "event_id",
        String(40),
        ForeignKey("events.event_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("identifier", String(400), primary_key=True),
    Column("kept_key", String(320), nullable=False, index=True),
    Column("other_key", String(320), nullable=False, index=True),
    Column("recorded_at", UTCDateTime, nullable=False),
)

lead_progress = Table(
    "lead_progress",
    metadata,
    Column("connector", String(64), primary_key=True),
    Column("lead_key", String(320), primary_key=True),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("event_id", String(40), nullable=False),
    Column("updated_at", UTCDateTime, nullable=False, index=True),
)
