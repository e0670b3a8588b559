"""4. Latency from receipt to the connector's call, at 100 events/s.

A paced sender POSTs signed events to the production server (delivery worker on, SQLite);
the webhook connector delivers each one to a local recorder, which notes when it arrived.
Latency = arrival at the recorder - the moment the event was sent (both clocks are this
process's monotonic clock). It covers the group commit, waking the worker, the claim, and
the connector's HTTP call.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from typing import Any

from benchmarks.common import (
    BenchContext,
    BenchmarkError,
    free_port,
    gunicorn_process,
    percentile,
    rounded,
    running,
    sqlite_config,
    write_config,
)
from benchmarks.load import paced_send
from benchmarks.recorder import recording_server

RATE_PER_S = 100.0
FULL_DURATION_S = 30.0
TARGET_P50_MS = 50.0
TARGET_P99_MS = 250.0
ARRIVAL_TIMEOUT_S = 30.0


def run(ctx: BenchContext) -> dict[str, Any]:
    work = ctx.directory("latency")
    duration = ctx.seconds(FULL_DURATION_S)
    with recording_server() as (recorder, url):
        config_path = write_config(
            work / "latency.yaml",
            sqlite_config(work / "latency.db", {"hook": {"type": "webhook", "url": url}}),
        )
        port = free_port()
        server = gunicorn_process("latency-leadrelay", work, config_path, port, run_worker=True)
        with running(server):
            server.wait_http_ready(f"http://127.0.0.1:{port}/readyz")
            sends = paced_send(port, RATE_PER_S, duration, tag=f"la{uuid.uuid4().hex[:6]}")
            accepted = [s for s in sends if s.event_id and s.answer == "accepted"]
            deadline = time.monotonic() + ARRIVAL_TIMEOUT_S
            while time.monotonic() < deadline and any(
                s.event_id not in recorder.arrivals for s in accepted
            ):
                time.sleep(0.05)
        arrivals = dict(recorder.arrivals)
    if len(accepted) != len(sends):
        answers = Counter(f"{s.status} {s.answer}" for s in sends if s.answer != "accepted")
        raise BenchmarkError(f"events not accepted as leads: {dict(answers)}")
    delivered = [s for s in accepted if s.event_id in arrivals]
    from_send = [(arrivals[s.event_id] - s.sent_at) * 1000 for s in delivered]
    from_answer = [(arrivals[s.event_id] - s.answered_at) * 1000 for s in delivered]
    answer_ms = [(s.answered_at - s.sent_at) * 1000 for s in accepted]
    missing = len(accepted) - len(delivered)
    p50, p99 = percentile(from_send, 50), percentile(from_send, 99)
    return {
        "rate_per_s": RATE_PER_S,
        "duration_s": duration,
        "sent": len(sends),
        "accepted": len(accepted),
        "delivered": len(from_send),
        "not_delivered_within_timeout": missing,
        "p50_ms": rounded(p50, 2),
        "p90_ms": rounded(percentile(from_send, 90), 2),
        "p99_ms": rounded(p99, 2),
        "max_ms": rounded(max(from_send, default=0.0), 2),
        "after_2xx_p50_ms": rounded(percentile(from_answer, 50), 2),
        "after_2xx_p99_ms": rounded(percentile(from_answer, 99), 2),
        "ingest_answer_p50_ms": rounded(percentile(answer_ms, 50), 2),
        "ingest_answer_p99_ms": rounded(percentile(answer_ms, 99), 2),
        "target_p50_ms": TARGET_P50_MS,
        "target_p99_ms": TARGET_P99_MS,
        "met": not missing and p50 < TARGET_P50_MS and p99 < TARGET_P99_MS,
    }
