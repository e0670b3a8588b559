"""Durations as users write them in YAML and on the command line: `30s`, `2m`, `6h`, `30d`.

Imports nothing of ours, so every layer (ingest, delivery, app) can read durations alike.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


def parse_duration(value: Any) -> timedelta:
    """`30s`, `2m`, `1h`, `30d`, or a number of seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("expected a duration like 30s, 10m, 6h or 30d")
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"expected a duration like 30s, 10m, 6h or 30d, got {value!r}")
    number, unit = match.groups()
    try:
        return timedelta(seconds=float(number) * _UNIT_SECONDS[unit])
    except OverflowError:
        raise ValueError(f"duration {value!r} is too large") from None


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def moment(value: str, now: datetime) -> datetime:
    """An ISO time (UTC unless it says otherwise), or a duration meaning that long before
    `now` (`2h`, `7d`); ValueError, saying why, for anything else or out of range."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        try:
            return now - parse_duration(value)
        except ValueError:
            raise ValueError(f"{value!r} is neither an ISO time nor a duration like 2h") from None
        except OverflowError:
            raise ValueError(f"{value!r} is further back than the calendar goes") from None
    try:
        # In UTC now: a time at the calendar's edge could not be compared in the store.
        return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except OverflowError:
        raise ValueError(f"{value!r} is out of range") from None
