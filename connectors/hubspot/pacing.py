"""Client-side pacing for APIs that report their remaining request budget on every answer.

Several workers (threads, processes, hosts) can share one API limit and none of them knows
what the others send; the API's own count, reported with each answer, is the one figure
they all see. Once it runs low, each sender leaves the average gap the limit allows
(window / maximum) before its next call, so the senders together slow down before they
are refused instead of after. Refusals still happen when a burst outruns the reserve; the
connector then reports them as rate limited.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# Calls left in the window at which pacing starts, as a share of the maximum: enough to
# cover the calls other workers have in flight while this one reads its answer.
RESERVE_SHARE = 0.05
# A limit of a few calls per long window would mean long pauses: past this, a sender calls
# and lets the API refuse it, and the refusal is rescheduled like any rate limit.
MAX_GAP_S = 1.0


class Pacer:
    def __init__(self, sleep: Callable[[float], None] = time.sleep) -> None:
        self.sleep = sleep
        self._lock = threading.Lock()
        self._gap_s = 0.0

    def note(self, remaining: int, maximum: int, window_s: float) -> None:
        """Record what the API said about its budget in its last answer."""
        if maximum <= 0 or window_s <= 0:
            return
        low = remaining <= max(1, int(maximum * RESERVE_SHARE))
        with self._lock:
            self._gap_s = min(window_s / maximum, MAX_GAP_S) if low else 0.0

    def wait(self) -> None:
        """Before a call: leave the gap the limit allows while the budget is low."""
        with self._lock:
            gap = self._gap_s
        if gap:
            self.sleep(gap)
