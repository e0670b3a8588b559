"""Helpers for the operational tests: gunicorn as a real process, raw HTTP, a recording
destination, read-only looks at the store and the Prometheus files.

Every wait is bounded by a deadline; every server runs in its own session and is killed
as a process group, so a failed test never leaves a gunicorn worker holding a port.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import requests
from flask import Flask, Response, request
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from leadrelay.core.store.store import Store
from tests.conftest import SECRETS
from tests.fakes.server import RunningServer, serve
from tests.process import ServerProcess, free_port
from tests.signing import sign

REPO = Path(__file__).resolve().parents[2]
GUNICORN_CONF = REPO / "deploy" / "gunicorn.conf.py"
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
POLL_S = 0.05

SECRET = SECRETS["gitleads"]  # the GitLeads secret of every ops config


def venv_bin(name: str) -> str:
    """A console script of the interpreter running the tests (the project's venv)."""
    return str(Path(sys.executable).with_name(name))


def wait_until(
    condition: Callable[[], Any], *, timeout: float, message: str | Callable[[], str]
) -> Any:
    """Poll `condition` until it returns something truthy; fail with `message` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(message() if callable(message) else message)
        time.sleep(POLL_S)


# -- server processes -----------------------------------------------------------------------


class GunicornProcess(ServerProcess):
    """`gunicorn -c deploy/gunicorn.conf.py`, configured only through the environment."""

    def __init__(
        self,
        config_path: Path,
        *,
        processes: int,
        threads: int = 8,
        run_worker: bool = True,
        log_level: str = "INFO",
        extra_env: dict[str, str] | None = None,
    ) -> None:
        port = free_port()
        self.metrics_dir = config_path.parent / f"prometheus-{port}"  # PROMETHEUS_MULTIPROC_DIR
        env = {
            **os.environ,
            "LEADRELAY_CONFIG": str(config_path),
            "LEADRELAY_BIND": f"127.0.0.1:{port}",
            "LEADRELAY_PROCESSES": str(processes),
            "LEADRELAY_THREADS": str(threads),
            "LEADRELAY_WORKER": "1" if run_worker else "0",
            "LEADRELAY_LOG_LEVEL": log_level,
            "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir),
            **(extra_env or {}),
        }
        super().__init__(
            [venv_bin("gunicorn"), "-c", str(GUNICORN_CONF)],
            port=port,
            stderr_path=config_path.parent / f"gunicorn-{port}.log",
            env=env,
            cwd=REPO,
            ready_timeout=READY_TIMEOUT_S,
            stop_timeout=STOP_TIMEOUT_S,
        )


# -- requests -------------------------------------------------------------------------------


def gitleads_payload(n: int, **data: Any) -> dict[str, Any]:
    """A distinct, valid GitLeads lead.created event per `n` (a run-unique id inside)."""
    return {
        "event": "lead.created",
        "timestamp": f"2026-04-24T10:{n // 60 % 60:02d}:{n % 60:02d}Z",
        "data": {
            "id": f"lead_{n}",
            "signal_type": "stargazer",
            "signal_source": "competitor/their-sdk",
            "github_username": f"dev{n}",
            "name": f"Dev Number{n}",
            "email": f"dev{n}@example.com",
            "company": "Acme",
            **data,
        },
    }


def encode(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def post_signed(
    base_url: str,
    body: bytes,
    *,
    provider: str = "gitleads",
    source: str | None = None,
    secret: str = SECRET,
    timeout: float = 20.0,
) -> requests.Response:
    """POST a correctly signed body on a fresh connection (so gunicorn processes share load)."""
    headers = {**sign(provider, body, secret), "Connection": "close"}
    return requests.post(
        f"{base_url}/webhooks/{source or provider}", data=body, headers=headers, timeout=timeout
    )


def raw_http(port: int, request_bytes: bytes, *, timeout: float = 20.0) -> tuple[int, bytes]:
    """Send exact bytes, read until the server closes; (status, body). Nothing normalizes
    the request on the way, unlike `requests`."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        # The server may answer and close before reading all of an oversized request.
        with suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request_bytes)
        received = bytearray()
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    if not head:
        raise AssertionError("the server closed the connection without an answer")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        body = dechunk(body)
    return status, body


def dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return bytes(out)


def chunked(body: bytes, chunk_size: int = 65536) -> bytes:
    """`body` in HTTP/1.1 chunked transfer coding, terminating chunk included."""
    parts = [
        f"{len(body[i : i + chunk_size]):x}\r\n".encode() + body[i : i + chunk_size] + b"\r\n"
        for i in range(0, len(body), chunk_size)
    ]
    return b"".join(parts) + b"0\r\n\r\n"


