"""Load generators: wrk with a Lua script where Debian's wrk is installed, a multiprocess
Python generator otherwise, and a paced sender for latency at a fixed rate.

Every request is a unique, correctly signed GitLeads event; every loop ends at a deadline.
"""

from __future__ import annotations

import http.client
import json
import math
import multiprocessing
import os
import queue
import shutil
import subprocess
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import (
    BenchmarkError,
    gitleads_body,
    percentile,
    rounded,
    signature_header,
    signed_headers,
)

WEBHOOK_PATH = "/webhooks/gitleads"
WRK_SCRIPT = Path(__file__).with_name("wrk_post.lua")
# More than either server answers on a small machine, so wrk never runs out of unique events.
DEFAULT_CAPACITY_PER_S = 9000
_REQUEST_TIMEOUT_S = 10.0
_CHILD_START_TIMEOUT_S = 60.0


@dataclass
class LoadResult:
    tool: str
    connections: int
    duration_s: float
    completed: int  # responses received
    ok: int  # 2xx responses
    non_2xx: int
    socket_errors: int
    sent: int  # requests started (completed + cut off at the end + failed)
    wrapped: int  # times a wrk thread ran out of unique events (0 = all unique)
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    accepted_ids: set[str] = field(default_factory=set, repr=False)

    @property
    def req_per_s(self) -> float:
        return self.completed / self.duration_s if self.duration_s else 0.0

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("accepted_ids")
        data["req_per_s"] = rounded(self.req_per_s)
        data["ok_per_s"] = rounded(self.ok / self.duration_s if self.duration_s else 0.0)
        return data


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def choose_loader(requested: str) -> str:
    if requested == "auto":
        return "wrk" if wrk_available() else "python"
    if requested == "wrk" and not wrk_available():
        raise BenchmarkError("wrk is not installed (apt-get install wrk), use --loader python")
    return requested


def run_load(
    loader: str,
    port: int,
    duration: float,
    *,
    tag: str,
    work_dir: Path,
    connections: int,
    capacity_per_s: int = DEFAULT_CAPACITY_PER_S,
    collect_ids: bool = True,
) -> LoadResult:
    """POST unique signed events to 127.0.0.1:`port` as fast as the server answers."""
    if loader == "wrk":
        return _wrk_load(port, duration, tag, work_dir, connections, capacity_per_s, collect_ids)
    return _python_load(port, duration, tag, connections, collect_ids)


# -- wrk --------------------------------------------------------------------------------------


def _wrk_threads(connections: int) -> int:
    return max(1, min(2, os.cpu_count() or 1, connections))


def write_wrk_requests(
    directory: Path, tag: str, threads: int, per_thread: int, event: str = "lead.created"
) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for thread in range(threads):
        with (directory / f"requests-{thread}.txt").open("w", encoding="utf-8") as out:
            for k in range(per_thread):
                body = gitleads_body(tag, thread + k * threads, event=event)
                signature = next(iter(_signature_values(body)))
                out.write(f"{signature}\t{body.decode()}\n")


def _signature_values(body: bytes) -> list[str]:
    return [v for k, v in signed_headers(body).items() if k != "Content-Type"]


def _wrk_load(
    port: int,
    duration: float,
    tag: str,
    work_dir: Path,
    connections: int,
    capacity_per_s: int,
    collect_ids: bool,
) -> LoadResult:
    threads = _wrk_threads(connections)
    seconds = max(1, math.ceil(duration))
    per_thread = math.ceil(seconds * capacity_per_s / threads)
    request_dir = work_dir / f"wrk-{tag}"
    write_wrk_requests(request_dir, tag, threads, per_thread)
    out_path = work_dir / f"wrk-{tag}.json"
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        f"--timeout={int(_REQUEST_TIMEOUT_S)}s",
        "-s",
        str(WRK_SCRIPT),
        f"http://127.0.0.1:{port}",
        "--",
        str(request_dir),
        signature_header(),
        WEBHOOK_PATH,
        "1" if collect_ids else "0",
    ]
    try:
        completed = subprocess.run(
            command,
            env={**os.environ, "BENCH_WRK_OUT": str(out_path)},
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=False,
        )
        if completed.returncode != 0 or not out_path.exists():
            raise BenchmarkError(f"wrk failed ({completed.returncode}): {completed.stderr}")
        data = json.loads(out_path.read_text())
        ids_path = Path(f"{out_path}.ids")
        ids = set(ids_path.read_text().split()) if collect_ids else set()
    finally:
        shutil.rmtree(request_dir, ignore_errors=True)
    errors = data["errors"]
    latency = data["latency_us"]
    return LoadResult(
        tool="wrk",
        connections=connections,
        duration_s=data["duration_us"] / 1e6,
        completed=data["requests"],
        ok=data["ok"],
        non_2xx=data["other"],
        socket_errors=errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
        sent=data["sent"],
        wrapped=data["wrapped"],
        p50_ms=rounded(latency["p50"] / 1000, 2),
        p90_ms=rounded(latency["p90"] / 1000, 2),
        p99_ms=rounded(latency["p99"] / 1000, 2),
        max_ms=rounded(latency["max"] / 1000, 2),
        accepted_ids=ids,
    )


# -- Python load generator (when wrk is not installed) ------------------------------------------


