"""What every benchmark shares: the machine, processes we start and always stop, signed
GitLeads bodies, SQLite counts and percentiles.

Every server binds 127.0.0.1 on a free port; every wait has a deadline; every process is
started in its own session so that stopping it reaches its children (gunicorn workers).
"""

from __future__ import annotations

import json
import math
import os
import platform
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import requests
import yaml

from leadrelay.core.ingest.providers.registry import provider_for

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SOURCE = "gitleads"
SECRET = "bench-gitleads-secret"
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
_POLL_S = 0.05


class BenchmarkError(Exception):
    """A benchmark could not run (a server did not start, a check failed)."""


# -- the machine ----------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    cpu_model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu_model": cpu_model,
        "cores": os.cpu_count(),
        "memory_gib": round(_mem_total_kib() / 1024 / 1024, 1),
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def load_average() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def _mem_total_kib() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# -- ports and processes --------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ManagedProcess:
    """A child process in its own session, with its output in a log file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    cwd: Path = REPO_ROOT
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        if self.process is None:
            raise BenchmarkError(f"{self.name} is not started")
        return self.process.pid

    def start(self) -> ManagedProcess:
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
        )
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_http_ready(self, url: str, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise BenchmarkError(f"{self.name} exited early:\n{self.log_tail()}")
            try:
                if requests.get(url, timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(_POLL_S)
        raise BenchmarkError(f"{self.name} not ready within {timeout:g}s:\n{self.log_tail()}")

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM the session, SIGKILL it if it has not exited in time; idempotent."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self._signal(signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=timeout)
        # The leader may be gone while a worker lingers: the whole session goes.
        self._signal(signal.SIGKILL)
        with suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=timeout)
        if self._log is not None:
            self._log.close()
            self._log = None

    def _signal(self, signum: int) -> None:
        assert self.process is not None
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def session_cpu_s(leader: int) -> float:
    """utime + stime of every process in the leader's session (a gunicorn master and its
    workers, as `ManagedProcess` starts them), in seconds, from /proc/<pid>/stat."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == leader:  # field 6, the session id
            total += int(fields[11]) + int(fields[12])  # fields 14 and 15
    return total / _CLOCK_TICKS


@contextmanager
def running(process: ManagedProcess) -> Iterator[ManagedProcess]:
    """Start `process` and stop it when the block ends, whatever happens inside."""
    try:
        yield process.start()
    finally:
        process.stop()


def gunicorn_process(
    name: str,
    work_dir: Path,
    config_path: Path,
    port: int,
    *,
    app: str | None = None,
    run_worker: bool,
    processes: int | None = None,
    threads: int | None = None,
) -> ManagedProcess:
    """The production server: `gunicorn -c deploy/gunicorn.conf.py` (optionally another app
    under exactly the same settings)."""
    metrics_dir = work_dir / f"prometheus-{name}"
    metrics_dir.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "LEADRELAY_CONFIG": str(config_path),
        "LEADRELAY_BIND": f"127.0.0.1:{port}",
        "LEADRELAY_WORKER": "1" if run_worker else "0",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    if processes is not None:
        env["LEADRELAY_PROCESSES"] = str(processes)
    if threads is not None:
        env["LEADRELAY_THREADS"] = str(threads)
    argv = [str(BIN / "gunicorn"), "-c", str(REPO_ROOT / "deploy" / "gunicorn.conf.py")]
    if app:
        argv.append(app)
    return ManagedProcess(name, argv, env, work_dir / f"{name}.log")


def connectors_process(name: str, work_dir: Path, args: Sequence[str]) -> ManagedProcess:
    """`connectors <args>` from this environment (the console script users run)."""
    argv = [str(BIN / "connectors"), *args]
    return ManagedProcess(name, argv, dict(os.environ), work_dir / f"{name}.log")


def serve_process(
    name: str, work_dir: Path, config_path: Path, port: int, *extra: str
) -> ManagedProcess:
    """`connectors serve` of `config_path` on 127.0.0.1:`port`, plus `extra` options."""
    args = ["serve", "--config", str(config_path), "--host", "127.0.0.1", "--port", str(port)]
    return connectors_process(name, work_dir, [*args, *extra])


