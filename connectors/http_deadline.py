"""A deadline for a whole HTTP call made with `requests`.

`requests`' timeout bounds each socket operation, not the call: a destination that
trickles its answer a byte at a time, each byte within the timeout, holds the delivery
thread (and the delivery's lease) as long as it likes. Sessions built by `session()`
note the connections each call uses; when the call's deadline passes, those sockets are
shut down, so the blocked read fails at once and the call ends as a network error.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_calls = threading.local()


class _TrackedHTTPConnection(HTTPConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        _note_in_use(self)
        super().request(*args, **kwargs)


class _TrackedHTTPSConnection(HTTPSConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        _note_in_use(self)
        super().request(*args, **kwargs)


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _TrackedHTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _TrackedHTTPSConnection


def _note_in_use(connection: HTTPConnection) -> None:
    in_use: list[HTTPConnection] | None = getattr(_calls, "connections", None)
    if in_use is not None:
        in_use.append(connection)


class _DeadlineAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


def session() -> requests.Session:
    """A Session whose calls made inside `deadline()` end when the deadline passes."""
    built = requests.Session()
    adapter = _DeadlineAdapter()
    built.mount("http://", adapter)
    built.mount("https://", adapter)
    return built


@contextmanager
def deadline(seconds: float) -> Iterator[threading.Event]:
    """Bound the calls this thread makes inside the block to `seconds` in all; the event
    yielded is set if the deadline cut a call short."""
    in_use: list[HTTPConnection] = []
    expired = threading.Event()

    def cut() -> None:
        expired.set()
        for connection in list(in_use):
            sock = getattr(connection, "sock", None)
            if sock is not None:
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(seconds, cut)
    timer.daemon = True
    _calls.connections = in_use
    timer.start()
    try:
        yield expired
    finally:
        timer.cancel()
        _calls.connections = None
