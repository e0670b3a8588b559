"""Slow clients: connections that send a request one byte at a time and never finish
(for tests/ops/test_slow_clients.py and benchmarks/attacks.py)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

SLOW_CONNECTIONS = 64
TRICKLE_INTERVAL_S = 0.5
MAX_TRICKLE_S = 120.0  # the trickler stops by itself even if a test forgets to


class Tricklers:
    """`count` connections that each send a request one byte at a time, never finishing."""

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.count = count
        self.sockets: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trickle, daemon=True)

    def _request_head(self, n: int) -> bytes:
        head = (
            "POST /webhooks/gitleads HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: application/json\r\nContent-Length: 100000\r\n"
        )
        # Even connections finish their headers and trickle the body; odd ones trickle
        # the headers themselves.
        return (head + "\r\n").encode() if n % 2 == 0 else head.encode()[:-2]

    def start(self) -> None:
        for n in range(self.count):
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            sock.sendall(self._request_head(n))
            self.sockets.append(sock)
        self._thread.start()

    def _trickle(self) -> None:
        deadline = time.monotonic() + MAX_TRICKLE_S
        while not self._stop.wait(TRICKLE_INTERVAL_S) and time.monotonic() < deadline:
            for n, sock in enumerate(self.sockets):
                with suppress(OSError):
                    sock.send(b"{" if n % 2 == 0 else b"X")

    def open_count(self) -> int:
        """How many of the connections the server has not closed."""
        still_open = 0
        for sock in self.sockets:
            try:
                sock.setblocking(False)
                still_open += sock.recv(1, socket.MSG_PEEK) != b""
            except BlockingIOError:
                still_open += 1
            except OSError:
                pass
        return still_open

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for sock in self.sockets:
            sock.close()


@contextmanager
def trickling(port: int) -> Iterator[Tricklers]:
    tricklers = Tricklers(port, SLOW_CONNECTIONS)
    try:
        tricklers.start()
        yield tricklers
    finally:
        tricklers.stop()
