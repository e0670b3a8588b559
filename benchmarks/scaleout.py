"""5. Scale-out on PostgreSQL: 1, 2 and 4 `connectors worker` processes.

The connector takes 50 ms per batch: the webhook connector (a batch is one event) posting
to a local destination that answers after 50 ms. For each worker count a fresh private
schema gets a backlog larger than the workers can clear in the window, the workers start,
and throughput is what reached the destination during a fixed window after the first
arrival (so process start-up is not counted). Any event arriving twice is reported: the
workers must never deliver the same event twice (`FOR UPDATE SKIP LOCKED`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from benchmarks.common import (
    BenchContext,
    BenchmarkError,
    connectors_process,
    preload_events,
    running,
    write_config,
)
from benchmarks.recorder import recording_server
from leadrelay.core.app.config import load_config
from leadrelay.core.store.store import Store

DESTINATION_DELAY_S = 0.050
WORKER_COUNTS = (1, 2, 4)
FULL_WINDOW_S = 15.0
WARMUP_S = 1.0
FIRST_ARRIVAL_TIMEOUT_S = 60.0
# Generous: a worker does at most 1 / 50 ms = 20 deliveries a second.
_MAX_PER_WORKER_PER_S = 20


def run(ctx: BenchContext) -> dict[str, Any]:
    work = ctx.directory("scaleout")
    window = ctx.seconds(FULL_WINDOW_S)
    results: dict[str, Any] = {}
    duplicates = 0
    for workers in WORKER_COUNTS:
        backlog = int(workers * _MAX_PER_WORKER_PER_S * (window + WARMUP_S + 5)) + 50
        rate, repeats = _measure(ctx, work, workers, backlog, window)
        results[str(workers)] = round(rate, 2)
        duplicates += repeats
    one = results[str(WORKER_COUNTS[0])]
    return {
        "connector": "webhook, destination answers after 50 ms (batch = 1 event)",
        "window_s": window,
        "deliveries_per_s": results,
        "per_worker_ceiling_per_s": round(1 / DESTINATION_DELAY_S, 1),
        "ratio_2_to_1": round(results["2"] / one, 2) if one else 0.0,
        "ratio_4_to_1": round(results["4"] / one, 2) if one else 0.0,
        "duplicate_deliveries": duplicates,
    }


def _measure(
    ctx: BenchContext, work: Path, workers: int, backlog: int, window: float
) -> tuple[float, int]:
    with ExitStack() as stack:
        store_url = stack.enter_context(_private_schema(ctx.postgres_url))
        recorder, url = stack.enter_context(recording_server(DESTINATION_DELAY_S))
        config_path = write_config(
            work / f"scaleout-{workers}.yaml",
            {
                "store": store_url,
                "sources": {"gitleads": {"provider": "gitleads", "secrets": ["unused"]}},
                "connectors": {"slow": {"type": "webhook", "url": url}},
            },
        )
        config = load_config(config_path)
        store = Store(config.store)
        try:
            store.migrate()
            preload_events(config, store, backlog, tag=f"so{uuid.uuid4().hex[:6]}")
        finally:
            store.close()
        for index in range(workers):
            stack.enter_context(
                running(
                    connectors_process(
                        f"scaleout-{workers}-worker-{index}",
                        work,
                        ["worker", "--config", str(config_path)],
                    )
                )
            )
        first = _first_arrival(recorder)
        start = first + WARMUP_S
        end = start + window
        while time.monotonic() < end:
            time.sleep(0.05)
        delivered = recorder.arrived_between(start, end)
        if len(recorder.arrivals) >= backlog:
            raise BenchmarkError(f"backlog of {backlog} ran out before the window ended")
        return delivered / window, sum(recorder.repeats.values())


def _first_arrival(recorder: Any) -> float:
    deadline = time.monotonic() + FIRST_ARRIVAL_TIMEOUT_S
    while time.monotonic() < deadline:
        if recorder.times:
            return float(recorder.times[0])
        time.sleep(0.02)
    raise BenchmarkError("no worker delivered anything")


@contextmanager
def _private_schema(base_url: str) -> Iterator[str]:
    """A schema of our own on the PostgreSQL server, dropped afterwards."""
    import psycopg

    schema = f"lr_bench_{uuid.uuid4().hex[:10]}"
    dsn = base_url.replace("postgresql+psycopg://", "postgresql://")
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
    except psycopg.Error as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise BenchmarkError(f"PostgreSQL not reachable at {base_url}: {first}") from None
    separator = "&" if "?" in base_url else "?"
    try:
        yield f"{base_url}{separator}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
