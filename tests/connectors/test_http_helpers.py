"""The helpers every HTTP connector shares: the status table, Retry-After, batches, scrubbing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from leadrelay.connectors._http import (
    MASK,
    Failure,
    chunks,
    classify_status,
    parse_retry_after,
    scrub,
    status_failure,
)
from leadrelay.core.delivery.contract import Permanent, RateLimited, Retryable

NOW = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "failure"),
    [
        pytest.param(0, Failure.RETRY, id="no-answer"),
        pytest.param(408, Failure.RETRY, id="request-timeout"),
        pytest.param(500, Failure.RETRY, id="server-error"),
        pytest.param(502, Failure.RETRY, id="bad-gateway"),
        pytest.param(503, Failure.RETRY, id="unavailable"),
        pytest.param(599, Failure.RETRY, id="last-5xx"),
        pytest.param(429, Failure.RATE_LIMITED, id="too-many-requests"),
        pytest.param(400, Failure.PERMANENT, id="bad-request"),
        pytest.param(401, Failure.PERMANENT, id="unauthorized"),
        pytest.param(403, Failure.PERMANENT, id="forbidden"),
        pytest.param(404, Failure.PERMANENT, id="not-found"),
        pytest.param(409, Failure.PERMANENT, id="conflict"),
        pytest.param(422, Failure.PERMANENT, id="unprocessable"),
        pytest.param(499, Failure.PERMANENT, id="last-4xx"),
        pytest.param(302, Failure.PERMANENT, id="redirect"),
    ],
)
def test_status_table(status: int, failure: Failure) -> None:
    assert status_failure(status) is failure


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        pytest.param(503, Retryable("down"), id="retryable-keeps-message"),
        pytest.param(429, RateLimited("down", 7.5), id="rate-limit-carries-wait"),
        pytest.param(422, Permanent("down"), id="permanent-keeps-message"),
    ],
)
def test_classify_status_builds_the_outcome(
    status: int, expected: Retryable | RateLimited | Permanent
) -> None:
    assert classify_status(status, "down", retry_after=7.5) == expected


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        pytest.param("120", 120.0, id="delta-seconds"),
        pytest.param(" 30 ", 30.0, id="delta-seconds-padded"),
        pytest.param("0", 0.0, id="zero"),
        pytest.param("-5", 0.0, id="negative-is-no-wait"),
        pytest.param("Wed, 21 Oct 2015 07:30:00 GMT", 120.0, id="http-date-ahead"),
        pytest.param("Wednesday, 21-Oct-15 07:29:00 GMT", 60.0, id="obsolete-rfc850-date"),
        pytest.param("Wed, 21 Oct 2015 07:00:00 GMT", 0.0, id="http-date-past"),
        pytest.param(None, 9.0, id="absent"),
        pytest.param("", 9.0, id="empty"),
        pytest.param("soon", 9.0, id="unreadable"),
    ],
)
def test_retry_after_in_both_forms(header: str | None, seconds: float) -> None:
    assert parse_retry_after(header, 9.0, now=NOW) == pytest.approx(seconds)


def test_chunks_keep_order_and_size() -> None:
    assert [list(c) for c in chunks(list(range(5)), 2)] == [[0, 1], [2, 3], [4]]
    assert list(chunks([], 3)) == []


def test_scrub_masks_given_secrets_and_token_shapes() -> None:
    text = scrub("key s3cr3t-value; header Bearer abc.def xoxb-123-456", SecretStr("s3cr3t-value"))

    assert "s3cr3t-value" not in text
    assert "abc.def" not in text
    assert "xoxb-123-456" not in text
    assert text == f"key {MASK}; header Bearer {MASK} xoxb-{MASK}"
