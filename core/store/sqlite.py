"""SQLite: one writer at a time, WAL with `synchronous=FULL`, no cross-process wake-up.

Writers start with `BEGIN IMMEDIATE` and queue on `WriteLock` (threads and processes),
so they wait their turn instead of failing half-way when another writer holds the file.
Other processes' new deliveries are found by the workers' polling.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, make_url

from leadrelay.core.store.backend import Backend
from leadrelay.core.store.bulk_insert import BulkInsert, existing_keys
from leadrelay.core.store.write_lock import WriteLock

BUSY_TIMEOUT_S = 5.0


def _create_private(path: str | None) -> None:
    """Create the SQLite file owner-only (0600) before SQLite creates it with the umask's
    mode: it holds lead data. SQLite gives its -wal and -shm files the same mode."""
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    with contextlib.suppress(FileExistsError, FileNotFoundError, PermissionError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))


class SqliteBackend(Backend):
    def __init__(self, url: str, engine: Engine | None = None) -> None:
        super().__init__(url, engine)
        self._write_lock = WriteLock(self.engine.url.database, BUSY_TIMEOUT_S)

    @staticmethod
    def create_engine(url: str) -> Engine:
        _create_private(make_url(url).database)
        engine = create_engine(
            url,
            connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False},
            pool_size=16,
            max_overflow=16,
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Let us issue BEGIN ourselves (pysqlite's implicit BEGIN is deferred).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Connection) -> None:
            readonly = connection.get_execution_options().get("readonly", False)
            connection.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

        return engine

    def write_lock(self) -> AbstractContextManager[None]:
        return self._write_lock.held()

    def claim_keys(
        self,
        conn: Connection,
        keys: Sequence[tuple[str, str]],
        key_rows: Sequence[tuple[Any, ...]],
        insert: BulkInsert,
    ) -> list[int]:
        # This transaction holds the database's only write lock, so a key absent now
        # stays absent until the commit. The lookup returns only the duplicates (usually
        # none: one step), where RETURNING would step once per new row.
        existing = existing_keys(conn, insert.table, keys)
        fresh = [n for n, key in enumerate(keys) if key not in existing]
        if fresh:
            insert.execute(conn, [key_rows[n] for n in fresh])
        return fresh

    def notify(self, conn: Connection) -> None:
        # No channel between processes: their workers find new deliveries by polling.
        pass

    def lock_for_migration(self, conn: Connection) -> None:
        # `BEGIN IMMEDIATE` already makes the migrating transactions take turns.
        pass

    def lock_for_claim(self, conn: Connection, connector: str) -> None:
        # Every write transaction already holds the database's only write lock.
        pass

    def close(self) -> None:
        super().close()
        self._write_lock.close()
