"""Leases against real time and real processes: a slow destination is not sent twice, and
a SIGKILLed worker's deliveries go out as soon as a worker starts again on its host."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from flask import Response

from leadrelay.core.app.config import load_config
from leadrelay.core.delivery.worker import Worker
from leadrelay.core.store.store import Store
from tests.ops.helpers import (
    SECRET,
    RecordingDestination,
    delivery_statuses,
    venv_bin,
    wait_until,
)
from tests.ops.test_faults import ingest
from tests.process import write_config

EVENTS = 5
RESTART_DEADLINE_S = 30.0
DELIVERED_AFTER_START_S = 5.0


def test_a_sigkilled_workers_deliveries_go_out_within_seconds_of_a_restart(
    tmp_path: Path,
) -> None:
    """The lease is ten minutes: only the restarted worker freeing the dead one's leases
    at start can deliver within seconds."""
    release = threading.Event()
    first_request = threading.Event()

    def hold_the_first(_headers: dict[str, str], _body: bytes) -> Response:
        if not first_request.is_set():
            first_request.set()
            release.wait(RESTART_DEADLINE_S)
        return Response("ok", status=200)

    destination = RecordingDestination(hold_the_first)
    db_path = tmp_path / "leadrelay.db"
    with destination.running() as hook:
        config_path = write_config(
            tmp_path / "connectors.yaml",
            {
                "store": f"sqlite:///{db_path}",
                "sources": {"gitleads": {"provider": "gitleads", "secrets": [SECRET]}},
                "connectors": {
                    "hook": {"type": "webhook", "url": f"{hook.base_url}/in", "timeout": 5}
                },
                "delivery": {"lease": "10m", "poll_interval": "200ms"},
            },
        )
        store = Store(f"sqlite:///{db_path}")
        store.migrate()
        try:
            event_ids = ingest(store, load_config(config_path, env={}), EVENTS)
        finally:
            store.close()
        command = [venv_bin("connectors"), "worker", "--config", str(config_path)]
        logs = [tmp_path / "first.log", tmp_path / "second.log"]
        with logs[0].open("ab") as log:
            first = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
        second: subprocess.Popen[bytes] | None = None
        try:
            assert first_request.wait(RESTART_DEADLINE_S), "the first worker never sent"
            first.send_signal(signal.SIGKILL)
            assert first.wait(10) == -signal.SIGKILL
            release.set()
            assert delivery_statuses(db_path) == Counter({"pending": EVENTS})
            with logs[1].open("ab") as log:
                second = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
            wait_until(
                lambda: "worker started" in logs[1].read_text(),
                timeout=RESTART_DEADLINE_S,
                message=lambda: f"the second worker did not start: {logs[1].read_text()}",
            )
            wait_until(
                lambda: delivery_statuses(db_path) == Counter({"delivered": EVENTS}),
                timeout=DELIVERED_AFTER_START_S,
                message=lambda: f"deliveries: {delivery_statuses(db_path)}",
            )
            assert "reclaimed leases of dead workers on this host" in logs[1].read_text()
            second.send_signal(signal.SIGTERM)
            assert second.wait(20) == 0
        finally:
            release.set()
            for process in (first, second):
                if process is not None and process.poll() is None:
                    process.kill()
                    process.wait(10)
    seen = destination.webhook_ids()
    assert set(seen) == set(event_ids)
    # At-least-once: the request in flight at the kill is sent again.
    assert sorted(seen.values()) == [1] * (EVENTS - 1) + [2]


@pytest.mark.slow
def test_a_slow_destination_with_a_short_lease_is_sent_each_event_once(tmp_path: Path) -> None:
    """2 s per call, `lease: 5s`, two workers, ten events: each sent once, all recorded."""

    def two_seconds(_headers: dict[str, str], _body: bytes) -> Response:
        time.sleep(2)  # the destination's own slowness, the point of this test
        return Response("ok", status=200)

    destination = RecordingDestination(two_seconds)
    db_path = tmp_path / "leadrelay.db"
    with destination.running() as hook:
        config = load_config(
            write_config(
                tmp_path / "connectors.yaml",
                {
                    "store": f"sqlite:///{db_path}",
                    "sources": {"gitleads": {"provider": "gitleads", "secrets": [SECRET]}},
                    "connectors": {
                        "hook": {"type": "webhook", "url": f"{hook.base_url}/in", "timeout": 3}
                    },
                    "delivery": {"lease": "5s", "poll_interval": "200ms", "backoff": ["1s"]},
                },
            ),
            env={},
        )
        stores = [Store(config.store) for _ in range(2)]
        stores[0].migrate()
        event_ids = ingest(stores[0], config, 10)
        workers = [Worker(config, store) for store in stores]
        for worker in workers:
            worker.start()
        try:
            wait_until(
                lambda: delivery_statuses(db_path) == Counter({"delivered": 10}),
                timeout=60,
                message=lambda: f"deliveries: {delivery_statuses(db_path)}",
            )
        finally:
            for worker, store in zip(workers, stores, strict=True):
                worker.stop()
                store.close()
    assert destination.webhook_ids() == Counter(dict.fromkeys(event_ids, 1))
