"""The SQLite write lock: threads and processes take turns; a held lock times out as 503."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from leadrelay.core.store import sqlite as sqlite_backend
from leadrelay.core.store.store import StoreUnavailable
from leadrelay.core.store.write_lock import WriteLock, WriteLockTimeout
from tests.conftest import migrated_store
from tests.core.test_store import record

# fork: the child must inherit the parent's lock object, as gunicorn's workers do.
FORK = multiprocessing.get_context("fork")
SHORT_S = 0.3
WAIT_S = 10.0


def hold_in_child(lock: WriteLock, holding: object, release: object) -> None:
    with lock.held():
        holding.set()  # type: ignore[attr-defined]
        release.wait(WAIT_S)  # type: ignore[attr-defined]


@pytest.fixture
def held_by_other_process(tmp_path: Path) -> Iterator[WriteLock]:
    """A lock on tmp_path/db whose file lock a child process holds until the test ends."""
    lock = WriteLock(str(tmp_path / "db"), SHORT_S)
    holding, release = FORK.Event(), FORK.Event()
    child = FORK.Process(target=hold_in_child, args=(lock, holding, release))
    child.start()
    try:
        assert holding.wait(WAIT_S), "the child never took the lock"
        yield lock
    finally:
        release.set()
        child.join(WAIT_S)


def test_another_process_holding_the_lock_makes_a_writer_time_out(
    held_by_other_process: WriteLock,
) -> None:
    with pytest.raises(WriteLockTimeout), held_by_other_process.held():
        pass


def test_the_lock_is_free_again_once_the_other_process_lets_go(tmp_path: Path) -> None:
    lock = WriteLock(str(tmp_path / "db"), WAIT_S)
    holding, release = FORK.Event(), FORK.Event()
    child = FORK.Process(target=hold_in_child, args=(lock, holding, release))
    child.start()
    assert holding.wait(WAIT_S)
    release.set()
    with lock.held():  # waits for the child's release, well inside WAIT_S
        child.join(WAIT_S)
    assert child.exitcode == 0


def test_a_forked_process_does_not_share_its_parents_file_lock(tmp_path: Path) -> None:
    # The parent opened its lock file before the fork (as a gunicorn master would): if the
    # child reused that open file, its flock would count as the parent's and both would
    # write at once.
    lock = WriteLock(str(tmp_path / "db"), SHORT_S)
    with lock.held():
        pass
    outcome = FORK.Queue()
    with lock.held():
        child = FORK.Process(target=try_lock_in_child, args=(lock, outcome))
        child.start()
        child.join(WAIT_S)
    assert outcome.get(timeout=WAIT_S) == "timed out"


def try_lock_in_child(lock: WriteLock, outcome: object) -> None:
    try:
        with lock.held():
            outcome.put("acquired")  # type: ignore[attr-defined]
    except WriteLockTimeout:
        outcome.put("timed out")  # type: ignore[attr-defined]


def test_threads_of_one_process_take_turns(tmp_path: Path) -> None:
    lock = WriteLock(str(tmp_path / "db"), WAIT_S)
    inside = threading.Event()
    release = threading.Event()
    order: list[str] = []

    def first() -> None:
        with lock.held():
            inside.set()
            release.wait(WAIT_S)
            order.append("first out")

    def second() -> None:
        with lock.held():
            order.append("second in")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    threads[0].start()
    assert inside.wait(WAIT_S)
    threads[1].start()
    release.set()
    for thread in threads:
        thread.join(WAIT_S)
    assert order == ["first out", "second in"]


def test_without_a_lock_file_the_threads_still_take_turns(tmp_path: Path) -> None:
    # A directory where the file should be: the open fails, the lock goes on in-process.
    (tmp_path / "db-writer.lock").mkdir()
    lock = WriteLock(str(tmp_path / "db"), SHORT_S)
    with lock.held():
        blocked = threading.Thread(target=expect_timeout, args=(lock,))
        blocked.start()
        blocked.join(WAIT_S)
    with lock.held():
        pass


def expect_timeout(lock: WriteLock) -> None:
    with pytest.raises(WriteLockTimeout), lock.held():
        pass


def test_a_store_whose_writer_lock_is_held_too_long_is_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_backend, "BUSY_TIMEOUT_S", SHORT_S)
    db_path = tmp_path / "leadrelay.db"
    store = migrated_store(f"sqlite:///{db_path}")
    other = WriteLock(str(db_path), WAIT_S)
    holding, release = FORK.Event(), FORK.Event()
    child = FORK.Process(target=hold_in_child, args=(other, holding, release))
    child.start()
    try:
        assert holding.wait(WAIT_S)
        with pytest.raises(StoreUnavailable, match="locked"):
            store.submit_many([record(1)])
        release.set()
        child.join(WAIT_S)
        [stored] = store.submit_many([record(1)])
        assert stored.duplicate is False
    finally:
        release.set()
        store.close()
