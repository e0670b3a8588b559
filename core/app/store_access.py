"""Opening the store from the CLI: create and migrate it, or use what is already there.

`serve`, `worker` and `migrate` create and upgrade the database. The other commands only
read or change what is stored: a missing database is a mistake (a wrong `--config`, a
store path relative to somewhere else), so they say so instead of creating an empty one.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from sqlalchemy import Engine, make_url

from leadrelay.core.store.store import Store


class StoreProblem(Exception):
    """The store cannot be used as it is; the message says what to do."""


@dataclass(frozen=True)
class SchemaState:
    current: str | None  # None: no leadrelay tables yet
    head: str

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head

    def describe(self) -> str:
        if self.current is None:
            return "empty: no leadrelay tables yet (`connectors migrate` creates them)"
        if self.up_to_date:
            return f"schema up to date (revision {self.current})"
        return f"schema at revision {self.current}, {self.head} is newer: run `connectors migrate`"


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL (None for other stores and in-memory SQLite)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def schema_state(engine: Engine) -> SchemaState:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(files("leadrelay.core.store") / "migrations"))
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    return SchemaState(current, script.get_current_head() or "")


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip()
    return f"{type(orig).__name__}: {text.splitlines()[0]}" if text else type(orig).__name__


def open_existing(url: str, masked: str) -> tuple[Store, SchemaState]:
    """The store at `url` as it is, never created; raises StoreProblem saying what to do."""
    database = sqlite_file(url)
    if database is not None and not database.exists():
        folder = "" if database.parent.is_dir() else f" (nor its folder {database.parent})"
        raise StoreProblem(
            f"no database at {database}{folder}: run `connectors migrate` (or `connectors "
            "serve`) with this config first, or check `store:` in the config"
        )
    store = Store(url)
    try:
        state = schema_state(store.engine)
    except Exception as exc:
        store.close()
        raise StoreProblem(f"store {masked} unavailable: {_first_line(exc)}") from None
    if not state.up_to_date:
        store.close()
        raise StoreProblem(f"store {masked}: {state.describe()}")
    return store, state


def open_and_migrate(url: str, masked: str) -> Store:
    """The store at `url`, created if needed and migrated to the newest schema."""
    store = Store(url)
    try:
        store.migrate()
    except Exception as exc:
        store.close()
        raise StoreProblem(f"store {masked} unavailable: {_first_line(exc)}") from None
    return store
