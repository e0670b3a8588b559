"""Alembic environment: always run programmatically by `leadrelay.core.store.store.migrate`.

The caller passes an open connection in `config.attributes["connection"]`, so migrations
use the same engine settings (SQLite pragmas, PostgreSQL driver) as the application.
"""

from __future__ import annotations

from alembic import context

from leadrelay.core.store.tables import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
