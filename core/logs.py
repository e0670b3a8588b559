"""JSON log lines: one object per line, with the event/delivery fields as keys.

Callers pass structured fields through `extra={"fields": {...}}`; payload bodies and
secrets are never among them. `configure` is called once by the CLI entry points.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from datetime import UTC, datetime
from typing import Any

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
        return escape_controls(json.dumps(line, default=str, ensure_ascii=False))


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


class LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Formats each record outside the handler lock, then writes the line in one go.

    The stock handler formats and writes under one lock per handler, so with a log line
    per request the receiver's threads queued behind each other's formatting (the ingest
    profile showed the lock's release among its costliest calls). Only the write is
    locked here: a line longer than a pipe's atomic write (4 KiB) must not be torn by
    another thread's line.
    """

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
            with self.lock:
                while data:
                    data = data[os.write(fd, data) :]
        except Exception:
            self.handleError(record)
        return True


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
