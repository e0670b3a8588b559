"""CSV sink: one row per lead event, appended atomically, never twice for one `event_id`.

How a batch is appended (all under an exclusive `fcntl.flock` on the sidecar file
`<path>.lock`, so several workers or processes can share one file):

1. Open the file with O_APPEND and bring the in-memory index of `event_id`s up to date.
   The index remembers the device, inode and size it last read, so only rows appended
   since (by this or another process) are read; a different inode, a shrunken file or a
   size that no longer ends a row means the file changed under us, and it is read again.
2. A last row without its line ending is what an interrupted write leaves behind. It was
   never acknowledged (acknowledgement follows the fsync), so it is truncated away and
   the event is written again in full.
3. Events whose `event_id` is already in the file are answered Delivered("already in
   file"): this covers a crash between the write and the acknowledgement.
4. The header (only when the file is new or empty) and all new rows are written with a
   single write, then flushed to disk with fsync before any outcome is returned.

Rows can span lines (quoted cells with newlines): a row ends at a line ending outside
quotes, which is how the reader finds row boundaries (an even number of `"` so far).

Cell formatting: datetimes ISO 8601, `tags` joined with ", ", numbers without a
trailing ".0". With `escape_formulas` (the default), a text cell that starts with `=`,
`+`, `-`, `@`, tab, CR or LF gets a leading `'` so a spreadsheet shows it instead of
running it (OWASP CSV injection). Numbers the sink formats itself (`score`) are never
escaped: `-1` stays a number. A phone number such as `+49 30…` is text from a provider
and is escaped.

OS errors (missing directory, permissions, disk full) are Retryable with the OS reason;
the engine dead-letters after its maximum attempts. A file whose header does not match
`columns` is refused (Permanent) rather than mixed with rows of another layout. The file
is created readable by its owner only: leads are personal data.
"""

from __future__ import annotations

import csv
import errno
import io
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from leadrelay.connectors._mapping import as_text, read_path
from leadrelay.core.delivery.contract import (
    ConnectionCheckFailed,
    Connector,
    ConnectorOptions,
    Delivered,
    Outcome,
    Permanent,
    Retryable,
)
from leadrelay.core.filelock import flock_until
from leadrelay.core.schema import LeadEvent

logger = logging.getLogger(__name__)

# The documented CSV columns (README "Connectors"), in that order.
DEFAULT_COLUMNS: tuple[str, ...] = (
    "event_id",
    "occurred_at",
    "received_at",
    "source",
    "provider",
    "type",
    "provider_event",
    "lead_key",
    "email",
    "first_name",
    "last_name",
    "full_name",
    "title",
    "company",
    "phone",
    "location",
    "website",
    "linkedin_url",
    "github_username",
    "tags",
    "score",
    "stage",
    "activity_kind",
    "activity_text",
    "activity_url",
    "campaign",
)

TAG_SEPARATOR = ", "
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\n")
_LINE_TERMINATOR = "\r\n"
_FILE_MODE = 0o600
_READ_CHUNK = 1 << 20


# Column -> the field path (`connectors._mapping`) it shows. Cells are written as every
# connector writes values (`as_text`), and text cells are subject to formula escaping.
COLUMN_PATHS: dict[str, str] = {
    "event_id": "event.event_id",
    "idempotency_key": "event.idempotency_key",
    "occurred_at": "event.occurred_at",
    "received_at": "event.received_at",
    "source": "event.source",
    "provider": "event.provider",
    "type": "event.type",
    "provider_event": "event.provider_event",
    "lead_key": "key",
    "provider_lead_id": "provider_lead_id",
    "email": "email",
    "first_name": "first_name",
    "last_name": "last_name",
    "full_name": "full_name",
    "title": "title",
    "company": "company",
    "phone": "phone",
    "location": "location",
    "website": "website",
    "linkedin_url": "linkedin_url",
    "linkedin_username": "linkedin_username",
    "github_username": "github_username",
    "github_url": "github_url",
    "bio": "bio",
    "tags": "tags",
    "score": "score",
    "status": "status",
    "stage": "stage",
    "owner": "owner",
    "lead_source": "lead_source",
    "activity_kind": "activity.kind",
    "activity_text": "activity.text",
    "activity_url": "activity.url",
    "campaign": "activity.campaign",
}
# Numbers the sink formats itself: `-1` is a number, not a formula.
_NUMBER_COLUMNS = frozenset({"score"})
KNOWN_COLUMNS: frozenset[str] = frozenset(COLUMN_PATHS)


def neutralize_formula(cell: str) -> str:
    """Prefix `'` to a cell a spreadsheet would run as a formula (OWASP CSV injection)."""
    return "'" + cell if cell.startswith(FORMULA_PREFIXES) else cell


