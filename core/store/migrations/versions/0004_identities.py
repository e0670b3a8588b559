"""Identity map: one person key for all of a person's identifiers.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from leadrelay.core.store.tables import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Events are found by person through 0003's ix_events_lead_key (lead_key, received_at).
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("identities", sa.Text))
    op.create_table(
        "persons",
        sa.Column("person_key", sa.String(320), primary_key=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("last_event_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_persons_last_event_at", "persons", ["last_event_at"])
    op.create_table(
        "identities",
        sa.Column("identifier", sa.String(400), primary_key=True),
        sa.Column("person_key", sa.String(320), nullable=False),
        sa.Column("first_seen_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_identities_person_key", "identities", ["person_key"])
    op.create_table(
        "identity_conflicts",
        sa.Column(
            "event_id",
            sa.String(40),
            sa.ForeignKey("events.event_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("identifier", sa.String(400), primary_key=True),
        sa.Column("kept_key", sa.String(320), nullable=False),
        sa.Column("other_key", sa.String(320), nullable=False),
        sa.Column("recorded_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_identity_conflicts_kept_key", "identity_conflicts", ["kept_key"])
    op.create_index("ix_identity_conflicts_other_key", "identity_conflicts", ["other_key"])


def downgrade() -> None:
    op.drop_table("identity_conflicts")
    op.drop_table("identities")
    op.drop_table("persons")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("identities")
