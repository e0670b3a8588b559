"""One writer at a time on a SQLite file, handed from writer to writer without naps.

SQLite lets one writer in at a time and makes the others wait in its busy handler, which
sleeps between retries (up to 100 ms a nap). With two gunicorn processes and the
delivery worker writing to one file, most of a request's time would go to those naps
while the CPU idles (benchmarks/README.md has the numbers). Taking this lock
around every write transaction queues the writers instead: threads of one process on a
`threading.Lock`, processes on an `flock` of a lock file beside the database. The next
writer starts as soon as the last one commits, and SQLite's busy timeout is left for
writers from outside leadrelay (a `sqlite3` shell, a backup).
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from leadrelay.core.filelock import flock_until

log = logging.getLogger("leadrelay.store")

# A waiting process polls the lock file: the gaps stay far below a commit's length.
_FIRST_POLL_S = 0.0002
_MAX_POLL_S = 0.002


class WriteLockTimeout(Exception):
    """Another writer held the lock for longer than the wait allowed."""


class WriteLock:
    def __init__(self, database_path: str | None, timeout_s: float) -> None:
        self._lock_path = f"{database_path}-writer.lock" if database_path else None
        self._timeout_s = timeout_s
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        self._opened = False
        # An flock belongs to an open file, which a fork shares: a child must open its own
        # (and needs a fresh thread lock, in case a thread held this one at the fork).
        # Reset in the child before any of its threads exist, so no two can race on it.
        me = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _reset_in_child(me))

    @contextmanager
    def held(self) -> Iterator[None]:
        deadline = time.monotonic() + self._timeout_s
        if not self._thread_lock.acquire(timeout=self._timeout_s):
            raise WriteLockTimeout("another writer in this process held the database")
        try:
            if not self._opened:
                self._open()
            fd = self._fd
            if fd is not None and not flock_until(
                fd, deadline, first_pause=_FIRST_POLL_S, max_pause=_MAX_POLL_S
            ):
                raise WriteLockTimeout("another process held the database")
            try:
                yield
            finally:
                if fd is not None:
                    fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    def close(self) -> None:
        with self._thread_lock:
            if self._fd is not None:
                os.close(self._fd)
            self._fd = None
            self._opened = False

    def _open(self) -> None:
        # Called holding the thread lock: one thread opens, the others find it open.
        self._opened = True
        if self._lock_path is None:
            return
        try:
            self._fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            # Without the file, writers from several processes still exclude each other
            # through SQLite itself, only with its slower busy-wait.
            log.warning("cannot open the write lock file: %s", exc.strerror)


def _reset_in_child(ref: weakref.ref[WriteLock]) -> None:
    lock = ref()
    if lock is None:
        return
    if lock._fd is not None:
        # Closing the child's copy leaves the parent's lock, if held, with the parent.
        os.close(lock._fd)
    lock._thread_lock = threading.Lock()
    lock._fd = None
    lock._opened = False
