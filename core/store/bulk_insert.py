"""Multi-row INSERT statements for the ingest path: one statement per table per group.

Why not SQLAlchemy's executemany: with SQLite, the driver steps the statement once per
row and releases the GIL at every step. Under load the committing thread then waits
behind request threads to get the GIL back, once per row, while it holds the database's
only write lock (benchmarks/README.md has the numbers). A multi-row VALUES is one step,
whatever the group size. The SQL text is cached per row count and values go through the columns' own
SQLAlchemy bind processors, so what is stored is what the Core statements would store.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from itertools import chain
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError

# Bound parameters per statement: SQLite's compiled-in minimum limit (999) everywhere, so
# no build of SQLite or PostgreSQL (65,535) refuses a statement.
MAX_PARAMETERS = 999


class BulkInsert:
    """INSERT INTO `table` (`columns`) VALUES (...), (...) [`suffix`] for rows of tuples."""

    def __init__(
        self, table: Table, columns: Sequence[str], dialect: Dialect, *, suffix: str = ""
    ) -> None:
        self.table = table
        self.columns = tuple(columns)
        # Columns of one type share one processor, so `bind` can tell that a value it has
        # just processed (a row's several timestamps are one `now`) needs no second pass.
        by_type: dict[tuple[type, str], Callable[[Any], Any] | None] = {}
        processed = []
        for at, name in enumerate(self.columns):
            column_type = table.c[name].type
            key = (type(column_type), repr(column_type))
            if key not in by_type:
                by_type[key] = column_type.dialect_impl(dialect).bind_processor(dialect)
            if by_type[key] is not None:
                processed.append((at, by_type[key]))
        self._processed: tuple[tuple[int, Callable[[Any], Any]], ...] = tuple(processed)
        placeholder = "?" if dialect.paramstyle == "qmark" else "%s"
        row = "(" + ", ".join([placeholder] * len(self.columns)) + ")"
        # Identifiers come from the table definitions; every value is a bound parameter.
        head = f"INSERT INTO {table.name} ({', '.join(self.columns)}) VALUES "  # noqa: S608
        tail = f" {suffix}" if suffix else ""

        @lru_cache(maxsize=64)
        def sql(rows: int) -> str:
            return head + ", ".join([row] * rows) + tail

        self._sql = sql
        self.rows_per_statement = max(1, MAX_PARAMETERS // len(self.columns))

    def bind(self, row: Sequence[Any]) -> tuple[Any, ...]:
        """`row` (values in `columns` order) as the driver takes it."""
        if len(row) != len(self.columns):
            raise ValueError(f"{len(row)} values for {len(self.columns)} columns")
        bound = list(row)
        last: tuple[Any, Any, Any] = (None, None, None)  # value, processor, result
        for at, process in self._processed:
            value = bound[at]
            if value is None:
                continue
            if value is last[0] and process is last[1]:
                bound[at] = last[2]
                continue
            bound[at] = process(value)
            last = (value, process, bound[at])
        return tuple(bound)

    def execute(self, conn: Connection, rows: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Insert rows made by `bind`; returns what a RETURNING suffix returns."""
        returned: list[Any] = []
        for start in range(0, len(rows), self.rows_per_statement):
            chunk = rows[start : start + self.rows_per_statement]
            params = tuple(chain.from_iterable(chunk))
            returned.extend(driver_execute(conn, self._sql(len(chunk)), params))
        return returned


def driver_execute(conn: Connection, sql: str, params: tuple[Any, ...]) -> list[Any]:
    """Run `sql` on the DBAPI cursor of `conn`'s transaction; the rows it returns.

    The group commit's leader runs these statements while every other writer waits, and
    SQLAlchemy's execution path (events, execution context, result wrapping) cost more
    CPU there than SQLite's own work on a small group. Errors come out as SQLAlchemy's
    DBAPIError, as they would from `conn.execute`.
    """
    dialect = conn.dialect
    cursor = conn.connection.cursor()
    try:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []
    except dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(
            sql, params, exc, dialect.loaded_dbapi.Error, dialect=dialect
        ) from exc
    finally:
        cursor.close()


# Keys per lookup: the source takes one of the statement's parameters.
_KEYS_PER_LOOKUP = MAX_PARAMETERS - 1


def existing_keys(
    conn: Connection, table: Table, keys: Sequence[tuple[str, str]]
) -> set[tuple[str, str]]:
    """Which of the (source, idempotency key) pairs `table` holds (one of its unique keys).

    One lookup per source, so the database searches the index (a (source, key) IN
    (VALUES ...) scans); it returns only the keys found, usually none: one step.
    """
    keys_by_source: dict[str, list[str]] = {}
    for source, key in keys:
        keys_by_source.setdefault(source, []).append(key)
    found: set[tuple[str, str]] = set()
    for source, source_keys in keys_by_source.items():
        for start in range(0, len(source_keys), _KEYS_PER_LOOKUP):
            chunk = source_keys[start : start + _KEYS_PER_LOOKUP]
            sql = _lookup_sql(table.name, conn.dialect.paramstyle, len(chunk))
            found.update((source, row[0]) for row in driver_execute(conn, sql, (source, *chunk)))
    return found


@lru_cache(maxsize=128)
def _lookup_sql(table_name: str, paramstyle: str, count: int) -> str:
    mark = "?" if paramstyle == "qmark" else "%s"
    keys = ", ".join([mark] * count)
    # Identifiers come from the table definitions; every value is a bound parameter.
    return (
        f"SELECT idempotency_key FROM {table_name} "  # noqa: S608
        f"WHERE source = {mark} AND idempotency_key IN ({keys})"
    )
