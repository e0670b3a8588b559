"""Group commit: whoever leads a group always commits its own record; under load a new
leader gathers the records on their way."""

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

    def __init__(self, lock: threading.Lock) -> None:
        super().__init__(lock)
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


class _HeldFirstCommit:
    """A commit function that records each group and holds the group [0] until released."""

    def __init__(self) -> None:
        self.committed: list[list[int]] = []
        self.first_running = threading.Event()
        self.finish_first = threading.Event()

    def __call__(self, records: Sequence[int]) -> list[int]:
        self.committed.append(list(records))
        if records == [0]:
            self.first_running.set()
            assert self.finish_first.wait(WAIT_S)
        return [r * 10 for r in records]


def test_a_leader_queued_past_max_group_commits_its_own_record() -> None:
    commits = _HeldFirstCommit()
    committer: GroupCommitter[int, int] = GroupCommitter(commits, max_group=2)
    cond = _HoldingBack(committer._lock)
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
    assert commits.first_running.wait(WAIT_S)
    early = [start("early-1", 1)]
    _wait_until(lambda: len(committer._queue) == 1)
    early.append(start("early-2", 2))
    _wait_until(lambda: len(committer._queue) == 2)
    # Third in the queue, past max_group: it leads the next group.
    late = start("late", 3)
    _wait_until(lambda: len(committer._queue) == 3)
    commits.finish_first.set()
    late.join(WAIT_S)
    cond.gate.set()
    for thread in (leader, *early):
        thread.join(WAIT_S)

    assert answers == {0: 0, 1: 10, 2: 20, 3: 30}
    # The late leader took the records queued before its own, its own included.
    assert commits.committed == [[0], [1, 2, 3]]


def _a_group_of_two_then_a_lone_leader_and_a_late_record(
    commits: _HeldFirstCommit, committer: GroupCommitter[int, int]
) -> dict[int, int]:
    """[0] commits alone while [1] and [2] queue (a group of two: load); then [3] leads
    alone and [4] arrives while it gathers. Returns the answers once every thread ended."""
    answers: dict[int, int] = {}

    def start(value: int) -> threading.Thread:
        thread = threading.Thread(target=lambda: answers.update({value: committer.submit(value)}))
        thread.start()
        return thread

    threads = [start(0)]
    assert commits.first_running.wait(WAIT_S)
    threads += [start(1), start(2)]
    _wait_until(lambda: len(committer._queue) == 2)
    commits.finish_first.set()
    _wait_until(lambda: commits.committed[-1:] == [[1, 2]] and not committer._committing)
    threads.append(start(3))
    _wait_until(lambda: committer._committing)
    threads.append(start(4))
    for thread in threads:
        thread.join(WAIT_S)
    assert not any(thread.is_alive() for thread in threads)
    return answers


def test_under_load_a_new_leader_waits_for_the_records_on_their_way() -> None:
    commits = _HeldFirstCommit()
    # Gathering ends at max_group here, so the test never waits out the quiet time.
    committer: GroupCommitter[int, int] = GroupCommitter(
        commits, max_group=2, gather_quiet_s=WAIT_S, gather_max_s=WAIT_S
    )

    answers = _a_group_of_two_then_a_lone_leader_and_a_late_record(commits, committer)

    # [4] joined [3]'s group, where without gathering [3] would have committed alone.
    assert answers == {0: 0, 1: 10, 2: 20, 3: 30, 4: 40}
    assert commits.committed == [[0], [1, 2], [3, 4]]


def test_a_gather_ends_once_as_many_records_are_queued_as_recent_groups_held() -> None:
    commits = _HeldFirstCommit()
    # Quiet and maximum far beyond the join timeout, and no max_group: only the rule
    # "as large as the recent groups" (two, here) can end the gather in time.
    committer: GroupCommitter[int, int] = GroupCommitter(
        commits, gather_quiet_s=60.0, gather_max_s=60.0
    )

    answers = _a_group_of_two_then_a_lone_leader_and_a_late_record(commits, committer)

    assert answers == {0: 0, 1: 10, 2: 20, 3: 30, 4: 40}
    assert commits.committed == [[0], [1, 2], [3, 4]]
