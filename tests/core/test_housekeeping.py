"""Housekeeping and wake-ups: the purge runs once an hour across processes, and the
store wakes its subscribers when deliveries are committed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import pytest

from leadrelay.core.app.housekeeping import PURGE_EVERY, Housekeeping
from leadrelay.core.store.store import Store, utcnow
from tests.conftest import gitleads_body, make_config, migrated_store, request_record

WAIT_S = 20.0


@pytest.fixture
def stores(store_url: str) -> Iterator[tuple[Store, Store]]:
    """Two stores on one database, as two processes have."""
    first = migrated_store(store_url)
    second = Store(store_url)
    yield first, second
    second.close()
    first.close()


def test_the_purge_runs_once_per_period_across_processes(
    store_url: str, stores: tuple[Store, Store]
) -> None:
    config = make_config(store_url, retention="1d")
    first, second = stores
    # No deliveries: a pending one would keep its event whatever its age.
    record = replace(request_record(config, "gitleads", gitleads_body(1)), connectors=())
    first.submit_many([record])
    now = utcnow() + timedelta(days=2)

    def housekeeping(store: Store, at: timedelta) -> Housekeeping:
        return Housekeeping(config, store, clock=lambda: now + at)

    ran = housekeeping(first, timedelta()).run_once()
    assert ran is not None
    assert ran["events"] == 1
    # The other process, within the period: already done.
    assert housekeeping(second, PURGE_EVERY - timedelta(seconds=1)).run_once() is None
    assert housekeeping(first, PURGE_EVERY / 2).run_once() is None
    # A period later, whichever process asks first purges.
    assert housekeeping(second, PURGE_EVERY).run_once() is not None
    assert housekeeping(first, PURGE_EVERY + timedelta(seconds=1)).run_once() is None


def test_concurrent_checks_purge_once(store_url: str, stores: tuple[Store, Store]) -> None:
    config = make_config(store_url)
    now = utcnow()
    barrier = threading.Barrier(2, timeout=WAIT_S)
    results: list[object] = []

    def check(store: Store) -> None:
        barrier.wait()
        results.append(Housekeeping(config, store, clock=lambda: now).run_once())

    threads = [threading.Thread(target=check, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S)

    assert len(results) == 2
    assert sum(r is not None for r in results) == 1


def test_unsubscribed_callbacks_are_not_woken(sqlite_url: str) -> None:
    config = make_config(sqlite_url)
    store = migrated_store(sqlite_url)
    wakes: list[str] = []
    stay = store.subscribe(lambda: wakes.append("stays"))
    leave = store.subscribe(lambda: wakes.append("leaves"))
    leave()

    store.submit(request_record(config, "gitleads", gitleads_body(1)))

    assert wakes == ["stays"]
    stay()
    store.close()
