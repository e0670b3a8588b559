"""Group commit: one transaction (and one fsync) for every request waiting at that moment.

Each request thread hands its record to `submit` and blocks. Whoever finds no commit
in progress becomes the leader: it takes everything queued so far, including records
that arrived while the previous commit ran, commits them together and wakes the rest.
Every caller still gets its answer only after its own record has committed, so the
"2xx only after commit" rule holds while the fsync cost is shared.

A commit's cost is partly per transaction (BEGIN, COMMIT and its fsync, the pages a group
shares), so a bigger group costs less a record. Under load a new leader therefore gathers
first: while records keep arriving (none for `gather_quiet_s` ends it) and for at most
`gather_max_s`, it waits before taking the queue. It gathers only when the group before
was more than one record and ended under `gather_max_s` ago, so a lone request on an
idle server commits at once. Measured under the ingest benchmark's load (A/B/A/B, the
full schema per request as it was then): groups of 4.0 → 6.6 records, CPU per event
-10%, accepted/s +15 to 25%, p99 lower (benchmarks/README.md).

A gather also ends once the queue is as long as the largest of the last few groups:
under steady load a group is every request thread the server has (all of them end up
waiting here), and once they are all queued nobody else can arrive, so waiting out the
quiet time would only leave the process idle. That took the ingest benchmark from
~1,830 to ~2,140 accepted/s at the same CPU per event (benchmarks/README.md).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

RecordT = TypeVar("RecordT")
ResultT = TypeVar("ResultT")

# A waiting follower re-checks at this interval; it only matters if a leader died
# without notifying, which the `finally` below prevents.
_WAIT_SLICE_S = 1.0
# Groups remembered for the size a gather stops at.
_RECENT_GROUPS = 8


class _Slot(Generic[RecordT, ResultT]):
    __slots__ = ("done", "error", "record", "result")

    def __init__(self, record: RecordT) -> None:
        self.record = record
        self.done = False
        self.result: ResultT | None = None
        self.error: BaseException | None = None


class GroupCommitter(Generic[RecordT, ResultT]):
    def __init__(
        self,
        commit: Callable[[Sequence[RecordT]], list[ResultT]],
        *,
        shared_failure: Callable[[Exception], bool] = lambda _exc: False,
        max_group: int = 500,
        gather_quiet_s: float = 0.003,
        gather_max_s: float = 0.020,
    ) -> None:
        self._commit = commit
        self._shared_failure = shared_failure
        self._max_group = max_group
        self._gather_quiet_s = gather_quiet_s
        self._gather_max_s = gather_max_s
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        # Only a gathering leader waits on this one, so an arrival wakes nobody else.
        self._arrival = threading.Condition(self._lock)
        self._queue: list[_Slot[RecordT, ResultT]] = []
        self._committing = False
        # The sizes of the last groups, newest last, and when the newest ended (monotonic).
        self._recent_sizes: deque[int] = deque(maxlen=_RECENT_GROUPS)
        self._last_ended_at = 0.0

    def submit(self, record: RecordT) -> ResultT:
        slot: _Slot[RecordT, ResultT] = _Slot(record)
        with self._cond:
            self._queue.append(slot)
            self._arrival.notify()
            while not slot.done and self._committing:
                self._cond.wait(_WAIT_SLICE_S)
            if slot.done:
                return self._outcome(slot)
            self._committing = True
            try:
                if self._under_load():
                    self._gather()
            except BaseException:  # interrupted while waiting: its caller gets no answer
                self._queue.remove(slot)
                self._committing = False
                self._cond.notify_all()
                raise
            # Take this slot and the ones queued before it (bounded, so one group's
            # statement stays a sane size; the rest lead the next group).
            mine = self._queue.index(slot) + 1
            take = max(mine, min(len(self._queue), self._max_group))
            group, self._queue = self._queue[:take], self._queue[take:]
        try:
            self._run(group)
        finally:
            with self._cond:
                self._recent_sizes.append(len(group))
                self._last_ended_at = time.monotonic()
                self._committing = False
                self._cond.notify_all()
        return self._outcome(slot)

    def _under_load(self) -> bool:
        # The group before had company and ended moments ago: more records are coming.
        size = self._recent_sizes[-1] if self._recent_sizes else 0
        return size > 1 and time.monotonic() - self._last_ended_at < self._gather_max_s

    def _gather(self) -> None:
        # Holding the lock, as the new leader: let the records on their way join the group,
        # until it is as large as recent groups were (everyone who could come has come).
        deadline = time.monotonic() + self._gather_max_s
        enough = min(self._max_group, max(self._recent_sizes, default=self._max_group))
        while len(self._queue) < enough:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._arrival.wait(min(self._gather_quiet_s, remaining)):
                return

    def _run(self, group: list[_Slot[RecordT, ResultT]]) -> None:
        try:
            results = self._commit([s.record for s in group])
            for s, r in zip(group, results, strict=True):
                s.result, s.done = r, True
        except Exception as exc:
            if len(group) == 1 or self._shared_failure(exc):
                for s in group:
                    s.error, s.done = exc, True
                return
            # One bad record must not fail its neighbours: retry them one by one.
            for s in group:
                try:
                    s.result = self._commit([s.record])[0]
                except Exception as single_exc:
                    s.error = single_exc
                s.done = True

    @staticmethod
    def _outcome(slot: _Slot[RecordT, ResultT]) -> ResultT:
        if slot.error is not None:
            raise slot.error
        assert slot.result is not None
        return slot.result
