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
from typing import IO, Any, Self

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
    return [sys.executable, "-m", "leadrelay.core.app.cli"]


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


class ServerProcess:
    """A command that serves HTTP on 127.0.0.1:`port` in its own session; ready once
    `GET /healthz` answers 200. Its stdout and stderr both go to `stderr_path`."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        port: int,
        stderr_path: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        ready_timeout: float = READY_TIMEOUT_S,
        stop_timeout: float = STOP_TIMEOUT_S,
    ) -> None:
        self.command = list(command)
        self.port = port
        self.stderr_path = stderr_path
        self.env = env
        self.cwd = cwd
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
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

    def start(self) -> Self:
        # Append mode: a restart on the same port keeps the earlier run's log, and the
        # gunicorn processes sharing this descriptor each write whole lines (O_APPEND).
        self._stderr = self.stderr_path.open("ab")
        self._process = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=self._stderr,
            stderr=self._stderr,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.kill()
            raise
        return self

    def _wait_ready(self) -> None:
        name = Path(self.command[0]).name
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.returncode() is not None:
                raise RuntimeError(f"{name} exited with {self.returncode()}:\n{self.stderr_text()}")
            try:
                if requests.get(self.url("/healthz"), timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(_POLL_INTERVAL_S)
        raise TimeoutError(f"{name} not ready within {self.ready_timeout}s:\n{self.stderr_text()}")

    def returncode(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def stderr_text(self) -> str:
        if self._stderr is not None:
            self._stderr.flush()
        try:
            return self.stderr_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def children(self) -> list[int]:
        """PIDs whose parent is the server's main process (gunicorn's worker processes)."""
        if self._process is None:
            return []
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # Field 4 (after the parenthesised command, which may hold spaces) is the ppid.
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == self._process.pid and fields[0] != "Z":
                found.append(int(entry.name))
        return found

    def _signal_group(self, signum: int) -> None:
        if self._process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signum)

    def kill(self) -> None:
        """SIGKILL the whole process group (a crash: no cleanup runs in the server)."""
        self._signal_group(signal.SIGKILL)
        self._reap()

    def stop(self) -> int | None:
        """Graceful shutdown (SIGTERM to the group), SIGKILL if it does not finish in time.
        Returns the main process's exit code."""
        if self._process is None:
            return None
        self._signal_group(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=self.stop_timeout)
        return self._reap()

    def _reap(self) -> int | None:
        code = None
        if self._process is not None:
            # The main process may be gone; make sure no orphaned worker keeps the port or the db.
            self._signal_group(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = self._process.wait(timeout=self.stop_timeout)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        return code

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class ServeProcess(ServerProcess):
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
        port = port or free_port()
        super().__init__(
            [
                *connectors_command(),
                "--plain-logs",
                "serve",
                "--config",
                str(self.config_path),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                *extra_args,
            ],
            port=port,
            stderr_path=self.config_path.with_name(f"serve-{port}.stderr.log"),
            env=env,
            cwd=self.config_path.parent,
            ready_timeout=ready_timeout,
        )


@contextmanager
def killed_after(server: ServeProcess) -> Iterator[ServeProcess]:
    """Start `server` and SIGKILL it at the end: a fast teardown for tests where graceful
    shutdown is not what is being tested (gunicorn's takes a few seconds)."""
    server.start()
    try:
        yield server
    finally:
        server.kill()
