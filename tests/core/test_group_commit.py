"""Group commit: whoever leads a group always commits its own record."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from leadrelay.core.store.group_commit import GroupCommitter

WAIT_S = 10.0


class _HoldingBack(threading.Condition):
    """A condition whose waiters named `early-*` stay away, once woken, until `gate` opens.

    It makes the wake-up order deterministic: when the running commit ends, the thread
    queued last is the one that takes the lead.
    """

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        woken = super().wait(timeout)
        if threading.current_thread().name.startswith("early") and not self.gate.is_set():
            self.release()
            try:
                self.gate.wait(WAIT_S)
            finally:
                self.acquire()
        return woken


def _wait_until(condition: Any) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_a_leader_queued_past_max_group_commits_its_own_record() -> None:
    committed: list[list[int]] = []
    first_commit_running = threading.Event()
    finish_first_commit = threading.Event()

    def commit(records: Sequence[int]) -> list[int]:
        committed.append(list(records))
        if records == [0]:
            first_commit_running.set()
            assert finish_first_commit.wait(WAIT_S)
        return [r * 10 for r in records]

    committer: GroupCommitter[int, int] = GroupCommitter(commit, max_group=2)
    cond = _HoldingBack()
    committer._cond = cond
    answers: dict[int, int | BaseException] = {}

    def submit(value: int) -> None:
        try:
            answers[value] = committer.submit(value)
        except BaseException as exc:  # an assertion inside submit counts as an answer
            answers[value] = exc

    def start(name: str, value: int) -> threading.Thread:
        thread = threading.Thread(target=submit, args=(value,), name=name)
        thread.start()
        return thread

    leader = start("leader", 0)
    assert first_commit_running.wait(WAIT_S)
    early = [start("early-1", 1)]
    _wait_until(lambda: len(committer._queue) == 1)
    early.append(start("early-2", 2))
    _wait_until(lambda: len(committer._queue) == 2)
    # Third in the queue, past max_group: it leads the next group.
    late = start("late", 3)
    _wait_until(lambda: len(committer._queue) == 3)
    finish_first_commit.set()
    late.join(WAIT_S)
    cond.gate.set()
    for thread in (leader, *early):
        thread.join(WAIT_S)

    assert answers == {0: 0, 1: 10, 2: 20, 3: 30}
    # The late leader took the records queued before its own, its own included.
    assert committed == [[0], [1, 2, 3]]
