"""What every HTTP connector decides the same way: outcomes, Retry-After, batches, secrets.

One table says what a refused or failed HTTP call means (RFC 9110 statuses):

| answer                              | outcome      | why                                      |
| ----------------------------------- | ------------ | ---------------------------------------- |
| none (network error; status 0)      | Retryable    | nothing reached the destination          |
| 408 Request Timeout, any 5xx        | Retryable    | the destination's trouble, not the lead's |
| 429 Too Many Requests               | RateLimited  | wait as Retry-After says; not an attempt |
| any other 4xx (and 3xx, 1xx)        | Permanent    | the same request would be refused again  |

Connectors map their destination's own error codes onto the same three kinds
(`Failure`) before building an outcome, so the table is written once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import Enum
from typing import TypeVar

from pydantic import SecretStr

from leadrelay.core.delivery.contract import Permanent, RateLimited, Retryable

T = TypeVar("T")


class Failure(Enum):
    """What a failed call means for its events."""

    RETRY = "retry"
    RATE_LIMITED = "rate_limited"
    PERMANENT = "permanent"


def status_failure(status: int) -> Failure:
    """The table above, for an HTTP status (0 or below 100: no answer at all)."""
    if status == 429:
        return Failure.RATE_LIMITED
    if status < 100 or status == 408 or status >= 500:
        return Failure.RETRY
    return Failure.PERMANENT


def failure_outcome(
    failure: Failure, message: str, *, retry_after: float
) -> Retryable | RateLimited | Permanent:
    """The outcome of a failure; `retry_after` (seconds) is used only for a rate limit."""
    if failure is Failure.RATE_LIMITED:
        return RateLimited(message, retry_after)
    if failure is Failure.RETRY:
        return Retryable(message)
    return Permanent(message)


def classify_status(
    status: int, message: str, *, retry_after: float
) -> Retryable | RateLimited | Permanent:
    """The outcome of a call answered with the (non-2xx) `status`."""
    return failure_outcome(status_failure(status), message, retry_after=retry_after)


def parse_retry_after(value: str | None, default: float, *, now: datetime | None = None) -> float:
    """Seconds to wait from a Retry-After header, in either form RFC 9110 allows.

    `120` (delta-seconds) or `Wed, 21 Oct 2015 07:28:00 GMT` (an HTTP-date, counted from
    `now`); a date in the past means no wait. `default` when absent or unreadable.
    """
    if not value or not value.strip():
        return default
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return default
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """`items` in consecutive batches of at most `size`, in order."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


# What a secret is shown as: pydantic's SecretStr mask, so every output masks alike.
MASK = str(SecretStr("secret"))

_SECRETISH = re.compile(
    r"(?i)(bearer\s+|token=|access_token=|sessionid=|password=|xox[abposr]-)[^\s&\"']+"
)


def scrub(text: str, *secrets: str | SecretStr | None) -> str:
    """Remove secret values (and anything that looks like a token) from an error text."""
    for secret in secrets:
        value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        if value:
            text = text.replace(value, MASK)
    return _SECRETISH.sub(lambda m: m.group(1) + MASK, text)
