"""Group commit: one transaction (and one fsync) for every request waiting at that moment.

Each request thread hands its record to `submit` and blocks. Whoever finds no commit
in progress becomes the leader: it takes everything queued so far, including records
that arrived while the previous commit ran, commits them together and wakes the rest.
Every caller still gets its answer only after its own record has committed, so the
"2xx only after commit" rule holds while the fsync cost is shared.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

RecordT = TypeVar("RecordT")
ResultT = TypeVar("ResultT")

# A waiting follower re-checks at this interval; it only matters if a leader died
# without notifying, which the `finally` below prevents.
_WAIT_SLICE_S = 1.0


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
    ) -> None:
        self._commit = commit
        self._shared_failure = shared_failure
        self._max_group = max_group
        self._cond = threading.Condition()
        self._queue: list[_Slot[RecordT, ResultT]] = []
        self._committing = False

    def submit(self, record: RecordT) -> ResultT:
        slot: _Slot[RecordT, ResultT] = _Slot(record)
        with self._cond:
            self._queue.append(slot)
            while not slot.done and self._committing:
                self._cond.wait(_WAIT_SLICE_S)
            if slot.done:
                return self._outcome(slot)
            self._committing = True
            # Take this slot and the ones queued before it (bounded, so one group's
            # statement stays a sane size; the rest lead the next group).
            mine = self._queue.index(slot) + 1
            take = max(mine, min(len(self._queue), self._max_group))
            group, self._queue = self._queue[:take], self._queue[take:]
        try:
            self._run(group)
        finally:
            with self._cond:
                self._committing = False
                self._cond.notify_all()
        return self._outcome(slot)

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
