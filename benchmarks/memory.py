"""6. Peak memory of `connectors serve` under the ingest load of benchmark 1.

`connectors serve` (gunicorn master + one worker process with request threads and the
delivery worker, CSV sink, SQLite) takes the full-speed load; then the peak resident set
(VmHWM in /proc/<pid>/status) of the master and of each child is read before stopping it.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from benchmarks.common import (
    BenchContext,
    free_port,
    running,
    serve_process,
)
from benchmarks.ingest import leadrelay_config
from benchmarks.load import choose_loader, run_load

FULL_DURATION_S = 20.0


def run(ctx: BenchContext) -> dict[str, Any]:
    work = ctx.directory("memory")
    loader = choose_loader(ctx.loader)
    duration = ctx.seconds(FULL_DURATION_S)
    config_path, _db_path = leadrelay_config(work, "memory")
    port = free_port()
    server = serve_process("memory-serve", work, config_path, port)
    with running(server):
        server.wait_http_ready(f"http://127.0.0.1:{port}/readyz")
        idle = _memory(server.pid)
        load = run_load(
            loader,
            port,
            duration,
            tag=f"me{uuid.uuid4().hex[:6]}",
            work_dir=work,
            connections=ctx.connections,
            collect_ids=False,
        )
        loaded = _memory(server.pid)
    peak = sum(p["peak_rss_mb"] for p in loaded)
    return {
        "command": "connectors serve (gunicorn master + 1 worker process, 8 threads, "
        "delivery worker on, CSV sink, SQLite)",
        "load_req_per_s": round(load.req_per_s, 1),
        "duration_s": duration,
        "peak_rss_mb": round(peak, 1),
        "largest_process_peak_rss_mb": round(max(p["peak_rss_mb"] for p in loaded), 1),
        "idle_rss_mb": round(sum(p["rss_mb"] for p in idle), 1),
        "processes": loaded,
    }


def _memory(root_pid: int) -> list[dict[str, Any]]:
    """VmHWM/VmRSS of a process and all its descendants."""
    found = []
    pending = [root_pid]
    while pending and len(found) < 64:
        pid = pending.pop()
        status = _status(pid)
        if status is None:
            continue
        found.append(
            {
                "pid": pid,
                "role": "master" if pid == root_pid else "worker",
                "peak_rss_mb": round(status.get("VmHWM", 0) / 1024, 1),
                "rss_mb": round(status.get("VmRSS", 0) / 1024, 1),
            }
        )
        pending.extend(_children(pid))
    return found


def _status(pid: int) -> dict[str, int] | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            values[key] = int(rest.split()[0])
    return values


def _children(pid: int) -> list[int]:
    children: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            children.extend(int(p) for p in (task / "children").read_text().split())
    except OSError:
        pass
    return children
