"""3. Delivery to the HubSpot fake: 50 ms per call, 190 requests per rolling 10 s.

N events are stored first (as the receiver would store them), then `connectors worker`
processes deliver them through the real HubSpot connector to the fake (`base_url`), until
none is pending: once with one process (`connectors serve`, a single `connectors worker`)
and once with two (the default of deploy/gunicorn.conf.py, whose two processes each run a
delivery worker); the headline figure is the latter, both are reported.

The bound the limit allows is 190 requests x 100 contacts per 10 s = 1,900 contacts/s;
one request per lead would allow 19 contacts/s.

Events are `lead.enriched`, which carry no activity, so every request is a contact batch
upsert (an activity would add a notes request per batch and halve the contacts bound).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from pathlib import Path
from typing import Any, NamedTuple

from benchmarks.common import (
    BenchContext,
    BenchmarkError,
    connectors_process,
    preload_events,
    require_all_accepted,
    running,
    sqlite_config,
    sqlite_counts,
    write_config,
)
from leadrelay.core.app.config import load_config
from leadrelay.core.store.store import Store
from tests.fakes.hubspot import FakeHubSpot, RateLimit
from tests.fakes.server import serve

LATENCY_MS = 50
RATE_LIMIT_REQUESTS = 190
RATE_LIMIT_WINDOW_MS = 10_000
BATCH = 100
BOUND_PER_S = RATE_LIMIT_REQUESTS * BATCH / (RATE_LIMIT_WINDOW_MS / 1000)
ONE_PER_LEAD_PER_S = RATE_LIMIT_REQUESTS / (RATE_LIMIT_WINDOW_MS / 1000)
FULL_EVENTS = 30_000
# deploy/gunicorn.conf.py runs a delivery worker in each of its 2 processes by default;
# `connectors serve` and a single `connectors worker` run one.
WORKER_PROCESSES = (1, 2)
DEPLOY_PROCESSES = 2
TARGET_FRACTION = 0.9
TOKEN = "test-token"
UPSERT_PATH = "/crm/v3/objects/contacts/batch/upsert"


class IndexedFakeHubSpot(FakeHubSpot):
    """The test fake, with contacts indexed by email.

    The fake finds a contact by scanning all of them, which is right for tests and
    quadratic for tens of thousands of contacts: its own time per call would grow past
    the 50 ms being modelled. Only the lookup by email changes here.
    """

    def reset(self, **settings: Any) -> None:
        super().reset(**settings)
        self._by_email: dict[str, dict[str, Any]] = {}

    def _find(
        self, prop: str, value: str, *, include_archived: bool = False
    ) -> dict[str, Any] | None:
        if prop != "email":
            return super()._find(prop, value, include_archived=include_archived)
        contact = self._by_email.get(value.strip().lower())
        if contact is None or (contact["archived"] and not include_archived):
            return None
        return contact

    def _apply_upsert(self, item: dict[str, Any]) -> dict[str, Any]:
        result = super()._apply_upsert(item)
        contact = self.contacts[result["id"]]
        email = contact["properties"].get("email")
        if email:
            self._by_email[email.strip().lower()] = contact
        return result


class Call(NamedTuple):
    arrived: float
    answered: float
    path: str
    status: int


class CallLog:
    """WSGI middleware: when each call arrived, when it was answered, and its status."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app
        self.calls: list[Call] = []
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        began = time.monotonic()
        status_holder: list[int] = []

        def recording_start_response(status: str, headers: Any, *args: Any) -> Any:
            status_holder.append(int(status.split()[0]))
            return start_response(status, headers, *args)

        body: Iterable[bytes] = self.app(environ, recording_start_response)
        chunks = list(body)
        with self._lock:
            self.calls.append(
                Call(
                    began,
                    time.monotonic(),
                    environ["PATH_INFO"],
                    status_holder[0],
                )
            )
        return chunks