def write_config(path: Path, data: Mapping[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(dict(data), sort_keys=False), encoding="utf-8")
    return path


def sqlite_config(db_path: Path, connectors: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "store": f"sqlite:///{db_path}",
        "sources": {SOURCE: {"provider": SOURCE, "secrets": [SECRET]}},
        "connectors": dict(connectors),
    }


# -- request bodies ---------------------------------------------------------------------------


def gitleads_body(tag: str, n: int, *, event: str = "lead.created") -> bytes:
    """A distinct GitLeads event per (`tag`, `n`); `tag` keeps separate runs apart."""
    return json.dumps(
        {
            "event": event,
            "timestamp": f"2026-04-24T10:{n // 60 % 60:02d}:{n % 60:02d}Z",
            "data": {
                "id": f"lead_{tag}_{n}",
                "signal_type": "stargazer",
                "signal_source": "competitor/their-sdk",
                "github_username": f"dev{tag}{n}",
                "name": f"Dev Number{n}",
                "email": gitleads_email(tag, n),
                "company": "Acme",
            },
        },
        separators=(",", ":"),
    ).encode()


def gitleads_email(tag: str, n: int) -> str:
    return f"dev.{tag}.{n}@example.com"


def signature_header() -> str:
    (name,) = provider_for(SOURCE).sign(b"{}", SECRET)
    return name


def signed_headers(body: bytes) -> dict[str, str]:
    return {"Content-Type": "application/json", **provider_for(SOURCE).sign(body, SECRET)}


# -- reading results --------------------------------------------------------------------------


def sqlite_counts(db_path: Path) -> dict[str, Any]:
    """Events (stored or still journaled) and deliveries by status, read-only (never
    blocks the writers in WAL mode). `journaled`: acknowledged events not moved into the
    tables yet (`core/store/inbox.py`); their deliveries do not exist yet."""
    with _readonly(db_path) as conn:
        events = dict(conn.execute("SELECT status, count(*) FROM events GROUP BY status"))
        journaled = dict(conn.execute("SELECT status, count(*) FROM inbox GROUP BY status"))
        deliveries = dict(conn.execute("SELECT status, count(*) FROM deliveries GROUP BY status"))
    for status, count in journaled.items():
        events[status] = events.get(status, 0) + count
    return {
        "events": sum(events.values()),
        "journaled": sum(journaled.values()),
        "event_status": events,
        "deliveries": deliveries,
    }


def require_all_accepted(counts: dict[str, Any]) -> None:
    """Every stored event must be an accepted lead: a quarantined one means the run
    measured the error path (a provider adapter broken in the working tree)."""
    others = {k: v for k, v in counts["event_status"].items() if k != "accepted"}
    if others:
        raise BenchmarkError(f"events not accepted as leads: {others}")


def backlog(db_path: Path) -> int:
    """What is left to deliver: pending deliveries, and events journaled but not moved into
    the tables yet (their deliveries are queued when they are)."""
    with _readonly(db_path) as conn:
        return int(
            conn.execute(
                "SELECT (SELECT count(*) FROM deliveries WHERE status = 'pending')"
                " + (SELECT count(*) FROM inbox)"
            ).fetchone()[0]
        )


def stored_event_ids(db_path: Path) -> set[str]:
    """Every committed event: moved into `events`, or still journaled in `inbox`."""
    with _readonly(db_path) as conn:
        return {
            row[0]
            for row in conn.execute("SELECT event_id FROM events UNION SELECT event_id FROM inbox")
        }


@contextmanager
def _readonly(db_path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        yield conn
    finally:
        conn.close()


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of unsorted values; 0.0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def rounded(value: float, digits: int = 1) -> float:
    return round(float(value), digits)


@dataclass(frozen=True)
class BenchContext:
    """Settings of one benchmark run."""

    work_dir: Path
    scale: float = 1.0
    loader: str = "auto"  # wrk | python | auto
    connections: int = 32
    postgres_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    profile: bool = False

    def seconds(self, full: float, floor: float = 1.0) -> float:
        return max(floor, full * self.scale)

    def count(self, full: int, floor: int) -> int:
        return max(floor, int(full * self.scale))

    def directory(self, name: str) -> Path:
        path = self.work_dir / name
        path.mkdir(parents=True, exist_ok=True)
        return path


def preload_events(
    config: Any, store: Any, count: int, *, tag: str, event: str = "lead.created"
) -> int:
    """Store `count` events with their deliveries, as the receiver would, in groups of 500."""
    from leadrelay.core.ingest.receiver import record_for
    from leadrelay.core.store.store import utcnow

    provider = provider_for(SOURCE)
    records = []
    stored = 0
    for n in range(count):
        body = gitleads_body(tag, n, event=event)
        received_at = utcnow()
        result = provider.parse(
            json.loads(body), source=SOURCE, received_at=received_at, headers={}
        )
        records.append(
            record_for(
                config,
                source=SOURCE,
                provider=provider.name,
                result=result,
                body=body,
                headers={},
                received_at=received_at,
            )
        )
        if len(records) == 500 or n == count - 1:
            stored += sum(not r.duplicate for r in store.submit_many(records))
            records.clear()
    return stored
