"""An exclusive `flock` with a deadline, shared by the SQLite write lock and the CSV sink.

Imports nothing of ours: the store and the connectors both use it without knowing of
each other.
"""

from __future__ import annotations

import fcntl
import time


def flock_until(fd: int, deadline: float, *, first_pause: float, max_pause: float) -> bool:
    """Take an exclusive flock on `fd`, polling with doubling pauses; False at `deadline`.

    Polled rather than blocking, because a blocked flock cannot be given a timeout.
    """
    pause = first_pause
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(pause)
            pause = min(pause * 2, max_pause)
