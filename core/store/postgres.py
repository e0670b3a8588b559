"""PostgreSQL: concurrent writers, dedup by the primary key, LISTEN/NOTIFY wake-ups."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, make_url, text

from leadrelay.core.logs import fields
from leadrelay.core.store.backend import Backend, Listener
from leadrelay.core.store.bulk_insert import BulkInsert

log = logging.getLogger("leadrelay.store")

NOTIFY_CHANNEL = "leadrelay_deliveries"
# Any constant shared by every leadrelay process: the key of the migration lock.
_MIGRATION_LOCK_KEY = 74201
# The first half of each connector's claim lock (the second is the schema's and the
# connector's names hashed: stores in other schemas of one database take their own turns).
_CLAIM_LOCK_SPACE = 74202
# The first half of the journal's move lock (the second is the schema's name hashed, so
# stores in other schemas of one database do not wait on each other).
_INBOX_LOCK_SPACE = 74203
_RECONNECT_PAUSE_S = 2.0


class PostgresBackend(Backend):
    # Other transactions may insert the same keys concurrently: the primary key decides,
    # and RETURNING names the rows this transaction won.
    dedup_insert_suffix = "ON CONFLICT DO NOTHING RETURNING source, idempotency_key"

    @staticmethod
    def create_engine(url: str) -> Engine:
        return create_engine(
            url,
            pool_pre_ping=True,
            pool_size=10,
            max_overflow=20,
            connect_args={"connect_timeout": 3},
        )

    def claim_keys(
        self,
        conn: Connection,
        keys: Sequence[tuple[str, str]],
        key_rows: Sequence[tuple[Any, ...]],
        insert: BulkInsert,
    ) -> list[int]:
        won = {tuple(row) for row in insert.execute(conn, key_rows)}
        return [n for n, key in enumerate(keys) if key in won]

    def notify(self, conn: Connection) -> None:
        # Delivered by PostgreSQL at commit, and only if the transaction commits.
        conn.execute(text("SELECT pg_notify(:channel, '')"), {"channel": NOTIFY_CHANNEL})

    def listen(self, wake: Callable[[], None]) -> Listener:
        return _NotifyListener(self.url, wake)

    def lock_for_migration(self, conn: Connection) -> None:
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})

    def lock_for_inbox(self, conn: Connection, *, wait: bool) -> bool:
        args = {"space": _INBOX_LOCK_SPACE}
        if wait:
            conn.execute(
                text("SELECT pg_advisory_xact_lock(:space, hashtext(current_schema()))"), args
            )
            return True
        return bool(
            conn.execute(
                text("SELECT pg_try_advisory_xact_lock(:space, hashtext(current_schema()))"), args
            ).scalar()
        )

    def lock_for_claim(self, conn: Connection, connector: str) -> None:
        # SKIP LOCKED alone keeps two claims off one row, not off one lead: two claims
        # running at once could each lease a different delivery of the same lead (one
        # whose ingest committed after a later id's). Claims are a few milliseconds; taking
        # turns per connector costs little and makes the lease check exact.
        conn.execute(
            text(
                "SELECT pg_advisory_xact_lock("
                ":space, hashtext(current_schema() || '/' || :connector))"
            ),
            {"space": _CLAIM_LOCK_SPACE, "connector": connector},
        )


class _NotifyListener(Listener):
    """A thread holding one LISTEN connection, reconnecting while the database is away."""

    def __init__(self, url: str, wake: Callable[[], None]) -> None:
        self._dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._wake = wake
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="store-listen", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        # The loop checks the flag at least every second (the notifies timeout).
        self._thread.join(timeout=5.0)

    def _run(self) -> None:
        import psycopg

        while not self._stopping.is_set():
            try:
                with psycopg.connect(self._dsn, autocommit=True, connect_timeout=3) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    while not self._stopping.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self._wake()
            except psycopg.Error as exc:
                first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
                log.warning(
                    "LISTEN connection lost; polling meanwhile", extra=fields(error=first_line)
                )
                self._stopping.wait(_RECONNECT_PAUSE_S)
