"""A gunicorn worker that reads requests with waitress: slow clients cost a buffer, not a
thread.

gunicorn's threaded worker hands a connection to a request thread as soon as it is
readable, and the thread then reads the headers and body itself, with no time limit: a
few connections trickling a byte at a time hold every thread, and the receiver stops
answering. waitress reads each request in one event loop (no thread per connection) and
hands it to a thread only once the whole request has arrived, so slow clients wait in
the loop while whole requests are served. gunicorn stays the process manager: it binds
the socket, forks, restarts dead processes, runs the hooks and enforces its heartbeat.

Nothing changes for the application: a request reaches Flask complete and the answer is
sent after the view returns, so a 2xx still follows the commit. The errors waitress
answers itself (a body over the limit, a malformed request) are JSON like the app's.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from typing import Any

from gunicorn.workers.base import Worker
from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser, ParsingError
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask, ThreadedTaskDispatcher

from leadrelay.core.ingest.settings import ServerConfig

# What the event loop may hold open at once; each connection costs a file descriptor
# and at most one buffered request, never a thread.
CONNECTION_LIMIT = 1000
# A connection with no bytes moving for this long is closed (idle keep-alive or stalled).
CHANNEL_TIMEOUT_S = 30
_LOOP_TICK_S = 1.0
_ERROR_CODES = {
    400: "bad_request",
    413: "payload_too_large",
    431: "headers_too_large",
}


class _JsonErrorTask(ErrorTask):
    """waitress's own error answers, as the receiver's JSON error body."""

    def execute(self) -> None:
        error = self.request.error
        code = _ERROR_CODES.get(error.code, "http_error")
        message = str(error.body)
        if error.code == 400 and "chunk" in message.lower():
            code = "invalid_body"
        body = json.dumps({"error": code, "message": message}).encode("utf-8")
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class _Parser(HTTPRequestParser):  # type: ignore[misc]
    def parse_header(self, header_plus: bytes) -> None:
        super().parse_header(header_plus)
        # waitress lets Transfer-Encoding win, as HTTP/1.1 allows; a proxy in front that
        # let Content-Length win would see a different request (smuggling): refuse both.
        if self.chunked and "CONTENT_LENGTH" in self.headers:
            raise ParsingError("both Content-Length and Transfer-Encoding")


class _Channel(HTTPChannel):  # type: ignore[misc]
    parser_class = _Parser
    error_task_class = _JsonErrorTask


class _Server(TcpWSGIServer):
    channel_class = _Channel


def adjustments(*, threads: int, max_body_bytes: int, keepalive: int) -> Adjustments:
    return Adjustments(
        threads=threads,
        connection_limit=CONNECTION_LIMIT,
        channel_timeout=max(CHANNEL_TIMEOUT_S, keepalive),
        # Bodies far over the largest source limit are refused before they are buffered;
        # waitress counts chunked framing too, so the exact limits (the server's, each
        # source's) are the app's to enforce, with its JSON answer.
        max_request_body_size=max_body_bytes + max(64 * 1024, max_body_bytes // 4),
        max_request_header_size=64 * 1024,
        ident="leadrelay",
        asyncore_use_poll=True,  # select() stops at 1024 descriptors
        expose_tracebacks=False,
    )


class WaitressWorker(Worker):  # type: ignore[misc]
    """`worker_class = "leadrelay.core.app.waitress_worker.WaitressWorker"`."""

    def run(self) -> None:
        # The queue-depth warning fires on every burst; the metrics show the backlog.
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)
        socket_map: dict[int, Any] = {}
        dispatcher = ThreadedTaskDispatcher()
        dispatcher.set_thread_count(self.cfg.threads)
        adj = adjustments(
            threads=self.cfg.threads,
            max_body_bytes=_body_limit(self.wsgi),
            keepalive=self.cfg.keepalive,
        )
        servers = []
        for listener in self.sockets:
            sock: socket.socket = listener.sock
            servers.append(
                _Server(
                    self.wsgi,
                    socket_map,
                    _sock=sock,
                    dispatcher=dispatcher,
                    adj=adj,
                    bind_socket=False,
                    sockinfo=(sock.family, sock.type, sock.proto, sock.getsockname()),
                )
            )
        parent = os.getppid()
        while self.alive:
            self.notify()
            wasyncore.loop(timeout=_LOOP_TICK_S, map=socket_map, use_poll=True, count=1)
            if os.getppid() != parent:  # the master is gone
                break
        self._drain(servers, socket_map, dispatcher)

    def _drain(self, servers: list[_Server], socket_map: dict[int, Any], dispatcher: Any) -> None:
        """Stop accepting, then finish the requests already read (bounded by gunicorn's
        graceful_timeout): their answers are written by the loop, so it keeps turning."""
        for server in servers:
            server.del_channel()  # the listening socket stays open: gunicorn owns it
        deadline = time.monotonic() + self.cfg.graceful_timeout
        while time.monotonic() < deadline and _busy(socket_map, dispatcher):
            self.notify()
            wasyncore.loop(timeout=0.05, map=socket_map, use_poll=True, count=1)
        dispatcher.shutdown(cancel_pending=True, timeout=1)
        wasyncore.close_all(socket_map)


def _body_limit(app: Any) -> int:
    """The receiver's limit (the largest of the server's and the sources' limits); the
    default limit for any other WSGI app (the benchmarks' bare Flask app has none)."""
    limit = getattr(app, "config", {}).get("MAX_CONTENT_LENGTH")
    return int(limit) if limit else ServerConfig().max_body_bytes


def _busy(socket_map: dict[int, Any], dispatcher: Any) -> bool:
    if dispatcher.active_count or dispatcher.queue:
        return True
    return any(
        isinstance(channel, HTTPChannel) and channel.total_outbufs_len
        for channel in socket_map.values()
    )
