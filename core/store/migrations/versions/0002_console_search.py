"""Indexes for the console's search: lead key, lead email, provider lead id.

The email and provider lead id live in the normalized JSON; expression indexes read them
there, so the writers store nothing new. `console_queries.lead_field` builds the same expressions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_EXPRESSIONS = {
    "sqlite": {
        "email": "lower(json_extract(normalized, '$.lead.email'))",
        "provider_lead_id": "json_extract(normalized, '$.lead.provider_lead_id')",
    },
    "postgresql": {
        "email": "lower(CAST(normalized AS jsonb) -> 'lead' ->> 'email')",
        "provider_lead_id": "(CAST(normalized AS jsonb) -> 'lead' ->> 'provider_lead_id')",
    },
}


def upgrade() -> None:
    op.create_index("ix_events_lead_key", "events", ["lead_key", "received_at"])
    expressions = _EXPRESSIONS[op.get_bind().dialect.name]
    for name, expression in expressions.items():
        # Partial: only events with a normalized lead have these fields.
        op.execute(
            f"CREATE INDEX ix_events_lead_{name} ON events (({expression})) "
            "WHERE normalized IS NOT NULL"
        )


def downgrade() -> None:
    op.drop_index("ix_events_lead_provider_lead_id", "events")
    op.drop_index("ix_events_lead_email", "events")
    op.drop_index("ix_events_lead_key", "events")
