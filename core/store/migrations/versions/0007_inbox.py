"""The ingest journal: a request commits one `inbox` row, moved into the tables later.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from leadrelay.core.store.tables import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inbox",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("event_id", sa.String(40), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("type", sa.String(32)),
        sa.Column("provider_event", sa.String(128)),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("lead_key", sa.String(320)),
        sa.Column("occurred_at", UTCDateTime),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.Column("body", sa.LargeBinary()),
        sa.Column("headers", sa.Text()),
        sa.Column("normalized", sa.Text()),
        sa.Column("reason", sa.Text()),
        sa.Column("connectors", sa.Text(), nullable=False),
        sa.Column("identifiers", sa.Text(), nullable=False),
        sa.UniqueConstraint("source", "idempotency_key", name="uq_inbox_source_key"),
    )


def downgrade() -> None:
    op.drop_table("inbox")
