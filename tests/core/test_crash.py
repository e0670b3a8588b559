"""Crash safety: SIGKILL `connectors serve` mid-stream, restart it, lose and double nothing.

A provider-like poster streams signed GitLeads webhooks into a real `connectors serve`
(receiver and worker in one gunicorn process group, SQLite, CSV connector) and resends
anything that got no 2xx, as providers do. The whole process group is SIGKILLed three
times while requests and deliveries are in flight, and restarted on the same database,
CSV file and port each time. Every event that was acknowledged must end up in the CSV
exactly once.
"""

from __future__ import annotations

import csv
import threading
import time
from collections import Counter
from pathlib import Path

import requests

from leadrelay.core.store.store import DeliveryFilter, Store
from tests.conftest import SECRETS, gitleads_body, signed_headers
from tests.process import ServeProcess, free_port, write_config

TOTAL_EVENTS = 300
KILL_AT = (60, 140, 220)
POST_TIMEOUT_S = 10.0
STREAM_DEADLINE_S = 120.0
DELIVERY_DEADLINE_S = 60.0
MAX_TRIES_PER_EVENT = 200


class Poster:
    """Sends events 0..total-1 from a few threads at once; each one again until it gets a 2xx.

    Several requests in flight make a kill likely to land between a commit and its answer.
    """

    def __init__(self, url: str, total: int, threads: int = 4) -> None:
        self.url = url
        self.total = total
        self.acked: dict[int, str] = {}
        self.answers: Counter[str] = Counter()
        self.errors: list[str] = []
        self.progress = threading.Condition()
        # Cleared by the test while the server is down, so a failed try waits for the
        # restart instead of hammering a closed port.
        self.server_up = threading.Event()
        self.server_up.set()
        self._cancelled = threading.Event()
        self._deadline = time.monotonic() + STREAM_DEADLINE_S
        self._threads = [
            threading.Thread(target=self._run, args=(range(i, total, threads),), daemon=True)
            for i in range(threads)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def join(self, timeout: float) -> bool:
        """True when every thread finished within `timeout`."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0))
        return not self.is_alive()

    def cancel(self) -> None:
        """Stop sending (a failed test must not leave threads posting in the background)."""
        self._cancelled.set()
        self.server_up.set()

    def is_alive(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def _run(self, numbers: range) -> None:
        try:
            with requests.Session() as session:
                for n in numbers:
                    error = self._deliver(session, n)
                    if error:
                        with self.progress:
                            self.errors.append(error)
                        return
        finally:
            with self.progress:
                self.progress.notify_all()

    def _deliver(self, session: requests.Session, n: int) -> str | None:
        """None once event `n` got a 2xx, else what went wrong."""
        body = gitleads_body(n)
        headers = signed_headers("gitleads", body)
        for _ in range(MAX_TRIES_PER_EVENT):
            remaining = self._deadline - time.monotonic()
            if remaining <= 0 or self._cancelled.is_set():
                break
            try:
                response = session.post(
                    self.url, data=body, headers=headers, timeout=POST_TIMEOUT_S
                )
            except requests.RequestException:
                response = None
            if response is not None and 200 <= response.status_code < 300:
                answer = response.json()
                with self.progress:
                    self.acked[n] = answer["event_id"]
                    self.answers[answer["status"]] += 1
                    self.progress.notify_all()
                return None
            if response is not None and response.status_code < 500:
                return f"event {n}: HTTP {response.status_code} {response.text}"
            self.server_up.wait(remaining)
        return f"event {n}: no 2xx within the deadline or the tries allowed"

    def wait_acked(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.progress:
            while len(self.acked) < count and self.is_alive():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.progress.wait(remaining)
            return len(self.acked) >= count


def wait_all_delivered(store: Store, expected: int) -> int:
    """Delivered CSV deliveries, once none is pending or the deadline passes."""
    deadline = time.monotonic() + DELIVERY_DEADLINE_S
    while True:
        rows = store.list_deliveries(DeliveryFilter(connector="archive", limit=10 * expected))
        delivered = sum(1 for r in rows if r["status"] == "delivered")
        if delivered >= expected or time.monotonic() > deadline:
            return delivered
        time.sleep(0.1)  # polling the queue: the worker runs in another process


def csv_event_ids(path: Path) -> Counter[str]:
    with path.open(newline="", encoding="utf-8") as handle:
        return Counter(row["event_id"] for row in csv.DictReader(handle))


def test_sigkill_mid_stream_loses_and_doubles_nothing(tmp_path: Path) -> None:
    csv_path = tmp_path / "leads.csv"
    db_path = tmp_path / "leadrelay.db"
    config_path = write_config(
        tmp_path / "connectors.yaml",
        {
            "store": f"sqlite:///{db_path}",
            "sources": {"gitleads": {"provider": "gitleads", "secrets": [SECRETS["gitleads"]]}},
            "connectors": {"archive": {"type": "csv", "path": str(csv_path)}},
            # A short lease: deliveries a killed worker held are taken again soon after.
            "delivery": {"lease": "3s", "backoff": ["1s"], "max_attempts": 20},
        },
    )
    port = free_port()
    server = ServeProcess(config_path, port=port).start()
    poster = Poster(f"{server.base_url}/webhooks/gitleads", TOTAL_EVENTS)
    kills = 0
    try:
        poster.start()
        for kill_at in KILL_AT:
            assert poster.wait_acked(kill_at, STREAM_DEADLINE_S), poster.errors
            poster.server_up.clear()
            server.kill()
            kills += 1
            server = ServeProcess(config_path, port=port).start()
            poster.server_up.set()
        assert poster.join(STREAM_DEADLINE_S)
        assert poster.errors == []
        assert len(poster.acked) == TOTAL_EVENTS
        # A retry of a request whose answer was lost to a kill is answered as a duplicate.
        assert set(poster.answers) <= {"accepted", "duplicate"}
        assert poster.answers["accepted"] + poster.answers["duplicate"] == TOTAL_EVENTS

        store = Store(f"sqlite:///{db_path}")
        try:
            delivered = wait_all_delivered(store, TOTAL_EVENTS)
        finally:
            store.close()
        assert delivered == TOTAL_EVENTS, server.stderr_text()[-3000:]
    finally:
        poster.cancel()
        poster.join(POST_TIMEOUT_S)
        server.stop()

    assert kills == len(KILL_AT)
    in_csv = csv_event_ids(csv_path)
    acknowledged = set(poster.acked.values())
    assert len(acknowledged) == TOTAL_EVENTS
    assert set(in_csv) == acknowledged
    assert {event_id: n for event_id, n in in_csv.items() if n != 1} == {}
