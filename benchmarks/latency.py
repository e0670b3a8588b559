"""4. Latency from receipt to the connector's call, at 100 events/s.

A paced sender POSTs signed events to the production server (delivery worker on, SQLite);
the webhook connector delivers each one to a local recorder, which notes when it arrived.
Latency = arrival at the recorder - the moment the event was sent (both clocks are this
process's monotonic clock). It covers the group commit, waking the worker, the claim, and
the connector's HTTP call. That is the headline: the target is about it.

The webhook connector sends one event per call, so each event costs the worker a claim and
a completion of its own (two write transactions): it is also a throughput test. The same
run is repeated with a batching connector (HubSpot, to the fake with no latency and no rate
limit; arrival = when the contact's upsert reached the fake) to show the engine's own
receipt-to-call latency apart from the per-event cost.
"""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import (
    BenchContext,
    BenchmarkError,
    free_port,
    gitleads_email,
    gunicorn_process,
    percentile,
    rounded,
    running,
    sqlite_config,
    write_config,
)
from benchmarks.delivery import TOKEN, UPSERT_PATH, IndexedFakeHubSpot
from benchmarks.load import PacedSend, paced_send
from benchmarks.recorder import recording_server
from tests.fakes.server import serve

RATE_PER_S = 100.0
FULL_DURATION_S = 30.0
TARGET_P50_MS = 50.0
TARGET_P99_MS = 250.0
ARRIVAL_TIMEOUT_S = 30.0


def run(ctx: BenchContext) -> dict[str, Any]:
    work = ctx.directory("latency")
    duration = ctx.seconds(FULL_DURATION_S)
    with recording_server() as (recorder, url):
        webhook = _measure(
            work,
            "webhook",
            {"type": "webhook", "url": url},
            duration,
            lambda send, _tag: recorder.arrivals.get(send.event_id or ""),
        )
    fake = IndexedFakeHubSpot()
    upserts = UpsertArrivals(fake.app)
    with serve(upserts) as fake_server:
        batching = _measure(
            work,
            "hubspot",
            {"type": "hubspot", "access_token": TOKEN, "base_url": fake_server.base_url},
            duration,
            lambda send, tag: upserts.arrivals.get(gitleads_email(tag, send.n)),
        )
    return {
        "connector": "webhook: one HTTP call per event",
        **webhook,
        "batching_connector": {"connector": "hubspot fake, no latency or limit", **batching},
        "target_p50_ms": TARGET_P50_MS,
        "target_p99_ms": TARGET_P99_MS,
        "met": not webhook["not_delivered_within_timeout"]
        and webhook["p50_ms"] < TARGET_P50_MS
        and webhook["p99_ms"] < TARGET_P99_MS,
    }


class UpsertArrivals:
    """WSGI middleware in front of the HubSpot fake: when each contact's upsert arrived."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app
        self.arrivals: dict[str, float] = {}  # lower-cased email -> first arrival
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        arrived = time.monotonic()
        if environ.get("PATH_INFO") == UPSERT_PATH:
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(body)
            with self._lock:
                for item in json.loads(body).get("inputs", []):
                    self.arrivals.setdefault(str(item.get("id")).lower(), arrived)
        return self.app(environ, start_response)


def _measure(
    work: Path,
    name: str,
    connector: dict[str, Any],
    duration: float,
    arrival_of: Callable[[PacedSend, str], float | None],
) -> dict[str, Any]:
    config_path = write_config(
        work / f"latency-{name}.yaml",
        sqlite_config(work / f"latency-{name}.db", {name: connector}),
    )
    port = free_port()
    server = gunicorn_process(f"latency-{name}", work, config_path, port, run_worker=True)
    tag = f"la{uuid.uuid4().hex[:6]}"
    with running(server):
        server.wait_http_ready(f"http://127.0.0.1:{port}/readyz")
        sends = paced_send(port, RATE_PER_S, duration, tag=tag)
        deadline = time.monotonic() + ARRIVAL_TIMEOUT_S
        while time.monotonic() < deadline and any(arrival_of(s, tag) is None for s in sends):
            time.sleep(0.05)
    not_accepted = Counter(f"{s.status} {s.answer}" for s in sends if s.answer != "accepted")
    if not_accepted:
        raise BenchmarkError(f"events not accepted as leads: {dict(not_accepted)}")
    arrivals = {s.n: arrival_of(s, tag) for s in sends}
    delivered = [(s, arrived) for s in sends if (arrived := arrivals[s.n]) is not None]
    from_send = [(arrived - s.sent_at) * 1000 for s, arrived in delivered]
    from_answer = [(arrived - s.answered_at) * 1000 for s, arrived in delivered]
    answer_ms = [(s.answered_at - s.sent_at) * 1000 for s in sends]
    return {
        "rate_per_s": RATE_PER_S,
        "duration_s": duration,
        "sent": len(sends),
        "accepted": len(sends),
        "delivered": len(delivered),
        "not_delivered_within_timeout": len(sends) - len(delivered),
        "p50_ms": rounded(percentile(from_send, 50), 2),
        "p90_ms": rounded(percentile(from_send, 90), 2),
        "p99_ms": rounded(percentile(from_send, 99), 2),
        "max_ms": rounded(max(from_send, default=0.0), 2),
        "after_2xx_p50_ms": rounded(percentile(from_answer, 50), 2),
        "after_2xx_p99_ms": rounded(percentile(from_answer, 99), 2),
        "ingest_answer_p50_ms": rounded(percentile(answer_ms, 50), 2),
        "ingest_answer_p99_ms": rounded(percentile(answer_ms, 99), 2),
    }
