"""The migrations build exactly the schema `core/store/tables.py` declares (SQLite and
PostgreSQL), so code reading the tables and a database upgraded in the field agree."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from leadrelay.core.store.tables import metadata
from tests.conftest import migrated_store

# Made by migration 0003 on expressions over `normalized`, per dialect; not declarable.
EXPRESSION_INDEXES = {"ix_events_lead_email", "ix_events_lead_provider_lead_id"}


def _differences(store_url: str) -> list[Any]:
    store = migrated_store(store_url)
    try:
        with store.engine.connect() as conn:
            schema = conn.dialect.default_schema_name
            context = MigrationContext.configure(
                conn, opts={"include_schemas": False, "version_table_schema": schema}
            )
            diff = compare_metadata(context, metadata)
    finally:
        store.close()
    return [
        d
        for d in diff
        if not (d[0] == "remove_index" and d[1].name in EXPRESSION_INDEXES)
        and not (d[0] == "remove_table" and d[1].name == "alembic_version")
    ]


@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
def test_the_migrated_schema_is_the_declared_one(store_url: str) -> None:
    assert _differences(store_url) == []
