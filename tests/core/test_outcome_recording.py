"""Recording outcomes rides out a brief store outage; a longer one leaves the lease."""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from leadrelay.connectors.csv_file import CsvConnector
from leadrelay.core.delivery import worker as worker_module
from leadrelay.core.delivery.worker import Worker
from leadrelay.core.store.store import (
    DeliveryFilter,
    DeliveryUpdate,
    Store,
    StoreUnavailable,
    utcnow,
)
from leadrelay.core.store.tables import deliveries
from tests.conftest import (
    accept_gitleads,
    gitleads_body,
    make_config,
    migrated_store,
    request_record,
)
from tests.recording import RecordingConnector


class FailingComplete:
    """`Store.complete` that fails `failures` times (an outage), then records as usual."""

    def __init__(self, store: Store, failures: int) -> None:
        self.store = store
        self.record = store.complete
        self.failures = failures
        self.calls = 0

    def __call__(self, worker: str, updates: Sequence[DeliveryUpdate], now: datetime) -> int:
        self.calls += 1
        if self.calls <= self.failures:
            raise StoreUnavailable("connection refused")
        return self.record(worker, updates, now)


@pytest.fixture
def store(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    # The pauses between tries are the loop's business, not this test's wall clock.
    monkeypatch.setattr(worker_module, "COMPLETE_RETRY_PAUSES_S", (0.0,) * 5)
    store = migrated_store(sqlite_url)
    yield store
    store.close()


def run_one_batch(sqlite_url: str, store: Store, outage: FailingComplete) -> tuple[Worker, str]:
    config = make_config(sqlite_url)
    [stored] = store.submit_many([request_record(config, "gitleads", gitleads_body(1))])
    worker = Worker(config, store, worker_id="w1", clock=lambda: utcnow() + timedelta(seconds=1))
    store.complete = outage  # type: ignore[method-assign]
    assert worker.run_once("rec") == 1
    assert [e.event_id for e in RecordingConnector.sent["rec"]] == [stored.event_id]
    return worker, stored.event_id


def test_an_outage_of_two_failures_then_success_records_the_outcome(
    sqlite_url: str, store: Store
) -> None:
    outage = FailingComplete(store, failures=2)
    _worker, event_id = run_one_batch(sqlite_url, store, outage)

    assert outage.calls == 3
    [row] = store.list_deliveries(DeliveryFilter(event_id=event_id))
    assert (row["status"], row["attempts"]) == ("delivered", 1)
    [attempt] = store.attempts_of(row["id"])
    assert (attempt["worker"], attempt["outcome"]) == ("w1", "delivered")


def test_an_outage_longer_than_the_retries_is_logged_and_leaves_the_lease(
    sqlite_url: str, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    outage = FailingComplete(store, failures=1_000)
    with caplog.at_level(logging.ERROR, logger="leadrelay.worker"):
        _worker, event_id = run_one_batch(sqlite_url, store, outage)

    # Bounded: it gives up after the configured pauses rather than holding the thread.
    assert outage.calls == len(worker_module.COMPLETE_RETRY_PAUSES_S) + 1
    assert "could not record delivery outcomes" in caplog.text
    with store.engine.connect() as conn:
        row = conn.execute(
            select(deliveries.c.status, deliveries.c.attempts, deliveries.c.lease_owner).where(
                deliveries.c.event_id == event_id
            )
        ).one()
    # Nothing recorded: the lease runs out and another worker sends it again.
    assert (row.status, row.attempts, row.lease_owner) == ("pending", 0, "w1")
    [listed] = store.list_deliveries(DeliveryFilter(event_id=event_id))
    assert store.attempts_of(listed["id"]) == []


def test_the_request_send_hands_back_is_kept_without_building_the_preview_again(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config(
        sqlite_url, connectors={"archive": {"type": "csv", "path": str(tmp_path / "leads.csv")}}
    )
    store = migrated_store(sqlite_url)
    event_id = accept_gitleads(config, store, 1)

    def no_second_preview(*_args: object) -> None:
        raise AssertionError("the worker built the preview again")

    monkeypatch.setattr(CsvConnector, "preview", no_second_preview)
    assert Worker(config, store).run_once("archive") == 1

    [delivery] = store.list_deliveries(DeliveryFilter(event_id=event_id))
    [attempt] = store.attempts_of(delivery["id"])
    [row] = csv.DictReader((tmp_path / "leads.csv").open(encoding="utf-8"))
    assert json.loads(attempt["request"]) == row
    store.close()