def build_row(event: LeadEvent, columns: Sequence[str], escape_formulas: bool) -> dict[str, str]:
    """The row for one event: column -> the exact cell text written."""
    row: dict[str, str] = {}
    for column in columns:
        value = read_path(event, COLUMN_PATHS[column])
        # Text is written exactly as the provider sent it (a file keeps what a CRM trims).
        cell = value if isinstance(value, str) else as_text(value, list_separator=TAG_SEPARATOR)
        if escape_formulas and column not in _NUMBER_COLUMNS:
            cell = neutralize_formula(cell)
        row[column] = cell
    return row


# -- options ------------------------------------------------------------------------------


class CsvOptions(ConnectorOptions):
    type: Literal["csv"] = "csv"
    path: Path
    columns: list[str] = Field(default_factory=lambda: list(DEFAULT_COLUMNS))
    escape_formulas: bool = True
    delimiter: str = ","
    # How long to wait for another process holding the file before a Retryable outcome.
    lock_timeout: float = Field(default=30.0, gt=0, le=3600)

    @field_validator("columns")
    @classmethod
    def _known_columns(cls, columns: list[str]) -> list[str]:
        unknown = [c for c in columns if c not in KNOWN_COLUMNS]
        if unknown:
            raise ValueError(
                f"unknown column(s) {', '.join(unknown)}; known: {', '.join(sorted(KNOWN_COLUMNS))}"
            )
        duplicated = sorted({c for c in columns if columns.count(c) > 1})
        if duplicated:
            raise ValueError(f"column(s) listed twice: {', '.join(duplicated)}")
        if "event_id" not in columns:
            raise ValueError("must include event_id: it is how the sink avoids duplicate rows")
        return columns

    @field_validator("delimiter")
    @classmethod
    def _one_char_delimiter(cls, delimiter: str) -> str:
        if len(delimiter) != 1 or delimiter in "\"'\r\n":
            raise ValueError("must be one character other than quotes and line breaks")
        return delimiter


# -- file index ---------------------------------------------------------------------------


@dataclass
class _FileIndex:
    """What we know of the file up to `size` bytes, which always ends a complete row."""

    device: int
    inode: int
    size: int = 0
    header: list[str] | None = None
    event_ids: set[str] = field(default_factory=set)

    def add_record(self, record: bytes, delimiter: str) -> None:
        text = record.decode("utf-8", errors="replace")
        cells = next(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter), [])
        if self.header is None:
            self.header = _without_bom(cells)
            return
        if "event_id" in self.header:
            position = self.header.index("event_id")
            if position < len(cells):
                self.event_ids.add(cells[position])


def _without_bom(header: list[str]) -> list[str]:
    """A header as read, minus the byte-order mark a spreadsheet may have saved with it."""
    return [header[0].removeprefix("\ufeff"), *header[1:]] if header else header


class HeaderMismatch(Exception):
    pass


class LockTimeout(Exception):
    pass


# -- connector ----------------------------------------------------------------------------


