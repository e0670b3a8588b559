"""A TCP proxy that can be taken down and brought back on the same port: a database that
"stops" and "restarts" for the code under test, without touching the shared server.

While down, new connections are refused and open ones are cut, as when PostgreSQL stops.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from types import TracebackType

_ACCEPT_POLL_S = 0.05
_JOIN_TIMEOUT_S = 5.0
_CHUNK = 65536


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, port: int = 0) -> None:
        self.target = (target_host, target_port)
        self.port = port
        self._listener: socket.socket | None = None
        self._stopping = threading.Event()
        self._accept_thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._pumps: list[threading.Thread] = []

    def start(self) -> TcpProxy:
        """Listen (on the same port as before, after a `stop`)."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._stopping.clear()
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name="tcp-proxy-accept", daemon=True
        )
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        """Refuse new connections and cut the open ones."""
        self._stopping.set()
        if self._accept_thread is not None:
            self._accept_thread.join(_JOIN_TIMEOUT_S)
            self._accept_thread = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            sockets, self._sockets = self._sockets, set()
            pumps, self._pumps = self._pumps, []
        for sock in sockets:
            _shut(sock)
        for pump in pumps:
            pump.join(_JOIN_TIMEOUT_S)

    def _accept_loop(self) -> None:
        assert self._listener is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            while not self._stopping.is_set():
                if not selector.select(_ACCEPT_POLL_S):
                    continue
                client, _ = self._listener.accept()
                try:
                    upstream = socket.create_connection(self.target, timeout=5)
                except OSError:
                    client.close()
                    continue
                upstream.settimeout(None)
                with self._lock:
                    self._sockets.update((client, upstream))
                    for source, sink in ((client, upstream), (upstream, client)):
                        pump = threading.Thread(
                            target=_pump, args=(source, sink), name="tcp-proxy-pump", daemon=True
                        )
                        self._pumps.append(pump)
                        pump.start()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(_CHUNK):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        _shut(source)
        _shut(sink)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
