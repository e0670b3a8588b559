"""What differs between the databases leadrelay runs on; one subclass per database.

`sqlite.py` and `postgres.py` hold every dialect difference (engine settings, the write
lock, how a group claims its dedup keys, cross-process wake-ups, the migration lock), so
the store itself reads the same on both.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from sqlalchemy import Connection, Engine

from leadrelay.core.store.bulk_insert import BulkInsert


class Listener(ABC):
    """Calls a wake-up function when another process commits new deliveries."""

    @abstractmethod
    def stop(self) -> None: ...


class Backend(ABC):
    # Appended to the dedup keys' multi-row INSERT.
    dedup_insert_suffix = ""

    def __init__(self, url: str, engine: Engine | None = None) -> None:
        self.url = url
        self.engine = engine or self.create_engine(url)

    @staticmethod
    @abstractmethod
    def create_engine(url: str) -> Engine: ...

    def write_lock(self) -> AbstractContextManager[None]:
        """Held around every write transaction."""
        return nullcontext()

    @abstractmethod
    def claim_keys(
        self,
        conn: Connection,
        keys: Sequence[tuple[str, str]],
        key_rows: Sequence[tuple[Any, ...]],
        insert: BulkInsert,
    ) -> list[int]:
        """Insert the dedup keys (source, idempotency key), one row of `key_rows` each;
        returns the positions of the keys that were not stored before."""

    @abstractmethod
    def notify(self, conn: Connection) -> None:
        """Tell other processes, at this transaction's commit, that deliveries are due."""

    def listen(self, wake: Callable[[], None]) -> Listener | None:
        """Start calling `wake` on other processes' `notify`; None where the database
        cannot tell (their deliveries are then found by polling)."""
        return None

    @abstractmethod
    def lock_for_migration(self, conn: Connection) -> None:
        """Make processes starting at once migrate one after the other."""

    @abstractmethod
    def lock_for_claim(self, conn: Connection, connector: str) -> None:
        """Make claims of one connector's deliveries take turns until this transaction ends,
        so each sees the leases the previous one took (one lead, one holder)."""

    def lock_for_inbox(self, conn: Connection, *, wait: bool) -> bool:
        """Make moves out of the journal take turns until this transaction ends, so events
        enter the queue in the order they were journaled. Without `wait`, False when
        another move holds it (that one moves the rows). SQLite's write transactions
        already take turns, so by default the lock is there."""
        return True

    def close(self) -> None:
        self.engine.dispose()
