"""Field readers shared by the adapters: emails, timestamps, numbers, text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from leadrelay.core.ingest.providers import fields
from leadrelay.core.schema import fingerprint


@pytest.mark.parametrize(
    "email",
    [
        "jane@example.com",
        "j.doe+tag@sub.example.co.uk",
        "Jane@Example.COM",
        "x@a.bc",
        "o'brien@example.ie",
        "josé@exämple.de",
        "a" * 64 + "@example.com",
    ],
)
def test_valid_emails(email: str) -> None:
    assert fields.is_valid_email(email)


@pytest.mark.parametrize(
    "email",
    [
        "[email\u00a0protected]",
        "[email protected]",
        "jane",
        "@example.com",
        "jane@",
        "jane@localhost",
        "jane@@example.com",
        "jane@ex@ample.com",
        "jane doe@example.com",
        "jane@.com",
        "jane@example.",
        # What HubSpot and Salesforce refuse as INVALID_EMAIL (RFC 5321 / 5322 syntax).
        "dotty..dots@example..com",
        "jane..doe@example.com",
        "jane@example..com",
        ".jane@example.com",
        "jane.@example.com",
        "a" * 65 + "@example.com",
        "a" * 70 + "@example.com",
        "jane@" + "d" * 64 + ".com",
        "jane@" + ("d" * 60 + ".") * 5 + "com",
        '"jane doe"@example.com',
        "jane@-example.com",
    ],
)
def test_invalid_emails(email: str) -> None:
    assert not fields.is_valid_email(email)


_LOCAL_PARTS = ["a", "j.doe+tag", "a..b", ".a", "a.", "x" * 64, "x" * 65, "o'brien", "é", ""]
_DOMAINS = [
    "example.com",
    "Example.COM",
    "localhost",
    "x.test",
    "x.local",
    "x.onion",
    "a.123",
    "1.2.3.4",
    "-a.com",
    "a-.com",
    "a--b.com",
    "xn--bcher-kva.com",
    "xn--zz.com",
    "a..com",
    "a.com.",
    "ex_ample.com",
    "d" * 63 + ".com",
    "d" * 64 + ".com",
    ("d" * 62 + ".") * 3 + "com",
]


@pytest.mark.parametrize("domain", _DOMAINS)
def test_the_plain_address_shortcut_gives_the_validators_verdict(domain: str) -> None:
    # Plain ASCII addresses skip the full email-validator call (the domain's verdict is
    # cached): every local part with every domain must be judged exactly as it judges.
    for local in _LOCAL_PARTS:
        address = f"{local}@{domain}"
        assert fields.is_valid_email(address) == fields._validator_accepts(address), address


def test_invalid_email_goes_to_extra() -> None:
    extra: dict[str, object] = {}
    assert fields.email_and_extra("not-an-email", extra) is None
    assert extra == {"invalid_email": "not-an-email"}
    assert fields.email_and_extra(None, extra) is None
    assert fields.email_and_extra("a@b.co", extra) == "a@b.co"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-04-24T10:31:00Z", datetime(2026, 4, 24, 10, 31, tzinfo=UTC)),
        (
            "2025-09-15T11:43:42.659+00:00",
            datetime(2025, 9, 15, 11, 43, 42, 659000, tzinfo=UTC),
        ),
        (
            "2026-04-24T12:31:00+02:00",
            datetime(2026, 4, 24, 12, 31, tzinfo=timezone(timedelta(hours=2))),
        ),
        ("2026-04-24T10:31:00", datetime(2026, 4, 24, 10, 31, tzinfo=UTC)),
        ("2019-03-12", datetime(2019, 3, 12, tzinfo=UTC)),
        ("yesterday", None),
        ("2026-13-45T99:00:00Z", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_timestamp(raw: str | None, expected: datetime | None) -> None:
    parsed = fields.parse_timestamp(raw)
    assert parsed == expected
    if parsed is not None:
        assert parsed.tzinfo is not None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1777026660, datetime(2026, 4, 24, 10, 31, tzinfo=UTC)),
        (1777026660000, datetime(2026, 4, 24, 10, 31, tzinfo=UTC)),
        (1e300, None),
    ],
)
def test_epoch_timestamps(value: float, expected: datetime | None) -> None:
    assert fields.timestamp({"at": value}, "at", "at") == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(" Jane ", "Jane"), ("", None), ("  ", None), (None, None), (42, "42"), (4.0, "4"),
     (4.5, "4.5"), ("x" * 100_000, "x" * 100_000)],
)  # fmt: skip
def test_text(value: object, expected: str | None) -> None:
    assert fields.text({"f": value}, "f", "f") == expected


@pytest.mark.parametrize("value", [True, {"a": 1}, [1], float("inf")])
def test_text_refuses_other_types(value: object) -> None:
    with pytest.raises(fields.ShapeError, match=r"^f: expected a string"):
        fields.text({"f": value}, "f", "f")


def test_number_accepts_numeric_strings() -> None:
    assert fields.number({"n": "45"}, "n", "n") == 45.0
    assert fields.number({"n": 1e3}, "n", "n") == 1000.0
    assert fields.number({}, "n", "n") is None
    with pytest.raises(fields.ShapeError):
        fields.number({"n": "forty-five"}, "n", "n")


# -- idempotency fingerprints -------------------------------------------------------------


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (("ab", "c"), ("a", "bc")),
        (
            ("lead.created", "2026-04-24T10:31:00Z1", "2"),
            ("lead.created", "2026-04-24T10:31:00Z", "12"),
        ),
        # A part holding the separator itself must not run into its neighbour either.
        (("a\x1fb", "c"), ("a", "b\x1fc")),
        (("a\x1fb", "c"), ("a", "b", "c")),
    ],
)
def test_fingerprint_parts_cannot_run_together(
    one: tuple[str, ...], other: tuple[str, ...]
) -> None:
    assert fingerprint(*one) != fingerprint(*other)


def test_event_fingerprints_of_parts_that_would_run_together_differ() -> None:
    first = fields.event_fingerprint("lead.created", "2026-04-24T10:31:00Z", ["ab", "c"], {})
    second = fields.event_fingerprint("lead.created", "2026-04-24T10:31:00Z", ["a", "bc"], {})

    assert first != second


def test_fingerprints_of_ordinary_parts_keep_their_stored_value() -> None:
    # Dedup compares new keys with keys already stored: a format change would let every
    # retry of an event received before an upgrade through as a new event.
    assert fingerprint("lead.created", "2026-04-24T10:31:00Z", "lead_1") == (
        "sha256:d0ad30e1d76108427bc72a41e72abfad03af3ff842594a2c1aae9c33568358ce"
    )
    assert fingerprint("lead.created", None, None, "{}") == (
        "sha256:5ef68f2c5effb645c5ebd5f1db8a4e40c65910db1fafe2997cdbee035730423d"
    )
