"""Retention purge: one loop per process, one purge per hour across all of them.

Every process that delivers (`connectors serve`, each gunicorn worker process started
with the delivery worker, `connectors worker`) runs this loop, so the purge goes on
whichever of them stays up. The loop only asks the store every `CHECK_EVERY`; the store
purges when the last purge recorded in the database (by any process) is older than
`PURGE_EVERY`, and records the new one in the same transaction. However many processes
share the database, it is purged about once an hour, not once per process.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

from leadrelay.core.logs import fields
from leadrelay.core.store.store import Store, StoreUnavailable, utcnow

log = logging.getLogger("leadrelay.housekeeping")

PURGE_EVERY = timedelta(hours=1)
CHECK_EVERY = timedelta(minutes=5)


class RetentionConfig(Protocol):
    @property
    def retention(self) -> timedelta: ...

    @property
    def dedup_retention(self) -> timedelta: ...


class Housekeeping:
    def __init__(
        self, config: RetentionConfig, store: Store, *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> dict[str, int] | None:
        """Purge if no process did in the last `PURGE_EVERY`; the counts, or None."""
        counts = self.store.purge_if_due(
            self.clock(), self.config.retention, self.config.dedup_retention, PURGE_EVERY
        )
        if counts is not None:
            log.info("purged old data", extra=fields(**counts))
        return counts

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="housekeeping", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.run_once()
            except StoreUnavailable as exc:
                log.warning("purge skipped: store unavailable", extra=fields(error=str(exc)))
            except Exception:
                log.exception("purge failed")
            self._stopping.wait(CHECK_EVERY.total_seconds())
