"""Idempotency under concurrency: many copies of one signed event at the same instant are
stored once, on SQLite and PostgreSQL, within one app and across server processes."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from leadrelay.core.ingest.receiver import create_app
from leadrelay.core.store.store import DeliveryFilter, EventFilter, Store
from tests.conftest import config_dict, gitleads_body, make_config, signed_headers
from tests.process import ServeProcess, killed_after, write_config

COPIES = 50
TIMEOUT_S = 30


def run_at_once(count: int, send: Callable[[int], tuple[int, dict[str, Any]]]) -> list[Any]:
    """Call `send(i)` from `count` threads released together by a barrier."""
    barrier = threading.Barrier(count, timeout=TIMEOUT_S)

    def task(i: int) -> tuple[int, dict[str, Any]]:
        barrier.wait()
        return send(i)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(task, range(count)))


def assert_stored_once(store: Store, answers: list[tuple[int, dict[str, Any]]]) -> None:
    assert {status for status, _ in answers} == {200}
    statuses = Counter(body["status"] for _, body in answers)
    assert statuses == {"accepted": 1, "duplicate": COPIES - 1}
    event_ids = {body["event_id"] for _, body in answers}
    assert len(event_ids) == 1
    [event_id] = event_ids
    events = store.list_events(EventFilter(limit=1000))
    assert [e["event_id"] for e in events] == [event_id]
    deliveries = store.list_deliveries(DeliveryFilter(limit=1000))
    assert [d["event_id"] for d in deliveries] == [event_id] * len(deliveries)
    assert len({d["connector"] for d in deliveries}) == len(deliveries)


def test_one_app_many_threads_store_one_event(store_url: str, store: Store) -> None:
    app = create_app(make_config(store_url), store)
    body = gitleads_body(1)
    headers = signed_headers("gitleads", body)

    def send(_i: int) -> tuple[int, dict[str, Any]]:
        response = app.test_client().post("/webhooks/gitleads", data=body, headers=headers)
        return response.status_code, response.get_json()

    answers = run_at_once(COPIES, send)

    assert_stored_once(store, answers)
    assert len(store.list_deliveries(DeliveryFilter())) == 1  # the `rec` connector


def test_mixed_burst_of_distinct_events_and_copies(store_url: str, store: Store) -> None:
    # Group commit puts new events and copies in one transaction: each must be answered
    # for itself (10 distinct events, 5 copies each).
    app = create_app(make_config(store_url), store)
    bodies = [gitleads_body(n) for n in range(10)]

    def send(i: int) -> tuple[int, dict[str, Any]]:
        body = bodies[i % len(bodies)]
        response = app.test_client().post(
            "/webhooks/gitleads", data=body, headers=signed_headers("gitleads", body)
        )
        return response.status_code, response.get_json()

    answers = run_at_once(COPIES, send)

    assert Counter(body["status"] for _, body in answers) == {"accepted": 10, "duplicate": 40}
    accepted_ids = {body["event_id"] for _, body in answers if body["status"] == "accepted"}
    assert {body["event_id"] for _, body in answers} == accepted_ids
    assert {e["event_id"] for e in store.list_events(EventFilter(limit=1000))} == accepted_ids
    assert len(store.list_deliveries(DeliveryFilter(limit=1000))) == 10


def test_two_server_processes_store_one_event(store_url: str, store: Store, tmp_path: Path) -> None:
    data = config_dict(store_url, connectors={})
    config_path = write_config(tmp_path / "connectors.yaml", data)
    body = gitleads_body(2)
    headers = signed_headers("gitleads", body)
    options = ["--threads", "16", "--no-worker"]
    with (
        killed_after(ServeProcess(config_path, extra_args=options)) as first,
        killed_after(ServeProcess(config_path, extra_args=options)) as second,
    ):
        servers = (first, second)

        def send(i: int) -> tuple[int, dict[str, Any]]:
            response = requests.post(
                servers[i % 2].url("/webhooks/gitleads"),
                data=body,
                headers=headers,
                timeout=TIMEOUT_S,
            )
            return response.status_code, response.json()

        answers = run_at_once(COPIES, send)

    assert_stored_once(store, answers)


def test_copies_racing_with_moves_out_of_the_journal_are_stored_once(
    store_url: str, store: Store
) -> None:
    # The journal and `dedup_keys` must never both hold a key, nor neither while a copy
    # is answered: another store (as another process would) moves the journal all along.
    app = create_app(make_config(store_url), store)
    mover = Store(store_url)
    bodies = [gitleads_body(n) for n in range(5)]
    sending = threading.Event()
    sending.set()

    errors: list[BaseException] = []
    moves: list[int] = []

    def move_all_along() -> None:
        try:
            for _ in range(10_000):
                if not sending.is_set():
                    return
                mover.settle()
                moves.append(1)
        except BaseException as exc:  # reported by the assertion below, not swallowed
            errors.append(exc)

    def send(i: int) -> tuple[int, dict[str, Any]]:
        body = bodies[i % len(bodies)]
        response = app.test_client().post(
            "/webhooks/gitleads", data=body, headers=signed_headers("gitleads", body)
        )
        return response.status_code, response.get_json()

    moving = threading.Thread(target=move_all_along)
    moving.start()
    try:
        answers = run_at_once(COPIES, send)
    finally:
        sending.clear()
        moving.join(TIMEOUT_S)
        mover.close()

    assert errors == []
    assert moves  # the mover ran while the copies were answered
    assert Counter(body["status"] for _, body in answers) == {"accepted": 5, "duplicate": 45}
    # Copies arriving after every move are still duplicates.
    late = [send(i)[1]["status"] for i in range(5)]
    assert late == ["duplicate"] * 5
    events = store.list_events(EventFilter(limit=1000))
    assert len(events) == 5
    assert len(store.list_deliveries(DeliveryFilter(limit=1000))) == 5