# -- the store, read-only -------------------------------------------------------------------


@contextmanager
def sqlite_readonly(db_path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection: looking must never take the write lock the server needs."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        yield conn
    finally:
        conn.close()


def sqlite_moved_in(db_path: Path) -> None:
    """Move every event the server journaled into the tables, as any read of the store
    does first (`Store.settle`), so what the answers said was stored is counted there."""
    settle(f"sqlite:///{db_path}")


def settle(url: str) -> None:
    store = Store(url)
    try:
        store.settle()
    finally:
        store.close()


def sqlite_counts(db_path: Path) -> dict[str, int]:
    sqlite_moved_in(db_path)
    with sqlite_readonly(db_path) as conn:
        return {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
            for table in ("events", "dedup_keys", "deliveries")
        }


def sqlite_event_body(db_path: Path, event_id: str) -> bytes | None:
    sqlite_moved_in(db_path)
    with sqlite_readonly(db_path) as conn:
        row = conn.execute("SELECT body FROM events WHERE event_id = ?", (event_id,)).fetchone()
    return None if row is None else bytes(row[0])


def delivery_statuses(db_path: Path) -> Counter[str]:
    sqlite_moved_in(db_path)
    with sqlite_readonly(db_path) as conn:
        rows = conn.execute("SELECT status, count(*) FROM deliveries GROUP BY status").fetchall()
    return Counter({status: n for status, n in rows})


@contextmanager
def postgres_schema(base_url: str) -> Iterator[str]:
    """A private PostgreSQL schema for a module or a test; dropped afterwards."""
    import psycopg

    schema = f"lr_ops_{uuid.uuid4().hex[:10]}"
    dsn = pg_dsn(base_url)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in base_url else "?"
    try:
        yield f"{base_url}{separator}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def pg_dsn(url: str) -> str:
    """A psycopg DSN from a SQLAlchemy URL (`options=-csearch_path…` is kept)."""
    return url.replace("postgresql+psycopg://", "postgresql://")


def postgres_counts(url: str) -> dict[str, int]:
    import psycopg

    settle(url)
    with psycopg.connect(pg_dsn(url)) as conn:
        counts = {}
        for table in ("events", "dedup_keys", "deliveries"):
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608
            counts[table] = int(row[0]) if row else 0
        return counts


def postgres_event_body(url: str, event_id: str) -> bytes | None:
    import psycopg

    settle(url)
    with psycopg.connect(pg_dsn(url)) as conn:
        row = conn.execute("SELECT body FROM events WHERE event_id = %s", (event_id,)).fetchone()
    return None if row is None else bytes(row[0])


# -- metrics --------------------------------------------------------------------------------


def scrape(base_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET /metrics as {(sample name, sorted labels): value}."""
    response = requests.get(f"{base_url}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    return parse_metrics(response.text)


def parse_metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def metric(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def per_process_counter(metrics_dir: Path, name: str, **labels: str) -> dict[int, float]:
    """One counter's value in each gunicorn process's multiprocess file, by pid."""
    values: dict[int, float] = {}
    for path in metrics_dir.glob("counter_*.db"):
        pid = int(path.stem.split("_")[1])
        for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):
            _metric, sample, sample_labels, _help = json.loads(key)
            if sample == name and sample_labels == labels:
                values[pid] = values.get(pid, 0.0) + value
    return values


# -- a destination that records what it is sent ---------------------------------------------


class RecordingDestination:
    """An HTTP endpoint for the webhook connector: records every request, answers 200 (or
    what `answer` says), thread-safe."""

    def __init__(self, answer: Callable[[dict[str, str], bytes], Response] | None = None):
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self._lock = threading.Lock()
        self._answer = answer
        self.app = Flask("recording-destination")

        @self.app.post("/<path:_path>")
        def hook(_path: str) -> Response:
            headers = dict(request.headers)
            body = request.get_data()
            with self._lock:
                self.requests.append((headers, body))
            if self._answer is not None:
                return self._answer(headers, body)
            return Response("ok", status=200)

    def webhook_ids(self) -> Counter[str]:
        with self._lock:
            return Counter(headers.get("Webhook-Id", "") for headers, _ in self.requests)

    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    @contextmanager
    def running(self) -> Iterator[RunningServer]:
        with serve(self.app) as server:
            yield server
