"""1. Ingest: leadrelay under the production server against a bare Flask endpoint.

Both run under `gunicorn -c deploy/gunicorn.conf.py` (same processes, threads, keepalive),
one after the other, with the same load generator and the same unique signed bodies. The
leadrelay run stores on SQLite (`synchronous=FULL`) with the delivery worker off, so
only ingest is measured; afterwards every event answered 2xx is looked up in the database.

Each run also reports the server's CPU per request: utime + stime of the gunicorn master
and its workers (`/proc/<pid>/stat`) over the load, divided by the requests served (for
leadrelay, the events accepted). CPU is what the target is about: on a shared 2-core
machine req/s moves with whatever else runs, CPU per request much less.
"""

from __future__ import annotations

import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import (
    BIN,
    BenchContext,
    BenchmarkError,
    ManagedProcess,
    free_port,
    gunicorn_process,
    require_all_accepted,
    running,
    session_cpu_s,
    sqlite_config,
    sqlite_counts,
    stored_event_ids,
    write_config,
)
from benchmarks.load import LoadResult, choose_loader, run_load

FULL_DURATION_S = 20.0
TARGET_RATIO = 0.5
TARGET_CPU_RATIO = 2.0
TARGET_P99_MS = 50.0
BARE_APP = "benchmarks.bare_app:app"
RECEIVER_ONLY_APP = "benchmarks.receiver_only_app:app"


def run(ctx: BenchContext) -> dict[str, Any]:
    work = ctx.directory("ingest")
    loader = choose_loader(ctx.loader)
    duration = ctx.seconds(FULL_DURATION_S)
    bare = _bare_flask(ctx, work, loader, duration)
    receiver_only = _receiver_only(ctx, work, loader, duration)
    leadrelay, check, profile = _leadrelay(ctx, work, loader, duration)
    ratio = _ratio(leadrelay.load.req_per_s, bare.load.req_per_s)
    receiver_ratio = _ratio(receiver_only.load.req_per_s, bare.load.req_per_s)
    cpu_ratio = _ratio(leadrelay.cpu_us_per_request, bare.cpu_us_per_request)
    p99_ms = leadrelay.load.p99_ms
    return {
        "loader": loader,
        "connections": ctx.connections,
        "duration_s": duration,
        "leadrelay": leadrelay.summary(),
        "bare_flask": bare.summary(),
        "ratio_to_bare_flask": round(ratio, 3),
        "cpu_ratio_to_bare_flask": round(cpu_ratio, 2),
        # Diagnostic: the same receiver with the commit left out (nothing stored).
        "receiver_only": receiver_only.summary(),
        "receiver_only_ratio_to_bare_flask": round(receiver_ratio, 3),
        "receiver_only_cpu_ratio_to_bare_flask": round(
            _ratio(receiver_only.cpu_us_per_request, bare.cpu_us_per_request), 2
        ),
        "target_ratio": TARGET_RATIO,
        "target_cpu_ratio": TARGET_CPU_RATIO,
        "target_p99_ms": TARGET_P99_MS,
        "cpu_met": 0 < cpu_ratio <= TARGET_CPU_RATIO,
        "met": ratio >= TARGET_RATIO and p99_ms < TARGET_P99_MS and check["every_2xx_committed"],
        "commit_check": check,
        **({"profile": profile} if profile else {}),
    }


@dataclass(frozen=True)
class MeasuredLoad:
    """A load run and the server's CPU time over it."""

    load: LoadResult
    cpu_s: float
    # What the CPU is divided by: requests served (bare Flask) or events accepted.
    per: str

    @property
    def cpu_us_per_request(self) -> float:
        count = self.load.ok if self.per == "accepted" else self.load.completed
        return self.cpu_s * 1e6 / count if count else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            **self.load.summary(),
            "server_cpu_s": round(self.cpu_s, 2),
            "cpu_us_per_request": round(self.cpu_us_per_request),
            "cpu_per": self.per,
        }


def _ratio(value: float, baseline: float) -> float:
    return value / baseline if baseline else 0.0


def measured_load(server: ManagedProcess, per: str, **load_args: Any) -> MeasuredLoad:
    """`run_load(**load_args)` against `server`, with the CPU its processes spent meanwhile."""
    cpu_before = session_cpu_s(server.pid)
    load = run_load(**load_args)
    return MeasuredLoad(load, session_cpu_s(server.pid) - cpu_before, per)


