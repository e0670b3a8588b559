"""CSV sink: header once, escaping, no duplicate rows, crash repair, concurrent writers."""

from __future__ import annotations

import csv
import errno
import multiprocessing
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from leadrelay.connectors import csv_file
from leadrelay.connectors.csv_file import (
    DEFAULT_COLUMNS,
    CsvConnector,
    CsvOptions,
)
from leadrelay.core.delivery.contract import ConnectionCheckFailed, Delivered, Permanent, Retryable
from leadrelay.core.delivery.registry import connector_class
from leadrelay.core.schema import Activity, LeadEvent
from tests.factories import make_event


def csv_connector(path: Path, **overrides: Any) -> CsvConnector:
    options = CsvOptions.model_validate({"type": "csv", "path": str(path), **overrides})
    return CsvConnector("archive", options)


def read_rows(path: Path, delimiter: str = ",") -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle, delimiter=delimiter))


def data_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_registry_resolves_the_csv_type() -> None:
    assert connector_class("csv") is CsvConnector


def test_default_columns_follow_the_design_order(tmp_path: Path) -> None:
    path = tmp_path / "leads.csv"
    event = make_event(
        activity=Activity(kind="star", text="Starred", url="https://x.example", campaign="Q2"),
        tags=["oss", "python"],
        score=7.5,
        stage="MQL",
    )

    assert csv_connector(path).send([event]) == [Delivered("appended to leads.csv")]

    header, row = read_rows(path)
    assert header == list(DEFAULT_COLUMNS)
    assert header[:3] == ["event_id", "occurred_at", "received_at"]
    assert header[-4:] == ["activity_kind", "activity_text", "activity_url", "campaign"]
    cells = dict(zip(header, row, strict=True))
    assert cells["event_id"] == event.event_id
    assert cells["occurred_at"] == "2026-04-24T10:31:00+00:00"
    assert cells["lead_key"] == "email:jane@example.com"
    assert cells["tags"] == "oss, python"
    assert cells["score"] == "7.5"
    assert cells["activity_kind"] == "star"
    assert cells["campaign"] == "Q2"
    assert cells["phone"] == ""
    assert path.read_bytes().endswith(b"\r\n")


