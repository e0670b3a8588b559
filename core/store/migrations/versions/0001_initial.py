"""Initial schema: dedup keys, events, deliveries, attempts, connector state.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from leadrelay.core.store.tables import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "dedup_keys",
        sa.Column("source", sa.String(64), primary_key=True),
        sa.Column("idempotency_key", sa.String(255), primary_key=True),
        sa.Column("event_id", sa.String(40), nullable=False),
        sa.Column("first_seen_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_dedup_keys_first_seen_at", "dedup_keys", ["first_seen_at"])
    op.create_table(
        "events",
        sa.Column("event_id", sa.String(40), primary_key=True),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("type", sa.String(32)),
        sa.Column("provider_event", sa.String(128)),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("lead_key", sa.String(320)),
        sa.Column("occurred_at", UTCDateTime),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.Column("body", sa.LargeBinary),
        sa.Column("headers", sa.Text),
        sa.Column("normalized", sa.Text),
        sa.Column("reason", sa.Text),
    )
    op.create_index("ix_events_received_at", "events", ["received_at"])
    op.create_index("ix_events_source_status", "events", ["source", "status"])
    op.create_table(
        "deliveries",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column(
            "event_id",
            sa.String(40),
            sa.ForeignKey("events.event_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("connector", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UTCDateTime, nullable=False),
        sa.Column("lease_owner", sa.String(64)),
        sa.Column("lease_expires_at", UTCDateTime),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("finished_at", UTCDateTime),
        sa.UniqueConstraint("event_id", "connector", name="uq_deliveries_event_connector"),
    )
    op.create_index("ix_deliveries_due", "deliveries", ["status", "connector", "next_attempt_at"])
    op.create_index("ix_deliveries_finished_at", "deliveries", ["finished_at"])
    op.create_table(
        "attempts",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column(
            "delivery_id",
            _ID,
            sa.ForeignKey("deliveries.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("worker", sa.String(64), nullable=False),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("finished_at", UTCDateTime, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("error", sa.Text),
    )
    op.create_index("ix_attempts_delivery_id", "attempts", ["delivery_id"])
    op.create_table(
        "connector_state",
        sa.Column("connector", sa.String(64), primary_key=True),
        sa.Column("disabled_reason", sa.Text),
        sa.Column("disabled_at", UTCDateTime),
    )


def downgrade() -> None:
    for table in ("connector_state", "attempts", "deliveries", "events", "dedup_keys"):
        op.drop_table(table)
