"""Signed timestamps: a request signed too long ago (or too far ahead) is refused.

Schemes that sign a timestamp with the body (Standard Webhooks, many plain HMAC senders)
bound how long a captured request can be replayed. The timestamp is only trusted once the
signature over it has matched, so callers check it after verifying.
"""

from __future__ import annotations

import re
from datetime import timedelta

from leadrelay.core.ingest.providers.base import SignatureError

_DIGITS = re.compile(r"[0-9]{1,16}")
# 1e11 seconds is the year 5138: a value this large is in milliseconds.
_MILLISECONDS_FROM = 10**11


def unix_seconds(value: str, header_name: str, *, milliseconds: bool = False) -> float:
    """The time in a timestamp header (integer Unix seconds; also milliseconds if allowed)."""
    if not _DIGITS.fullmatch(value):
        unit = "seconds or milliseconds" if milliseconds else "seconds"
        raise SignatureError("malformed", f"{header_name} must be integer Unix {unit}")
    number = int(value)
    if milliseconds and number >= _MILLISECONDS_FROM:
        return number / 1000
    return float(number)


def check_fresh(signed_at: float, now: float, header_name: str, tolerance: timedelta) -> None:
    """Raise SignatureError ("stale" or "future") unless `signed_at` is within `tolerance`
    of `now` (both Unix seconds)."""
    skew = now - signed_at
    limit = tolerance.total_seconds()
    if skew > limit:
        raise SignatureError(
            "stale", f"{header_name} is older than the tolerance of {_seconds(limit)}"
        )
    if -skew > limit:
        raise SignatureError(
            "future", f"{header_name} is further ahead than the tolerance of {_seconds(limit)}"
        )


def _seconds(value: float) -> str:
    return f"{value:g}s"
