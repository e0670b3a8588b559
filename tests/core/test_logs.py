"""JSON log lines and the handler that writes them: whole lines, never torn, formatted
outside the lock; INFO lines in batches from a background thread, WARNING at once."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
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


def attach(log: logging.Logger, stream: object, flush_interval_s: float = 0.1) -> LineHandler:
    handler = LineHandler(stream, flush_interval_s=flush_interval_s)
    handler.setFormatter(JsonFormatter())
    log.addHandler(handler)
    return handler


def test_a_record_is_one_json_line_with_its_fields(logger: logging.Logger, tmp_path: Path) -> None:
    path = tmp_path / "log"
    with path.open("w") as stream:
        handler = attach(logger, stream)
        logger.info("POST %s %s", "/webhooks/gitleads", 200, extra=fields(event_id="evt_1"))
        handler.flush()

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
        handler = attach(logger, stream)
        workers = [threading.Thread(target=write_lines, args=(t,)) for t in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
        handler.flush()

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
        handler = attach(logger, stream)
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
        handler.flush()
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


def messages(path: Path) -> list[str]:
    return [json.loads(line)["msg"] for line in path.read_text().splitlines()]


def test_info_lines_wait_for_the_batch_and_a_warning_writes_them_first(
    logger: logging.Logger, tmp_path: Path
) -> None:
    path = tmp_path / "log"
    with path.open("w") as stream:
        # A batch interval no test outlasts: only the warning and flush can write here.
        handler = attach(logger, stream, flush_interval_s=3600)
        logger.info("first")
        logger.info("second")
        assert messages(path) == []  # not written by the logging thread
        logger.warning("third")
        assert messages(path) == ["first", "second", "third"]
        logger.info("fourth")
        assert messages(path) == ["first", "second", "third"]
        handler.flush()
        assert messages(path) == ["first", "second", "third", "fourth"]


def test_the_background_thread_writes_a_batch(logger: logging.Logger, tmp_path: Path) -> None:
    path = tmp_path / "log"
    with path.open("w") as stream:
        attach(logger, stream, flush_interval_s=0.01)
        logger.info("batched")
        deadline = time.monotonic() + 10
        while messages(path) != ["batched"]:
            assert time.monotonic() < deadline, "the batch was never written"
            time.sleep(0.01)


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )


def test_pending_lines_are_written_when_the_process_exits() -> None:
    result = run_python(
        "import logging; from leadrelay.core import logs; logs.configure('INFO');"
        "[logging.getLogger('t').info('line %d', n) for n in range(3)]"
    )
    assert [json.loads(line)["msg"] for line in result.stderr.splitlines()] == [
        "line 0",
        "line 1",
        "line 2",
    ]


def test_a_forked_child_never_writes_its_parents_pending_lines() -> None:
    result = run_python(
        "import logging, os; from leadrelay.core import logs; logs.configure('INFO');"
        "log = logging.getLogger('t'); log.info('parent');"
        "pid = os.fork();\n"
        "if pid == 0:\n    log.info('child'); logging.shutdown(); os._exit(0)\n"
        "os.waitpid(pid, 0)"
    )
    lines = sorted(json.loads(line)["msg"] for line in result.stderr.splitlines())
    assert lines == ["child", "parent"]


def test_the_background_writer_outlives_a_failed_write(logger: logging.Logger) -> None:
    # A full non-blocking pipe refuses a batch (EAGAIN); later batches still go out.
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    try:
        while True:
            os.write(write_end, b"x" * 65536)
    except BlockingIOError:
        pass
    with os.fdopen(write_end, "w") as stream, os.fdopen(read_end, "rb", buffering=0) as pipe:
        handler = attach(logger, stream, flush_interval_s=0.01)
        logger.info("refused")
        deadline = time.monotonic() + 10
        while handler._pending:
            assert time.monotonic() < deadline, "the refused batch was never tried"
            time.sleep(0.01)
        os.set_blocking(read_end, False)
        while True:  # drain the pipe
            try:
                if not pipe.read(65536):
                    break
            except BlockingIOError:
                break
        logger.info("later")
        received = b""
        while b"later" not in received:
            assert time.monotonic() < deadline, "the writer stopped after a failed write"
            try:
                received += pipe.read(65536) or b""
            except BlockingIOError:
                time.sleep(0.01)
