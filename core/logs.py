"""JSON log lines: one object per line, with the event/delivery fields as keys.

Callers pass structured fields through `extra={"fields": {...}}`; payload bodies and
secrets are never among them. `configure` is called once by the CLI entry points.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import threading
import time
import weakref
from datetime import UTC, datetime
from typing import Any

import orjson

# Characters that end or rewrite a line for some reader (str.splitlines, terminals): a
# request path with %0A in it must not forge a second log line.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape_controls(text: str) -> str:
    """`text` on one line: control characters as \\uXXXX escapes (valid inside JSON)."""
    return _CONTROL.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            # The exception type and message, not the traceback with its local values.
            line["error"] = f"{record.exc_info[0].__name__}: {record.exc_info[1]}"
        return escape_controls(_dumps(line))


# Datetimes and dataclasses go through `default=str` as with the json module, not orjson's
# own forms, so a field reads the same whichever encoder wrote it.
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def _dumps(line: dict[str, Any]) -> str:
    # orjson: a sixth of the receiver's own CPU per request went to this line's encoding.
    try:
        return orjson.dumps(line, default=str, option=_ORJSON_OPTIONS).decode()
    except (orjson.JSONEncodeError, TypeError):  # e.g. an integer past 64 bits
        return json.dumps(line, default=str, ensure_ascii=False)


class PlainFormatter(logging.Formatter):
    """`--plain-logs`: time, level, logger, message, then the structured fields as
    `key=value`, so a human sees the URL, the event and connector, or a 401's reason; one
    line per record whatever the message holds."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and fields:
            line += " " + " ".join(f"{k}={_plain(v)}" for k, v in fields.items() if v is not None)
        return escape_controls(line)


def _plain(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if " " in text or '"' in text or not text else text


# Pending lines at most: if the background writer falls this far behind, the thread
# that logs the next line writes the batch itself, so memory stays bounded.
_MAX_PENDING_LINES = 1000


class LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes each record as one line, formatted outside any lock; INFO and below in batches.

    The receiver logs a line per request. Writing it from the request thread cost 350 µs
    of CPU per request under the ingest benchmark's load (a quarter of the receiver's
    CPU) against 40 µs in a single-thread loop: `os.write` releases the GIL, and under
    load every release hands it to another thread and back. So a record below WARNING
    only joins a list; a background thread writes what has gathered every
    `flush_interval_s` in one write. A WARNING or worse is written at once, after the
    lines pending before it (order is kept). Pending lines are written by `flush`, which
    logging's own exit hook calls, and before the process forks; a process killed with
    SIGKILL loses at most the last `flush_interval_s` of INFO lines.

    Only the write is locked: a line longer than a pipe's atomic write (4 KiB) must not be
    torn by another thread's line.
    """

    def __init__(self, stream: Any = None, *, flush_interval_s: float = 0.1) -> None:
        super().__init__(stream)
        self._flush_interval_s = flush_interval_s
        self._reset_pending()
        _LINE_HANDLERS.add(self)

    def _reset_pending(self) -> None:
        # Also in a forked child: the parent's writing thread did not survive the fork,
        # and its lock may have been held at that moment.
        self._pending: list[bytes] = []
        self._pending_lock = threading.Lock()
        self._has_pending = threading.Event()
        self._writer_started = False

    def handle(self, record: logging.LogRecord) -> bool:
        if not self.filter(record):
            return False
        try:
            fd = self.stream.fileno()
        except (AttributeError, OSError, ValueError):
            with self.lock:  # a stream without a file (tests capture stderr)
                self.emit(record)
            return True
        try:
            data = (self.format(record) + self.terminator).encode("utf-8", "backslashreplace")
            if record.levelno >= logging.WARNING:
                with self.lock:
                    _write(fd, [*self._take_pending(), data])
                return True
            with self._pending_lock:
                self._pending.append(data)
                backlog = len(self._pending) >= _MAX_PENDING_LINES
                start_writer = not self._writer_started
                self._writer_started = True
            if start_writer:
                self._start_writer()
            if backlog:
                self.flush()
            else:
                self._has_pending.set()
        except Exception:
            self.handleError(record)
        return True

    def flush(self) -> None:
        """Write the pending lines now."""
        with self.lock:
            pending = self._take_pending()
            if pending:
                _write(self.stream.fileno(), pending)
            super().flush()

    def _take_pending(self) -> list[bytes]:
        with self._pending_lock:
            pending, self._pending = self._pending, []
            self._has_pending.clear()
        return pending

    def _start_writer(self) -> None:
        try:
            threading.Thread(target=self._write_batches, name="log-writer", daemon=True).start()
        except RuntimeError:  # no thread to be had (interpreter shutdown): write now
            with self._pending_lock:
                self._writer_started = False
            self.flush()

    def _write_batches(self) -> None:
        while True:
            self._has_pending.wait()
            time.sleep(self._flush_interval_s)  # let a batch gather
            try:
                self.flush()
            except Exception:
                # The batch is lost (a full pipe, a full disk), the next one may not be;
                # only a closed stream ends the writer.
                if getattr(self.stream, "closed", False):
                    with self._pending_lock:
                        self._writer_started = False
                    return


def _write(fd: int, lines: list[bytes]) -> None:
    data = b"".join(lines)
    while data:
        data = data[os.write(fd, data) :]


_LINE_HANDLERS: weakref.WeakSet[LineHandler] = weakref.WeakSet()


def _flush_before_fork() -> None:
    # Otherwise the child would inherit the parent's pending lines and write them twice.
    for handler in list(_LINE_HANDLERS):
        with contextlib.suppress(OSError, ValueError):
            handler.flush()


def _reset_in_child() -> None:
    for handler in list(_LINE_HANDLERS):
        handler._reset_pending()


os.register_at_fork(before=_flush_before_fork, after_in_child=_reset_in_child)


def configure(level: str = "INFO", json_lines: bool = True) -> None:
    # Neither formatter shows the caller's file and line, thread or process, and logging
    # would look each of them up for every record (the receiver logs every request); the
    # logging HOWTO's "Optimization" section names these switches.
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = LineHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(PlainFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # urllib3 logs full URLs at DEBUG, and incoming-webhook URLs are secrets.
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    # Migrations run at every start; their step-by-step chatter is noise.
    logging.getLogger("alembic").setLevel(logging.WARNING)


def fields(**values: Any) -> dict[str, Any]:
    """`extra=` for a structured log call: `log.info("...", extra=fields(event_id=...))`."""
    return {"fields": values}
