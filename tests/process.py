"""Run `connectors serve` as a real process on a free port, for tests that need the real
WSGI server, real sockets and real process death.

    with ServeProcess(config_path) as server:          # graceful stop at the end
        requests.post(f"{server.base_url}/webhooks/gitleads", ...)

    with killed_after(ServeProcess(config_path)) as server:   # SIGKILL at the end (fast)
        ...

`start()` returns once `GET /healthz` answers (bounded by `ready_timeout`), or raises with
the process's stderr. The server runs in its own session, so `kill()` (SIGKILL) and
`stop()` (SIGTERM, then SIGKILL) reach the gunicorn master and its workers alike.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import requests
import yaml

READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
_POLL_INTERVAL_S = 0.05


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def connectors_command() -> list[str]:
    """The `connectors` console script of this interpreter's environment."""
    script = Path(sys.executable).with_name("connectors")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "leadrelay.core.cli"]


def write_config(path: Path, data: dict[str, Any]) -> Path:
    """Write a config mapping as YAML (what a user would put in connectors.yaml)."""
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def run_connectors(
    args: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """Run one `connectors …` command to completion (for commands that exit by themselves)."""
    return subprocess.run(
        [*connectors_command(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


class ServeProcess:
    """`connectors serve --config <path>` on 127.0.0.1 and a free port."""

    def __init__(
        self,
        config_path: str | Path,
        port: int | None = None,
        *,
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        ready_timeout: float = READY_TIMEOUT_S,
    ) -> None:
        self.config_path = Path(config_path)
        self.port = port or free_port()
        self.extra_args = list(extra_args)
        self.env = env
        self.ready_timeout = ready_timeout
        self.stderr_path = self.config_path.with_name(f"serve-{self.port}.stderr.log")
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("the server is not started")
        return self._process.pid

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def start(self) -> ServeProcess:
        command = [
            *connectors_command(),
            "--plain-logs",
            "serve",
            "--config",
            str(self.config_path),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            *self.extra_args,
        ]
        # Appended to, so a restart on the same port keeps the earlier run's log.
        self._stderr = self.stderr_path.open("ab")
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._stderr,
            stderr=self._stderr,
            env=self.env,
            cwd=self.config_path.parent,
            start_new_session=True,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.kill()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.returncode() is not None:
                raise RuntimeError(
                    f"connectors serve exited with {self.returncode()}:\n{self.stderr_text()}"
                )
            try:
                if requests.get(self.url("/healthz"), timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(_POLL_INTERVAL_S)
        raise TimeoutError(
            f"connectors serve not ready within {self.ready_timeout}s:\n{self.stderr_text()}"
        )

    def returncode(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def stderr_text(self) -> str:
        if self._stderr is not None:
            self._stderr.flush()
        try:
            return self.stderr_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def _signal_group(self, signum: int) -> None:
        if self._process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signum)

    def kill(self) -> None:
        """SIGKILL the whole process group (a crash: no cleanup runs in the server)."""
        self._signal_group(signal.SIGKILL)
        self._reap(STOP_TIMEOUT_S)

    def stop(self) -> None:
        """Graceful shutdown (SIGTERM to the group), SIGKILL if it does not finish in time."""
        if self._process is None:
            return
        self._signal_group(signal.SIGTERM)
        try:
            self._process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
        self._reap(STOP_TIMEOUT_S)

    def _reap(self, timeout: float) -> None:
        if self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=timeout)
            # The master is gone; make sure no orphaned worker keeps the port or the db.
            self._signal_group(signal.SIGKILL)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


@contextmanager
def killed_after(server: ServeProcess) -> Iterator[ServeProcess]:
    """Start `server` and SIGKILL it at the end: a fast teardown for tests where graceful
    shutdown is not what is being tested (gunicorn's takes a few seconds)."""
    server.start()
    try:
        yield server
    finally:
        server.kill()