def test_custom_columns_and_delimiter(tmp_path: Path) -> None:
    path = tmp_path / "leads.csv"
    connector = csv_connector(path, columns=["email", "event_id", "bio", "score"], delimiter=";")
    event = make_event(bio="likes; semicolons", score=3.0)

    connector.send([event])

    assert read_rows(path, ";") == [
        ["email", "event_id", "bio", "score"],
        ["jane@example.com", event.event_id, "likes; semicolons", "3"],
    ]
    assert connector.preview(event) == {
        "email": "jane@example.com",
        "event_id": event.event_id,
        "bio": "likes; semicolons",
        "score": "3",
    }


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        (["event_id", "emial"], "unknown column(s) emial"),
        (["event_id", "email", "email"], "listed twice: email"),
        (["email"], "must include event_id"),
    ],
)
def test_columns_are_validated(tmp_path: Path, columns: list[str], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        csv_connector(tmp_path / "x.csv", columns=columns)


def test_header_is_written_once_across_sends_and_instances(tmp_path: Path) -> None:
    path = tmp_path / "leads.csv"
    first = csv_connector(path)
    first.send([make_event(), make_event()])
    first.send([make_event()])
    second = csv_connector(path)
    second.send([make_event(), make_event()])

    rows = read_rows(path)
    assert rows.count(list(DEFAULT_COLUMNS)) == 1
    assert rows[0] == list(DEFAULT_COLUMNS)
    assert len(rows) == 6


def test_an_empty_existing_file_gets_the_header(tmp_path: Path) -> None:
    path = tmp_path / "leads.csv"
    path.touch()
    csv_connector(path).send([make_event()])
    assert read_rows(path)[0] == list(DEFAULT_COLUMNS)


@pytest.mark.parametrize("prefix", ["=", "+", "-", "@", "\t", "\r", "\n"])
def test_formula_prefixes_are_neutralized(tmp_path: Path, prefix: str) -> None:
    path = tmp_path / "leads.csv"
    payload = f'{prefix}HYPERLINK("https://evil.example","x")'
    event = make_event(company=payload, full_name=f"{prefix}cmd|' /C calc'!A0")

    csv_connector(path).send([event])

    [row] = data_rows(path)
    assert row["company"] == "'" + payload
    assert row["full_name"] == f"'{prefix}cmd|' /C calc'!A0"
    assert row["title"] == "Staff Engineer"  # harmless cells are untouched


def test_numbers_are_not_escaped_but_text_numbers_are(tmp_path: Path) -> None:
    path = tmp_path / "leads.csv"
    event = make_event(score=-1, phone="+49 30 1234567", title="-1")

    csv_connector(path).send([event])

    [row] = data_rows(path)
    assert row["score"] == "-1"
    assert row["phone"] == "'+49 30 1234567"
    assert row["title"] == "'-1"


def test_escaping_can_be_turned_off(tmp_path: Path) -> None:
    path = tmp_path / "leads.csv"
    csv_connector(path, escape_formulas=False).send([make_event(company="=1+1")])
    assert data_rows(path)[0]["company"] == "=1+1"


def test_cells_with_newlines_quotes_and_delimiters_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "leads.csv"
    bio = 'Line one\r\nline "two", with comma\nline three'
    event = make_event(bio=bio)
    connector = csv_connector(path, columns=["event_id", "bio"])

    connector.send([event])
    connector.send([make_event()])
    # A fresh instance indexes the multi-line row correctly.
    assert csv_connector(path, columns=["event_id", "bio"]).send([event]) == [
        Delivered("already in file")
    ]

    rows = data_rows(path)
    assert rows[0]["bio"] == bio
    assert len(rows) == 2


def test_duplicate_event_ids_are_written_once(tmp_path: Path) -> None:
    path = tmp_path / "leads.csv"
    connector = csv_connector(path)
    event = make_event()

    first = connector.send([event, event])
    # The engine retries after a crash between write and acknowledgement.
    again = connector.send([event, make_event()])
    after_restart = csv_connector(path).send([event])

    assert first == [Delivered("appended to leads.csv"), Delivered("already in file")]
    assert again[0] == Delivered("already in file")
    assert again[1] == Delivered("appended to leads.csv")
    assert after_restart == [Delivered("already in file")]
    assert [r["event_id"] for r in data_rows(path)].count(event.event_id) == 1
    assert len(data_rows(path)) == 2


def test_each_appended_row_comes_back_as_its_events_request(tmp_path: Path) -> None:
    # The worker keeps it on the attempt instead of building the preview again.
    path = tmp_path / "leads.csv"
    connector = csv_connector(path)
    events = [make_event(), make_event()]

    outcomes = connector.send(events)

    assert [o.request for o in outcomes if isinstance(o, Delivered)] == [
        connector.preview(event) for event in events
    ]
    assert [dict(o.request or {}) for o in outcomes] == data_rows(path)


def test_rows_appended_by_another_instance_are_seen(tmp_path: Path) -> None:
    path = tmp_path / "leads.csv"
    mine, theirs = csv_connector(path), csv_connector(path)
    shared = make_event()
    mine.send([make_event()])

    theirs.send([shared])

    assert mine.send([shared]) == [Delivered("already in file")]
    assert len(data_rows(path)) == 2


def test_a_replaced_file_is_indexed_again(tmp_path: Path) -> None:
    path = tmp_path / "leads.csv"
    connector = csv_connector(path)
    event = make_event()
    connector.send([event])
    path.rename(tmp_path / "leads-archived.csv")

    assert connector.send([event]) == [Delivered("appended to leads.csv")]
    assert len(data_rows(path)) == 1


@pytest.mark.parametrize(
    "partial",
    [
        b"evt_partial,2026-04-24T10:3",  # cut mid-row
        b'evt_partial,"a cell with\r\n',  # cut after a line break inside a quoted cell
        b"evt_partial,x\r",  # cut between CR and LF
    ],
)
def test_a_partial_last_row_is_removed_before_appending(tmp_path: Path, partial: bytes) -> None:
    path = tmp_path / "leads.csv"
    kept = make_event()
    csv_connector(path).send([kept])
    intact = path.read_bytes()
    with path.open("ab") as handle:
        handle.write(partial)
    follow_up = make_event()

    outcomes = csv_connector(path).send([follow_up])

    assert outcomes == [Delivered("appended to leads.csv")]
    assert path.read_bytes().startswith(intact)
    assert b"evt_partial" not in path.read_bytes()
    assert [r["event_id"] for r in data_rows(path)] == [kept.event_id, follow_up.event_id]


def test_a_batch_cut_short_by_a_crash_is_completed_on_retry(tmp_path: Path) -> None:
    path = tmp_path / "leads.csv"
    batch = [make_event(full_name=f"Lead {i}") for i in range(3)]
    csv_connector(tmp_path / "complete.csv").send(batch)
    complete = (tmp_path / "complete.csv").read_bytes()
    # The process died inside the write of the third row, before acknowledging anything.
    path.write_bytes(complete[: complete.rindex(batch[2].event_id.encode()) + 20])

    outcomes = csv_connector(path).send(batch)

    assert outcomes == [
        Delivered("already in file"),
        Delivered("already in file"),
        Delivered("appended to leads.csv"),
    ]
    assert path.read_bytes() == complete


def test_a_failed_write_is_cut_back_and_retryable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "leads.csv"
    connector = csv_connector(path)
    connector.send([make_event()])
    before = path.read_bytes()
    real_write = os.write

    def disk_full_halfway(fd: int, data: Any) -> int:
        real_write(fd, bytes(data)[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as patch:
        patch.setattr(csv_file.os, "write", disk_full_halfway)
        [outcome] = connector.send([make_event()])

    assert isinstance(outcome, Retryable)
    assert outcome.message.endswith("No space left on device (ENOSPC)")
    assert path.read_bytes() == before
    assert isinstance(connector.send([make_event()])[0], Delivered)
    assert len(data_rows(path)) == 2


def test_a_partial_header_is_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "leads.csv"
    path.write_bytes(b"event_id,occurred_a")
    csv_connector(path).send([make_event()])
    rows = read_rows(path)
    assert rows[0] == list(DEFAULT_COLUMNS)
    assert len(rows) == 2


def test_a_file_with_other_columns_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "leads.csv"
    csv_connector(path, columns=["event_id", "email"]).send([make_event()])
    before = path.read_bytes()

    [outcome] = csv_connector(path).send([make_event()])

    assert isinstance(outcome, Permanent)
    assert "has the columns event_id,email" in outcome.message
    assert path.read_bytes() == before
    with pytest.raises(ConnectionCheckFailed, match="has the columns event_id,email"):
        csv_connector(path).check_connection()


def test_unwritable_path_is_retryable_with_the_os_reason(tmp_path: Path) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("x")
    missing_directory = tmp_path / "nope" / "leads.csv"

    [blocked] = csv_connector(not_a_directory / "leads.csv").send([make_event()])
    [missing] = csv_connector(missing_directory).send([make_event()])

    assert isinstance(blocked, Retryable)
    assert "Not a directory (ENOTDIR)" in blocked.message
    assert isinstance(missing, Retryable)
    assert "No such file or directory (ENOENT)" in missing.message
    assert str(missing_directory.parent) in missing.message


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_permission_denied_is_retryable(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        [outcome] = csv_connector(locked / "leads.csv").send([make_event()])
    finally:
        locked.chmod(0o700)
    assert isinstance(outcome, Retryable)
    assert "Permission denied (EACCES)" in outcome.message


def test_check_connection(tmp_path: Path) -> None:
    path = tmp_path / "leads.csv"
    csv_connector(path).check_connection()
    assert not path.exists()  # checking writes no data file
    csv_connector(path).send([make_event()])
    csv_connector(path).check_connection()

    with pytest.raises(ConnectionCheckFailed, match="does not exist"):
        csv_connector(tmp_path / "nope" / "leads.csv").check_connection()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConnectionCheckFailed, match="does not exist"):
        csv_connector(blocker / "leads.csv").check_connection()


def test_new_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "leads.csv"
    csv_connector(path).send([make_event()])
    assert path.stat().st_mode & 0o077 == 0


# -- concurrency --------------------------------------------------------------------------


def _append_from_process(path: str, events: list[LeadEvent], batch: int, start_line: Any) -> None:
    connector = csv_connector(Path(path))
    start_line.wait(timeout=30)  # both processes start writing together
    for start in range(0, len(events), batch):
        outcomes = connector.send(events[start : start + batch])
        assert all(isinstance(o, Delivered) for o in outcomes), outcomes


@pytest.fixture
def fast_fsync_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory on tmpfs when there is one: hundreds of fsyncs cost nothing there."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(dir=shm, prefix="leadrelay-csv-") as directory:
        yield Path(directory)


def test_two_processes_append_concurrently(fast_fsync_dir: Path) -> None:
    path = fast_fsync_dir / "leads.csv"
    shared = [make_event(full_name=f"S{i}", bio="multi\nline") for i in range(200)]
    own_a = [make_event(full_name=f"A{i}") for i in range(100)]
    own_b = [make_event(full_name=f"B{i}") for i in range(100)]
    # Both deliver the same 200 events in the same order (racing on every event_id, and
    # on the header), then their own 100; without the lock rows are duplicated.
    work = {"a": shared + own_a, "b": shared + own_b}
    context = multiprocessing.get_context("spawn")
    start_line = context.Barrier(2)
    processes = [
        context.Process(target=_append_from_process, args=(str(path), events, 5, start_line))
        for events in work.values()
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
    for process in processes:
        if process.is_alive():
            process.kill()
    assert [p.exitcode for p in processes] == [0, 0]

    rows = read_rows(path)
    assert rows[0] == list(DEFAULT_COLUMNS)
    assert all(len(row) == len(DEFAULT_COLUMNS) for row in rows)
    event_ids = [row[0] for row in rows[1:]]
    expected = {e.event_id for e in own_a + own_b + shared}
    assert len(event_ids) == len(expected) == 400
    assert set(event_ids) == expected
