"""JSON log lines and the handler that writes them (one `write` per line, no handler lock)."""

from __future__ import annotations

import io
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from leadrelay.core.logs import JsonFormatter, LineHandler, fields


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    log = logging.getLogger("leadrelay.test_logs")
    log.propagate = False
    log.setLevel(logging.INFO)
    yield log
    log.handlers.clear()


def attach(log: logging.Logger, stream: object) -> LineHandler:
    handler = LineHandler(stream)  # type: ignore[arg-type]
    handler.setFormatter(JsonFormatter())
    log.addHandler(handler)
    return handler


def test_a_record_is_one_json_line_with_its_fields(logger: logging.Logger, tmp_path: Path) -> None:
    path = tmp_path / "log"
    with path.open("w") as stream:
        attach(logger, stream)
        logger.info("POST %s %s", "/webhooks/gitleads", 200, extra=fields(event_id="evt_1"))

    (line,) = path.read_text().splitlines()
    record = json.loads(line)
    assert record["msg"] == "POST /webhooks/gitleads 200"
    assert record["event_id"] == "evt_1"
    assert record["level"] == "info"
    assert record["logger"] == "leadrelay.test_logs"


def test_an_exception_is_logged_by_type_and_message_without_traceback(
    logger: logging.Logger, tmp_path: Path
) -> None:
    path = tmp_path / "log"
    with path.open("w") as stream:
        attach(logger, stream)
        try:
            raise ValueError("bad value")
        except ValueError as exc:
            logger.error("failed", exc_info=exc)

    record = json.loads(path.read_text())
    assert record["error"] == "ValueError: bad value"
    assert "Traceback" not in path.read_text()


def test_lines_from_many_threads_are_never_interleaved(
    logger: logging.Logger, tmp_path: Path
) -> None:
    # Long lines, so that a write split between threads would show as broken JSON.
    path = tmp_path / "log"
    threads, per_thread = 8, 300
    padding = "x" * 1500

    def write_lines(thread: int) -> None:
        for n in range(per_thread):
            logger.info("line", extra=fields(thread=thread, n=n, padding=padding))

    with path.open("w") as stream:
        attach(logger, stream)
        workers = [threading.Thread(target=write_lines, args=(t,)) for t in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)

    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert sorted((r["thread"], r["n"]) for r in records) == [
        (t, n) for t in range(threads) for n in range(per_thread)
    ]


def test_long_lines_through_a_slow_pipe_are_never_torn(logger: logging.Logger) -> None:
    # Longer than a pipe's atomic write (4 KiB), read slowly: each write blocks part-way,
    # and another thread's line must not land in the middle.
    read_end, write_end = os.pipe()
    received = bytearray()

    def read_slowly() -> None:
        with os.fdopen(read_end, "rb", buffering=0) as pipe:
            while chunk := pipe.read(1024):
                received.extend(chunk)
                time.sleep(0.0005)

    reader = threading.Thread(target=read_slowly)
    reader.start()
    threads, per_thread = 4, 10
    with os.fdopen(write_end, "w") as stream:
        attach(logger, stream)
        workers = [
            threading.Thread(
                target=lambda t=t: [
                    logger.info("long", extra=fields(thread=t, n=n, padding="y" * 20_000))
                    for n in range(per_thread)
                ]
            )
            for t in range(threads)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
    reader.join(timeout=60)

    records = [json.loads(line) for line in received.decode().splitlines()]
    assert sorted((r["thread"], r["n"]) for r in records) == [
        (t, n) for t in range(threads) for n in range(per_thread)
    ]


def test_a_stream_without_a_file_descriptor_still_gets_the_line(
    logger: logging.Logger,
) -> None:
    # pytest and embedding applications swap stderr for in-memory streams.
    stream = io.StringIO()
    attach(logger, stream)

    logger.info("hello", extra=fields(source="gitleads"))

    assert json.loads(stream.getvalue())["source"] == "gitleads"


def test_records_below_the_level_are_not_written(logger: logging.Logger, tmp_path: Path) -> None:
    path = tmp_path / "log"
    with path.open("w") as stream:
        handler = attach(logger, stream)
        handler.setLevel(logging.WARNING)
        logger.info("quiet")
        logger.warning("loud")

    assert [json.loads(line)["msg"] for line in path.read_text().splitlines()] == ["loud"]
