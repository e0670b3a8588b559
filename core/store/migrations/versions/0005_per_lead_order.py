"""Per-lead order: each delivery knows its lead; the newest delivered event per lead.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from leadrelay.core.store.tables import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("lead_key", sa.String(320)))
    # Deliveries queued before this revision take their event's lead, so they are ordered
    # with the ones that follow them.
    op.execute(
        "UPDATE deliveries SET lead_key = (SELECT events.lead_key FROM events "
        "WHERE events.event_id = deliveries.event_id)"
    )
    op.create_index(
        "ix_deliveries_lead_order", "deliveries", ["connector", "lead_key", "status", "id"]
    )
    # Claims skip the waiting deliveries one by one in (next_attempt_at, id) order: with
    # `id` in the index they read it in that order and stop after the heads they need.
    op.drop_index("ix_deliveries_due", "deliveries")
    op.create_index(
        "ix_deliveries_due", "deliveries", ["status", "connector", "next_attempt_at", "id"]
    )
    op.create_table(
        "lead_progress",
        sa.Column("connector", sa.String(64), primary_key=True),
        sa.Column("lead_key", sa.String(320), primary_key=True),
        sa.Column("occurred_at", UTCDateTime, nullable=False),
        sa.Column("event_id", sa.String(40), nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_lead_progress_updated_at", "lead_progress", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_lead_progress_updated_at", "lead_progress")
    op.drop_table("lead_progress")
    op.drop_index("ix_deliveries_due", "deliveries")
    op.create_index("ix_deliveries_due", "deliveries", ["status", "connector", "next_attempt_at"])
    op.drop_index("ix_deliveries_lead_order", "deliveries")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("lead_key")