class CsvConnector(Connector[CsvOptions]):
    type_name: ClassVar[str] = "csv"
    options_model: ClassVar[type[ConnectorOptions]] = CsvOptions
    batch_size: ClassVar[int] = 500
    delivery_guarantee: ClassVar[str] = "once"

    def __init__(self, name: str, options: CsvOptions) -> None:
        super().__init__(name, options)
        self.path = options.path
        self.lock_path = options.path.with_name(options.path.name + ".lock")
        self._index: _FileIndex | None = None
        # flock excludes other processes; this excludes our own threads from the index.
        self._thread_lock = threading.Lock()

    def preview(self, event: LeadEvent) -> dict[str, Any]:
        return build_row(event, self.options.columns, self.options.escape_formulas)

    def send(self, batch: Sequence[LeadEvent]) -> list[Outcome]:
        if not batch:
            return []
        try:
            with self._thread_lock, self._file_lock():
                return self._append(batch)
        except HeaderMismatch as exc:
            return [Permanent(str(exc))] * len(batch)
        except LockTimeout as exc:
            return [Retryable(str(exc))] * len(batch)
        except OSError as exc:
            self._index = None  # whatever we half-did, read the file afresh next time
            return [Retryable(self._os_reason(exc))] * len(batch)

    def check_connection(self) -> None:
        """The directory exists and is writable; an existing file is writable and has our header."""
        directory = self.path.parent
        if not directory.is_dir():
            raise ConnectionCheckFailed(f"directory {directory} does not exist")
        try:
            # Creating the lock file proves the directory is writable for us.
            os.close(os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, _FILE_MODE))
            if self.path.exists():
                # Opening for append writes nothing but proves we may.
                with open(self.path, "a+", encoding="utf-8", newline="") as existing:
                    existing.seek(0)
                    header = next(csv.reader(existing, delimiter=self.options.delimiter), None)
                index = _FileIndex(device=0, inode=0)
                index.header = _without_bom(header) if header else None
                self._require_matching_header(index)
        except HeaderMismatch as exc:
            raise ConnectionCheckFailed(str(exc)) from None
        except OSError as exc:
            raise ConnectionCheckFailed(self._os_reason(exc)) from None

    def close(self) -> None:
        self._index = None

    # -- internals

    def _os_reason(self, exc: OSError) -> str:
        code = errno.errorcode.get(exc.errno or 0, "")
        reason = exc.strerror or str(exc)
        where = exc.filename or self.path
        return f"cannot write {where}: {reason}" + (f" ({code})" if code else "")

    def _file_lock(self) -> _FlockGuard:
        return _FlockGuard(self.lock_path, self.options.lock_timeout)

    def _append(self, batch: Sequence[LeadEvent]) -> list[Outcome]:
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, _FILE_MODE)
        try:
            index = self._current_index(fd)
            self._require_matching_header(index)
            columns = self.options.columns
            writer_buffer = io.StringIO()
            writer = csv.writer(
                writer_buffer, delimiter=self.options.delimiter, lineterminator=_LINE_TERMINATOR
            )
            new_file = index.header is None
            if new_file:
                writer.writerow(columns)
            outcomes: list[Outcome] = []
            written: set[str] = set()
            for event in batch:
                if event.event_id in index.event_ids or event.event_id in written:
                    outcomes.append(Delivered("already in file"))
                    continue
                row = build_row(event, columns, self.options.escape_formulas)
                writer.writerow([row[c] for c in columns])
                written.add(event.event_id)
                outcomes.append(Delivered(f"appended to {self.path.name}", request=row))
            if not written:
                return outcomes
            data = writer_buffer.getvalue().encode("utf-8")
            _write_all(fd, data, rollback_to=index.size)
            os.fsync(fd)
            if new_file:
                _fsync_directory(self.path.parent)
                index.header = list(columns)
            index.size += len(data)
            index.event_ids.update(written)
            return outcomes
        finally:
            os.close(fd)

    def _require_matching_header(self, index: _FileIndex) -> None:
        if index.header is not None and index.header != list(self.options.columns):
            raise HeaderMismatch(
                f"{self.path} has the columns {','.join(index.header)} but this connector "
                f"writes {','.join(self.options.columns)}; set `columns` to match or point "
                "`path` at a new file"
            )

    def _current_index(self, fd: int) -> _FileIndex:
        """The index, read forward from where we stopped, or from scratch if the file changed."""
        stat = os.fstat(fd)
        index = self._index
        if (
            index is None
            or (index.device, index.inode) != (stat.st_dev, stat.st_ino)
            or stat.st_size < index.size
            or (index.size > 0 and os.pread(fd, 1, index.size - 1) != b"\n")
        ):
            index = _FileIndex(device=stat.st_dev, inode=stat.st_ino)
        self._index = None  # only trusted again once brought up to date below
        complete = self._scan(fd, index, stat.st_size)
        if complete < stat.st_size:
            logger.warning(
                "csv connector %r: removing %d bytes of a row left incomplete by an "
                "interrupted write at the end of %s (it was never acknowledged)",
                self.name,
                stat.st_size - complete,
                self.path,
            )
            os.ftruncate(fd, complete)
            os.fsync(fd)
        self._index = index
        return index

    def _scan(self, fd: int, index: _FileIndex, end: int) -> int:
        """Read rows from `index.size` to `end` into the index; return where the last complete
        row ends (any bytes after it are a partial row)."""
        delimiter = self.options.delimiter
        position = index.size
        record = bytearray()
        quotes = 0
        while position < end:
            chunk = os.pread(fd, min(_READ_CHUNK, end - position), position)
            if not chunk:
                break
            position += len(chunk)
            for line in chunk.splitlines(keepends=True):
                record += line
                quotes += line.count(b'"')
                # A line break inside quotes is part of a cell, not the end of the row.
                if line.endswith(b"\n") and quotes % 2 == 0:
                    index.add_record(bytes(record), delimiter)
                    index.size += len(record)
                    record.clear()
                    quotes = 0
        return index.size


class _FlockGuard:
    """Exclusive flock on the sidecar lock file, waiting at most `timeout` seconds."""

    def __init__(self, lock_path: Path, timeout: float) -> None:
        self.lock_path = lock_path
        self.timeout = timeout
        self.fd: int | None = None

    def __enter__(self) -> _FlockGuard:
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, _FILE_MODE)
        deadline = time.monotonic() + self.timeout
        try:
            acquired = flock_until(fd, deadline, first_pause=0.002, max_pause=0.05)
        except OSError:
            os.close(fd)
            raise
        if not acquired:
            os.close(fd)
            raise LockTimeout(f"another process held {self.lock_path} for over {self.timeout:g}s")
        self.fd = fd
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.fd is not None:
            # Closing the descriptor releases the flock.
            os.close(self.fd)
            self.fd = None


def _write_all(fd: int, data: bytes, rollback_to: int) -> None:
    """Write all of `data` at the end of the file; on failure, cut the file back."""
    view = memoryview(data)
    try:
        while view:
            written = os.write(fd, view)
            view = view[written:]
    except OSError:
        try:
            os.ftruncate(fd, rollback_to)
        except OSError:
            logger.warning("could not cut back a failed append; the next send repairs it")
        raise


def _fsync_directory(directory: Path) -> None:
    """Make a newly created file's directory entry durable too."""
    fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