def _bare_flask(ctx: BenchContext, work: Path, loader: str, duration: float) -> MeasuredLoad:
    # The deploy config's hooks want a leadrelay config (they migrate a store at start).
    config_path = write_config(work / "bare.yaml", sqlite_config(work / "bare.db", {}))
    return _load_app(ctx, work, loader, duration, "bare-flask", BARE_APP, config_path, "served")


def _receiver_only(ctx: BenchContext, work: Path, loader: str, duration: float) -> MeasuredLoad:
    config_path, _db_path = leadrelay_config(work, "receiver-only")
    return _load_app(
        ctx, work, loader, duration, "receiver-only", RECEIVER_ONLY_APP, config_path, "accepted"
    )


def _load_app(
    ctx: BenchContext,
    work: Path,
    loader: str,
    duration: float,
    name: str,
    app: str,
    config_path: Path,
    per: str,
) -> MeasuredLoad:
    port = free_port()
    server = gunicorn_process(f"ingest-{name}", work, config_path, port, app=app, run_worker=False)
    with running(server):
        server.wait_http_ready(f"http://127.0.0.1:{port}/healthz")
        return measured_load(
            server,
            per,
            loader=loader,
            port=port,
            duration=duration,
            tag=f"{name[:4]}{uuid.uuid4().hex[:6]}",
            work_dir=work,
            connections=ctx.connections,
        )


def leadrelay_config(work: Path, name: str) -> tuple[Path, Path]:
    """SQLite store + the CSV sink of the example config (its deliveries are stored too)."""
    db_path = work / f"{name}.db"
    config = sqlite_config(db_path, {"archive": {"type": "csv", "path": str(work / f"{name}.csv")}})
    return write_config(work / f"{name}.yaml", config), db_path


def _leadrelay(
    ctx: BenchContext, work: Path, loader: str, duration: float
) -> tuple[MeasuredLoad, dict[str, Any], dict[str, Any] | None]:
    config_path, db_path = leadrelay_config(work, "leadrelay")
    port = free_port()
    server = gunicorn_process("ingest-leadrelay", work, config_path, port, run_worker=False)
    profile = None
    with running(server):
        server.wait_http_ready(f"http://127.0.0.1:{port}/readyz")
        profiler = _start_profiler(work, server.pid, duration) if ctx.profile else None
        try:
            measured = measured_load(
                server,
                "accepted",
                loader=loader,
                port=port,
                duration=duration,
                tag=f"lr{uuid.uuid4().hex[:6]}",
                work_dir=work,
                connections=ctx.connections,
            )
        finally:
            if profiler is not None:
                profile = _finish_profiler(profiler, work)
    result = measured.load
    # The server is stopped: whatever it answered 2xx must be in the file now.
    stored = stored_event_ids(db_path)
    missing = result.accepted_ids - stored
    counts = sqlite_counts(db_path)
    check = {
        "answered_2xx": result.ok,
        "answered_2xx_with_event_id": len(result.accepted_ids),
        "events_in_db": counts["events"],
        # Acknowledged but not moved into the tables: no worker ran (`inbox.py`).
        "events_journaled": counts["journaled"],
        "deliveries_in_db": sum(counts["deliveries"].values()),
        "missing_from_db": len(missing),
        "duplicates_sent": result.wrapped,
        "every_2xx_committed": not missing and len(result.accepted_ids) == result.ok,
    }
    if missing:
        raise BenchmarkError(f"{len(missing)} events answered 2xx are not in the database")
    require_all_accepted(counts)
    return measured, check, profile


def _start_profiler(work: Path, master_pid: int, duration: float) -> subprocess.Popen[bytes]:
    py_spy = BIN / "py-spy"
    if not py_spy.exists():
        raise BenchmarkError("--profile needs py-spy (.venv/bin/pip install py-spy)")
    return subprocess.Popen(
        [
            str(py_spy),
            "record",
            "--pid",
            str(master_pid),
            "--subprocesses",
            "--nonblocking",
            # Only threads holding the GIL: where the CPU goes (waits on the commit or
            # the socket release the GIL and are left out).
            "--gil",
            "--rate",
            "200",
            "--format",
            "raw",
            "--duration",
            str(max(1, int(duration))),
            "--output",
            str(work / "profile.txt"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=(work / "py-spy.log").open("wb"),
    )


def _finish_profiler(profiler: subprocess.Popen[bytes], work: Path) -> dict[str, Any]:
    try:
        profiler.wait(timeout=60)
    except subprocess.TimeoutExpired:
        profiler.kill()
        profiler.wait(timeout=10)
    from benchmarks.profile import summarize

    return summarize(work / "profile.txt")