def run(ctx: BenchContext) -> dict[str, Any]:
    work = ctx.directory("delivery")
    count = ctx.count(FULL_EVENTS, floor=600)
    by_workers = {str(n): _measure(work, n, count) for n in WORKER_PROCESSES}
    headline = by_workers[str(DEPLOY_PROCESSES)]
    return {
        **headline,
        "worker_processes": DEPLOY_PROCESSES,
        "by_worker_processes": by_workers,
        "bound_per_s": BOUND_PER_S,
        "one_request_per_lead_per_s": ONE_PER_LEAD_PER_S,
        "target_fraction": TARGET_FRACTION,
        "met": headline["fraction_of_rate_limit_bound"] >= TARGET_FRACTION,
    }


def _measure(work: Path, processes: int, count: int) -> dict[str, Any]:
    fake = IndexedFakeHubSpot(
        latency_ms=LATENCY_MS,
        rate_limit=RateLimit(max_requests=RATE_LIMIT_REQUESTS, window_ms=RATE_LIMIT_WINDOW_MS),
    )
    log = CallLog(fake.app)
    db_path = work / f"delivery-{processes}.db"
    with serve(log) as server:
        crm = {"type": "hubspot", "access_token": TOKEN, "base_url": server.base_url}
        config_path = write_config(
            work / f"delivery-{processes}.yaml", sqlite_config(db_path, {"crm": crm})
        )
        config = load_config(config_path)
        store = Store(config.store)
        try:
            store.migrate()
            stored = preload_events(
                config, store, count, tag=f"dl{uuid.uuid4().hex[:6]}", event="lead.enriched"
            )
        finally:
            store.close()
        workers = [
            connectors_process(
                f"delivery-{processes}-worker-{index}",
                work,
                ["worker", "--config", str(config_path)],
            )
            for index in range(processes)
        ]
        deadline_s = 60 + 5 * count / BOUND_PER_S
        try:
            with ExitStack() as stack:
                for worker in workers:
                    stack.enter_context(running(worker))
                drained = _wait_drained(
                    db_path, lambda: all(w.alive() for w in workers), deadline_s
                )
        finally:
            fake.close()
        if not drained:
            raise BenchmarkError(f"deliveries not drained within {deadline_s:.0f}s")
    counts = sqlite_counts(db_path)
    require_all_accepted(counts)
    upserts = [c for c in log.calls if c.path == UPSERT_PATH]
    ok_calls = [c for c in upserts if 200 <= c.status < 300]
    if not ok_calls:
        raise BenchmarkError("the worker made no successful HubSpot call")
    elapsed = max(c.answered for c in ok_calls) - min(c.arrived for c in upserts)
    delivered = counts["deliveries"].get("delivered", 0)
    contacts_per_s = delivered / elapsed
    fake_ms = [(c.answered - c.arrived) * 1000 for c in ok_calls]
    return {
        "events": stored,
        "delivered": delivered,
        "contacts_in_fake": len(fake.contacts),
        "elapsed_s": round(elapsed, 2),
        "contacts_per_s": round(contacts_per_s, 1),
        "fraction_of_rate_limit_bound": round(contacts_per_s / BOUND_PER_S, 3),
        "times_one_request_per_lead": round(contacts_per_s / ONE_PER_LEAD_PER_S, 1),
        "calls": len(upserts),
        "calls_429": sum(1 for c in upserts if c.status == 429),
        "calls_per_s": round(len(ok_calls) / elapsed, 2),
        "fake_ms_per_call_mean": round(sum(fake_ms) / len(fake_ms), 1),
        # Each process alternates between waiting for the fake and its own work (claim,
        # build the request, record outcomes); this is the latter, per call.
        "worker_ms_per_call": round(
            max(processes * elapsed / len(ok_calls) * 1000 - sum(fake_ms) / len(fake_ms), 0.0),
            1,
        ),
    }


def _wait_drained(db_path: Any, alive: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive():
            raise BenchmarkError("the delivery worker exited")
        counts = sqlite_counts(db_path)["deliveries"]
        if not counts.get("pending"):
            return True
        time.sleep(0.1)
    return False
