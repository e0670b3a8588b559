"""Housekeeping: when the retention purge last ran, shared by every process.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from leadrelay.core.store.tables import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "housekeeping",
        sa.Column("task", sa.String(32), primary_key=True),
        sa.Column("last_run_at", UTCDateTime, nullable=False),
    )
    # The row exists from the start, so claiming a run is a single conditional UPDATE.
    op.bulk_insert(table, [{"task": "purge", "last_run_at": datetime(1970, 1, 1, tzinfo=UTC)}])


def downgrade() -> None:
    op.drop_table("housekeeping")
