"""Indexes for the console's search: lead key, lead email, provider lead id.

The email and provider lead id live in the normalized JSON; expression indexes read them
there, so the writers store nothing new. `console_queries.lead_field` builds the same expressions.
PostgreSQL reads them with a pattern, not a jsonb cast: jsonb refuses a `\u0000` escape,
which a stored event may carry, and an index expression that fails fails the insert.
The normalized JSON is pydantic's compact dump with the lead before any other object, so
the first `"email":"…"` is the lead's; a value holding a quote or a backslash is not
indexed (its lead key still finds it).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_EXPRESSIONS = {
    "sqlite": {
        "email": "lower(json_extract(normalized, '$.lead.email'))",
        "provider_lead_id": "json_extract(normalized, '$.lead.provider_lead_id')",
    },
    "postgresql": {
        "email": 'lower(substring(normalized from \'"email":"([^"\\\\]*)"\'))',
        "provider_lead_id": 'substring(normalized from \'"provider_lead_id":"([^"\\\\]*)"\')',
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
