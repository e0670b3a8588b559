"""`connectors worker` as real processes: four at once on PostgreSQL, and SIGTERM.

The destination is the `webhook` connector pointed at a recording HTTP server in the test,
so duplicates are seen whichever process sent them: every request carries the event id
in its `webhook-id` header.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, Any

import pytest
from flask import Flask, Response, request
from sqlalchemy import select

from leadrelay.core.app.config import Config, load_config
from leadrelay.core.delivery.contract import Delivered
from leadrelay.core.delivery.worker import Worker
from leadrelay.core.schema import LeadEvent
from leadrelay.core.store.store import DeliveryFilter, IncomingEvent, Store
from leadrelay.core.store.tables import deliveries
from tests.conftest import config_dict, gitleads_body, make_config, migrated_store, request_record
from tests.fakes.server import serve
from tests.process import connectors_command, write_config
from tests.recording import RecordingConnector

EVENTS = 2_000
WORKERS = 4
STALL_TIMEOUT_S = 30.0
DEADLINE_S = 240.0
EXIT_TIMEOUT_S = 30.0
WAIT_S = 20.0


class Tally:
    """Deliveries counted by event id, safe across threads, with a way to wait for them."""

    def __init__(self) -> None:
        self.received: Counter[str] = Counter()
        self.changed = threading.Condition()

    def add(self, event_id: str) -> None:
        with self.changed:
            self.received[event_id] += 1
            self.changed.notify_all()

    def wait_for(self, count: int, stall_timeout: float, overall_timeout: float) -> int:
        """Distinct event ids seen, once `count` arrived or when progress stalls.

        Bounded by a stall timeout rather than only by a total one, so a loaded machine
        that is slow but progressing does not fail the test, and a stuck one fails fast.
        """
        overall_deadline = time.monotonic() + overall_timeout
        with self.changed:
            seen = len(self.received)
            stall_deadline = time.monotonic() + stall_timeout
            while len(self.received) < count:
                now = time.monotonic()
                if len(self.received) > seen:
                    seen, stall_deadline = len(self.received), now + stall_timeout
                remaining = min(stall_deadline, overall_deadline) - now
                if remaining <= 0:
                    break
                self.changed.wait(remaining)
            return len(self.received)


class Destination(Tally):
    """A webhook receiver that counts deliveries by `webhook-id`.

    With `hold_first`, the first request waits for `release`: an in-flight delivery.
    """

    def __init__(self, *, hold_first: bool = False) -> None:
        super().__init__()
        self.hold_first = hold_first
        self.in_flight = threading.Event()
        self.release = threading.Event()

    def app(self) -> Flask:
        app = Flask(__name__)

        @app.post("/hook")
        def hook() -> Response:
            webhook_id = request.headers["webhook-id"]
            assert json.loads(request.get_data())["event_id"] == webhook_id
            if self.hold_first and not self.in_flight.is_set():
                self.in_flight.set()
                self.release.wait(WAIT_S)
            self.add(webhook_id)
            return Response("{}", status=200, mimetype="application/json")

        return app


def webhook_config(path: Path, store_url: str, url: str, **delivery: Any) -> Config:
    data = config_dict(
        store_url,
        connectors={"hook": {"type": "webhook", "url": url, "timeout": 10}},
        delivery={"max_attempts": 8, "backoff": ["1s"], **delivery},
    )
    return load_config(write_config(path, data))


def gitleads_records(config: Config, numbers: range) -> list[IncomingEvent]:
    return [request_record(config, "gitleads", gitleads_body(n)) for n in numbers]


class WorkerProcess:
    """`connectors worker --config <path>`, its log lines read as they come."""

    def __init__(self, config_path: Path) -> None:
        self.lines: list[str] = []
        self._seen = threading.Condition()
        self._closed = False
        self.process = subprocess.Popen(
            [*connectors_command(), "worker", "--config", str(config_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=config_path.parent,
            start_new_session=True,
        )
        assert self.process.stderr is not None
        self._reader = threading.Thread(target=self._read, args=(self.process.stderr,))
        self._reader.start()

    def _read(self, stream: IO[bytes]) -> None:
        for raw in stream:
            with self._seen:
                self.lines.append(raw.decode("utf-8", "replace").rstrip())
                self._seen.notify_all()
        with self._seen:
            self._closed = True
            self._seen.notify_all()

    def wait_for_log(self, message: str, timeout: float) -> bool:
        """True once a JSON log line with `msg` == message has been written."""
        deadline = time.monotonic() + timeout
        with self._seen:
            while not any(_log_message(line) == message for line in self.lines):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    return False
                self._seen.wait(remaining)
            return True

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=EXIT_TIMEOUT_S)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=EXIT_TIMEOUT_S)
        self._reader.join(timeout=EXIT_TIMEOUT_S)

    def log_text(self) -> str:
        with self._seen:
            return "\n".join(self.lines)


def _log_message(line: str) -> str | None:
    try:
        return json.loads(line).get("msg")
    except (ValueError, AttributeError):
        return None


@contextmanager
def worker_processes(config_path: Path, count: int) -> Iterator[list[WorkerProcess]]:
    with ExitStack() as stack:
        started = []
        for _ in range(count):
            started.append(WorkerProcess(config_path))
            stack.callback(started[-1].kill)
        yield started


def delivery_states(store: Store) -> list[tuple[str, str, int, str | None]]:
    with store.engine.connect() as conn:
        return [
            (row.event_id, row.status, row.attempts, row.lease_owner)
            for row in conn.execute(
                select(
                    deliveries.c.event_id,
                    deliveries.c.status,
                    deliveries.c.attempts,
                    deliveries.c.lease_owner,
                ).order_by(deliveries.c.id)
            )
        ]


# -- four processes on PostgreSQL -------------------------------------------------------------


@pytest.mark.postgres
def test_four_worker_processes_deliver_every_event_exactly_once(
    postgres_url: str, tmp_path: Path
) -> None:
    destination = Destination()
    with serve(destination.app()) as server:
        config = webhook_config(
            tmp_path / "connectors.yaml", postgres_url, f"{server.base_url}/hook"
        )
        store = migrated_store(postgres_url)
        records = gitleads_records(config, range(EVENTS))
        expected = {r.event_id for r in records}
        assert len(expected) == EVENTS
        with worker_processes(tmp_path / "connectors.yaml", WORKERS) as workers:
            # Ingested while the workers run: NOTIFY wakes them, SKIP LOCKED splits the work.
            for start in range(0, EVENTS, 100):
                store.submit_many(records[start : start + 100])
            reached = destination.wait_for(EVENTS, STALL_TIMEOUT_S, DEADLINE_S)
            assert reached == EVENTS, "\n".join(w.log_text()[-2000:] for w in workers)
            exit_codes = [w.terminate() for w in workers]
        assert exit_codes == [0] * WORKERS

    assert set(destination.received) == expected
    duplicates = {k: v for k, v in destination.received.items() if v > 1}
    assert duplicates == {}
    states = delivery_states(store)
    assert len(states) == EVENTS
    assert {(status, attempts, lease) for _, status, attempts, lease in states} == {
        ("delivered", 1, None)
    }
    store.close()


@pytest.mark.postgres
def test_notify_wakes_a_worker_in_another_process(postgres_url: str) -> None:
    # The worker's own store has no in-process wake-up and it polls only hourly, so an
    # event committed through another store (as by another process) reaches it by NOTIFY.
    config = make_config(postgres_url, delivery={"poll_interval": "1h", "backoff": ["30s"]})
    worker_store = migrated_store(postgres_url)
    other_store = Store(postgres_url)
    worker = Worker(config, worker_store)
    woken_by_listener = threading.Event()
    wake = worker.wake

    def recording_wake() -> None:
        if threading.current_thread().name == "store-listen":
            woken_by_listener.set()
        wake()

    worker.wake = recording_wake  # type: ignore[method-assign]
    sent = Tally()

    def count(event: LeadEvent) -> Delivered:
        sent.add(event.event_id)
        return Delivered()

    RecordingConnector.scripts["rec"] = [count] * 40
    worker.start()
    try:
        # LISTEN starts in the background and a notification sent before it is lost, so
        # keep committing events (bounded) until one reaches the listener.
        for record in gitleads_records(config, range(40)):
            other_store.submit_many([record])
            if woken_by_listener.wait(0.5):
                break
        assert woken_by_listener.is_set()
        # Woken, the connector thread claims everything due at once.
        expected = len(other_store.list_deliveries(DeliveryFilter()))
        delivered = sent.wait_for(expected, WAIT_S, WAIT_S)
    finally:
        worker.stop()
    assert delivered == expected
    assert max(sent.received.values()) == 1
    worker_store.close()
    other_store.close()


# -- SIGTERM -------------------------------------------------------------------------------


def test_sigterm_finishes_the_in_flight_delivery_claims_no_more_and_exits_0(
    store_url: str, tmp_path: Path
) -> None:
    destination = Destination(hold_first=True)
    with serve(destination.app()) as server:
        config_path = tmp_path / "connectors.yaml"
        config = webhook_config(config_path, store_url, f"{server.base_url}/hook")
        store = migrated_store(store_url)
        records = gitleads_records(config, range(3))
        store.submit_many(records)
        first, *rest = (r.event_id for r in records)

        with worker_processes(config_path, 1) as [worker]:
            assert destination.in_flight.wait(WAIT_S), worker.log_text()
            worker.process.send_signal(signal.SIGTERM)
            stopping = worker.wait_for_log("worker stopping: finishing in-flight batches", WAIT_S)
            assert stopping, worker.log_text()
            destination.release.set()
            assert worker.process.wait(timeout=EXIT_TIMEOUT_S) == 0, worker.log_text()

    assert destination.received == Counter({first: 1})
    states = {
        event_id: (status, attempts, lease)
        for event_id, status, attempts, lease in delivery_states(store)
    }
    assert states[first] == ("delivered", 1, None)
    # Not claimed after the signal: still pending, untouched, free for the next worker.
    assert [states[event_id] for event_id in rest] == [("pending", 0, None)] * 2
    store.close()