def _python_load(
    port: int, duration: float, tag: str, connections: int, collect_ids: bool
) -> LoadResult:
    # One process cannot keep a server busy past ~1-2k req/s (the GIL); several can.
    processes = max(2, os.cpu_count() or 1)
    threads = max(1, math.ceil(connections / processes))
    context = multiprocessing.get_context("spawn")
    results: Any = context.Queue()
    ready = context.Semaphore(0)
    go = context.Event()
    children = [
        context.Process(
            target=_python_load_child,
            args=(port, duration, tag, index, processes, threads, collect_ids, ready, go, results),
            daemon=True,
        )
        for index in range(processes)
    ]
    for child in children:
        child.start()
    try:
        for _ in children:
            if not ready.acquire(timeout=_CHILD_START_TIMEOUT_S):
                raise BenchmarkError("a load generator process did not start")
        go.set()
        parts = [results.get(timeout=duration + _REQUEST_TIMEOUT_S + 30) for _ in children]
    finally:
        go.set()
        for child in children:
            child.join(timeout=5)
            if child.is_alive():
                child.kill()
                child.join(timeout=5)
    latencies = [ms for part in parts for ms in part["latencies_ms"]]
    statuses: Counter[int] = Counter()
    for part in parts:
        statuses.update({int(k): v for k, v in part["statuses"].items()})
    ok = sum(n for status, n in statuses.items() if 200 <= status < 300)
    completed = sum(statuses.values())
    return LoadResult(
        tool="python",
        connections=processes * threads,
        duration_s=max(part["elapsed_s"] for part in parts),
        completed=completed,
        ok=ok,
        non_2xx=completed - ok,
        socket_errors=sum(part["errors"] for part in parts),
        sent=sum(part["sent"] for part in parts),
        wrapped=0,
        p50_ms=rounded(percentile(latencies, 50), 2),
        p90_ms=rounded(percentile(latencies, 90), 2),
        p99_ms=rounded(percentile(latencies, 99), 2),
        max_ms=rounded(max(latencies, default=0.0), 2),
        accepted_ids={i for part in parts for i in part["ids"]},
    )


def _python_load_child(
    port: int,
    duration: float,
    tag: str,
    index: int,
    processes: int,
    threads: int,
    collect_ids: bool,
    ready: Any,
    go: Any,
    results: Any,
) -> None:
    lock = threading.Lock()
    totals: dict[str, Any] = {
        "latencies_ms": [],
        "statuses": Counter(),
        "ids": [],
        "errors": 0,
        "sent": 0,
    }
    ready.release()
    go.wait(_CHILD_START_TIMEOUT_S)
    started = time.monotonic()
    deadline = started + duration
    stride = processes * threads

    def send_loop(thread: int) -> None:
        latencies: list[float] = []
        statuses: Counter[int] = Counter()
        ids: list[str] = []
        errors = sent = 0
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=_REQUEST_TIMEOUT_S)
        n = index * threads + thread
        while time.monotonic() < deadline:
            body = gitleads_body(tag, n)
            n += stride
            sent += 1
            began = time.perf_counter()
            try:
                conn.request("POST", WEBHOOK_PATH, body, signed_headers(body))
                response = conn.getresponse()
                answer = response.read()
            except (OSError, http.client.HTTPException):
                errors += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=_REQUEST_TIMEOUT_S)
                continue
            latencies.append((time.perf_counter() - began) * 1000)
            statuses[response.status] += 1
            if collect_ids and 200 <= response.status < 300:
                event_id = json.loads(answer).get("event_id")
                if event_id:
                    ids.append(event_id)
        conn.close()
        with lock:
            totals["latencies_ms"].extend(latencies)
            totals["statuses"].update(statuses)
            totals["ids"].extend(ids)
            totals["errors"] += errors
            totals["sent"] += sent

    workers = [threading.Thread(target=send_loop, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(duration + _REQUEST_TIMEOUT_S + 5)
    totals["elapsed_s"] = time.monotonic() - started
    totals["statuses"] = dict(totals["statuses"])
    results.put(totals)


# -- paced sender -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PacedSend:
    n: int  # the body was gitleads_body(tag, n)
    event_id: str | None
    status: int
    answer: str | None  # the `status` field of the JSON answer ("accepted", ...)
    sent_at: float  # time.monotonic() just before the request
    answered_at: float


def paced_send(
    port: int, rate: float, duration: float, *, tag: str, senders: int = 8
) -> list[PacedSend]:
    """POST `rate` events per second for `duration` seconds on a fixed schedule.

    A scheduler hands each event to a pool of senders at its due time, so one slow answer
    does not delay the events behind it (no coordinated omission).
    """
    total = max(1, int(rate * duration))
    due: queue.Queue[int | None] = queue.Queue()
    records: list[PacedSend] = []
    lock = threading.Lock()

    def sender() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=_REQUEST_TIMEOUT_S)
        try:
            while (n := due.get()) is not None:
                body = gitleads_body(tag, n)
                headers = signed_headers(body)
                sent_at = time.monotonic()
                try:
                    conn.request("POST", WEBHOOK_PATH, body, headers)
                    response = conn.getresponse()
                    answer = response.read()
                    status = response.status
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=_REQUEST_TIMEOUT_S)
                    answer, status = b"{}", 0
                answered_at = time.monotonic()
                reply = json.loads(answer or b"{}") if status else {}
                with lock:
                    records.append(
                        PacedSend(
                            n,
                            reply.get("event_id"),
                            status,
                            reply.get("status"),
                            sent_at,
                            answered_at,
                        )
                    )
        finally:
            conn.close()

    pool = [threading.Thread(target=sender, daemon=True) for _ in range(senders)]
    for thread in pool:
        thread.start()
    start = time.monotonic()
    for n in range(total):
        pause = start + n / rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        due.put(n)
    for _ in pool:
        due.put(None)
    for thread in pool:
        thread.join(_REQUEST_TIMEOUT_S + 5)
    return records
