"""A local HTTP destination for the webhook connector: records when each event arrived,
optionally after a fixed delay (a slow destination)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOOK_PATH = "/hook"


class Recorder:
    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.arrivals: dict[str, float] = {}  # webhook-id (the event id) -> first arrival
        self.times: list[float] = []  # every arrival, in order
        self.repeats: Counter[str] = Counter()
        self._lock = threading.Lock()

    def record(self, event_id: str) -> None:
        now = time.monotonic()
        with self._lock:
            self.times.append(now)
            if event_id in self.arrivals:
                self.repeats[event_id] += 1
            else:
                self.arrivals[event_id] = now

    def arrived_between(self, start: float, end: float) -> int:
        with self._lock:
            return sum(1 for t in self.times if start <= t < end)


def _handler(recorder: Recorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a real destination would
        # Headers and body go out in two writes: with Nagle on, the body waits for the
        # client's delayed ACK (40 ms) and the destination would look slow.
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            recorder.record(self.headers.get("webhook-id", ""))
            if recorder.delay_s:
                time.sleep(recorder.delay_s)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def recording_server(delay_s: float = 0.0) -> Iterator[tuple[Recorder, str]]:
    """A recorder on 127.0.0.1 and a free port; yields it and the URL to POST to."""
    recorder = Recorder(delay_s)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(recorder))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="recorder", daemon=True)
    thread.start()
    try:
        yield recorder, f"http://127.0.0.1:{server.server_port}{HOOK_PATH}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
