"""2. Sustained: full-speed ingest while the in-process worker delivers to the CSV sink.

The production server with its delivery worker on (LEADRELAY_WORKER=1) takes the same load
as benchmark 1; the backlog (pending deliveries, and events journaled but not moved in) is
sampled throughout. The backlog saws up and down with the worker's batches of 500, so
"does not grow" is judged by what is left when the load stops: the worker must clear it
within a few seconds. The trend over the
second half of the run (least squares) is reported beside it.

CPU: the server's (master and workers, `/proc`) over the load, per accepted event, which
includes delivering them; then, with the server idle, a backlog stored from outside
(`preload_events`) is delivered to the CSV sink and the server's CPU until it is cleared
gives the delivery worker's CPU per delivered row.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from benchmarks.common import (
    BenchContext,
    BenchmarkError,
    backlog,
    free_port,
    gunicorn_process,
    preload_events,
    require_all_accepted,
    running,
    session_cpu_s,
    sqlite_counts,
)
from benchmarks.ingest import leadrelay_config, measured_load
from benchmarks.load import choose_loader

FULL_DURATION_S = 60.0
SAMPLE_EVERY_S = 2.0
DRAIN_TIMEOUT_S = 120.0
# A backlog the worker clears this fast after the load stops has not been accumulating.
DRAIN_OK_S = 5.0
# Rows of the backlog delivered with the server otherwise idle (CPU per delivered row).
FULL_BACKLOG = 20_000


def run(ctx: BenchContext) -> dict[str, Any]:
    work = ctx.directory("sustained")
    loader = choose_loader(ctx.loader)
    duration = ctx.seconds(FULL_DURATION_S)
    config_path, db_path = leadrelay_config(work, "sustained")
    port = free_port()
    server = gunicorn_process("sustained-leadrelay", work, config_path, port, run_worker=True)
    samples: list[tuple[float, int]] = []
    stop_sampling = threading.Event()

    def sample() -> None:
        started = time.monotonic()
        while not stop_sampling.wait(min(SAMPLE_EVERY_S, duration / 4)):
            samples.append((round(time.monotonic() - started, 2), backlog(db_path)))

    with running(server):
        server.wait_http_ready(f"http://127.0.0.1:{port}/readyz")
        sampler = threading.Thread(target=sample, name="backlog-sampler", daemon=True)
        sampler.start()
        try:
            measured = measured_load(
                server,
                "accepted",
                loader=loader,
                port=port,
                duration=duration,
                tag=f"su{uuid.uuid4().hex[:6]}",
                work_dir=work,
                connections=ctx.connections,
            )
        finally:
            stop_sampling.set()
            sampler.join(timeout=30)
        load = measured.load
        at_end = sqlite_counts(db_path)
        require_all_accepted(at_end)
        backlog_end = at_end["deliveries"].get("pending", 0) + at_end["journaled"]
        drain_s = _drain_time(db_path)
        delivery_cpu = _delivery_cpu(ctx, config_path, db_path, server.pid)
    delivered = at_end["deliveries"].get("delivered", 0)
    accepted_per_s = load.ok / load.duration_s
    trend = _trend([s for s in samples if s[0] >= duration / 2])
    return {
        "loader": loader,
        "duration_s": round(load.duration_s, 1),
        "accepted": load.ok,
        "accepted_per_s": round(accepted_per_s, 1),
        "delivered": delivered,
        "delivered_per_s": round(delivered / load.duration_s, 1),
        "backlog_end": backlog_end,
        "backlog_max": max((pending for _, pending in samples), default=backlog_end),
        "backlog_trend_per_s": round(trend, 1),
        "drain_after_load_s": drain_s,
        "backlog_samples": samples,
        "ingest_p50_ms": load.p50_ms,
        "ingest_p99_ms": load.p99_ms,
        "server_cpu_s": round(measured.cpu_s, 2),
        "cpu_us_per_accepted_event": round(measured.cpu_us_per_request),
        "delivery_cpu": delivery_cpu,
        "met": drain_s is not None and drain_s <= DRAIN_OK_S,
    }


def _delivery_cpu(
    ctx: BenchContext, config_path: Any, db_path: Any, server_pid: int
) -> dict[str, Any]:
    """The server's CPU while its worker delivers a backlog stored from outside, per row."""
    from leadrelay.core.app.config import load_config
    from leadrelay.core.store.store import Store

    count = ctx.count(FULL_BACKLOG, 200)
    config = load_config(config_path)
    store = Store(config.store)
    try:
        cpu_before = session_cpu_s(server_pid)
        started = time.monotonic()
        stored = preload_events(config, store, count, tag=f"dc{uuid.uuid4().hex[:6]}")
    finally:
        store.close()
    drain_s = _drain_time(db_path)
    if drain_s is None:
        raise BenchmarkError("the delivery worker did not clear the stored backlog")
    cpu_s = session_cpu_s(server_pid) - cpu_before
    elapsed = time.monotonic() - started
    return {
        "rows": stored,
        "seconds": round(elapsed, 1),
        "rows_per_s": round(stored / elapsed, 1) if elapsed else 0.0,
        "server_cpu_s": round(cpu_s, 2),
        "cpu_us_per_row": round(cpu_s * 1e6 / stored) if stored else 0,
    }


def _trend(samples: list[tuple[float, int]]) -> float:
    """Least-squares slope of the backlog in deliveries per second."""
    if len(samples) < 2:
        return 0.0
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_p = sum(p for _, p in samples) / n
    spread = sum((t - mean_t) ** 2 for t, _ in samples)
    if not spread:
        return 0.0
    return sum((t - mean_t) * (p - mean_p) for t, p in samples) / spread


def _drain_time(db_path: Any) -> float | None:
    """Seconds until the backlog reaches zero once the load stops (None: not within bound)."""
    started = time.monotonic()
    while time.monotonic() - started < DRAIN_TIMEOUT_S:
        if backlog(db_path) == 0:
            return round(time.monotonic() - started, 2)
        time.sleep(0.1)
    return None
