"""Signature verification, the same checks for every provider (signed per its doc)."""

from __future__ import annotations

import pytest

from leadrelay.core.ingest.providers import SignatureError
from tests.providers.common import PROVIDERS, fixture_text
from tests.signing import SIGNATURE_HEADERS, sign

SECRET = "whsec_current"
OLD_SECRET = "whsec_previous"
DOC_SAMPLES = {
    "gitleads": "lead.created",
    "gitproductivity": "developer.added",
    "leadhub": "lead.created",
    "leadshark": "email.captured",
}
ALL_PROVIDERS = sorted(DOC_SAMPLES)


def signed(provider: str, secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    body = fixture_text(provider, DOC_SAMPLES[provider]).encode("utf-8")
    return body, sign(provider, body, secret)


def assert_rejected(provider: str, headers: dict[str, str], body: bytes, reason: str) -> None:
    with pytest.raises(SignatureError) as caught:
        PROVIDERS[provider].verify(headers, body, [SECRET])
    assert caught.value.reason == reason
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("provider", ALL_PROVIDERS)
def test_valid_signature_is_accepted(provider: str) -> None:
    body, headers = signed(provider)
    assert PROVIDERS[provider].verify(headers, body, [SECRET]) is None


@pytest.mark.parametrize("provider", ALL_PROVIDERS)
def test_header_name_is_case_insensitive(provider: str) -> None:
    body, headers = signed(provider)
    lowered = {name.lower(): value for name, value in headers.items()}
    assert PROVIDERS[provider].verify(lowered, body, [SECRET]) is None


@pytest.mark.parametrize("provider", ALL_PROVIDERS)
def test_wrong_secret_is_a_mismatch(provider: str) -> None:
    body, headers = signed(provider, secret="not-the-secret")
    assert_rejected(provider, headers, body, "mismatch")


@pytest.mark.parametrize("provider", ALL_PROVIDERS)
def test_tampered_body_is_a_mismatch(provider: str) -> None:
    body, headers = signed(provider)
    # Every doc sample has a timestamp "...T1x:..."; change its hour.
    tampered = body.replace(b"T1", b"T0", 1)
    assert tampered != body
    assert_rejected(provider, headers, tampered, "mismatch")


@pytest.mark.parametrize("provider", ALL_PROVIDERS)
def test_missing_header(provider: str) -> None:
    body, headers = signed(provider)
    del headers[SIGNATURE_HEADERS[provider]]
    assert_rejected(provider, headers, body, "missing")


@pytest.mark.parametrize("provider", ALL_PROVIDERS)
def test_empty_header_counts_as_missing(provider: str) -> None:
    body, headers = signed(provider)
    headers[SIGNATURE_HEADERS[provider]] = ""
    assert_rejected(provider, headers, body, "missing")


def _prefix(provider: str) -> str:
    return PROVIDERS[provider].signature_prefix


@pytest.mark.parametrize("provider", ALL_PROVIDERS)
@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda value, prefix: prefix + value[len(prefix) :].upper(), id="upper-hex"),
        pytest.param(lambda value, prefix: value[: len(value) - 1], id="truncated"),
        pytest.param(lambda value, prefix: value + "0", id="too-long"),
        pytest.param(lambda value, prefix: "sha1=" + value[len(prefix) :], id="wrong-prefix"),
        pytest.param(lambda value, prefix: prefix + "z" * 64, id="not-hex"),
        pytest.param(lambda value, prefix: "sha256:" + value[len(prefix) :], id="colon"),
    ],
)
def test_malformed_header(provider: str, mangle) -> None:  # type: ignore[no-untyped-def]
    body, headers = signed(provider)
    name = SIGNATURE_HEADERS[provider]
    headers[name] = mangle(headers[name], _prefix(provider))
    assert_rejected(provider, headers, body, "malformed")


@pytest.mark.parametrize("provider", ["gitleads", "gitproductivity", "leadhub"])
def test_bare_hex_without_prefix_is_malformed(provider: str) -> None:
    body, headers = signed(provider)
    name = SIGNATURE_HEADERS[provider]
    headers[name] = headers[name].removeprefix("sha256=")
    assert_rejected(provider, headers, body, "malformed")


@pytest.mark.parametrize("provider", ALL_PROVIDERS)
def test_second_of_two_secrets_rotation(provider: str) -> None:
    body, headers = signed(provider, secret=OLD_SECRET)
    verifier = PROVIDERS[provider]
    assert verifier.verify(headers, body, [SECRET, OLD_SECRET]) is None
    with pytest.raises(SignatureError):
        verifier.verify(headers, body, [SECRET])


@pytest.mark.parametrize("provider", ALL_PROVIDERS)
def test_no_secrets_verifies_nothing(provider: str) -> None:
    # The receiver skips verification for sources without secrets; verify itself never
    # accepts a signature that no configured secret produced.
    body, headers = signed(provider)
    with pytest.raises(SignatureError):
        PROVIDERS[provider].verify(headers, body, [])


@pytest.mark.parametrize("provider", ALL_PROVIDERS)
def test_adapter_sign_round_trips(provider: str) -> None:
    body, expected_headers = signed(provider)
    adapter_headers = PROVIDERS[provider].sign(body, SECRET)
    name = SIGNATURE_HEADERS[provider]
    assert adapter_headers[name] == expected_headers[name]
