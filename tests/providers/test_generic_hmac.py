"""`provider: hmac`: every signature shape the YAML can describe, signed here independently
of the adapter (hashlib + base64), and the 401 answers through the receiver."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from prometheus_client import REGISTRY

from leadrelay.core.app.config import parse_config
from leadrelay.core.ingest.providers import Provider, SignatureError
from leadrelay.core.ingest.receiver import create_app
from leadrelay.core.store.store import EventFilter, Store

SECRET = "forms-secret"
OLD_SECRET = "forms-secret-before-rotation"
HEADER = "X-Forms-Signature"
STAMP_HEADER = "X-Forms-Timestamp"
BODY = json.dumps(
    {
        "event_id": "evt_1",
        "event_type": "form_response",
        "form_response": {"answers": [{"type": "email", "email": "ada@example.com"}]},
    },
    separators=(",", ":"),
).encode()


def source_options(**signature: Any) -> dict[str, Any]:
    return {
        "provider": "hmac",
        "secrets": [SECRET],
        "signature": {"header": HEADER, **signature},
        "event_id": "event_id",
        "event": "event_type",
        "types": {"form_response": "lead.created"},
        "lead": {"email": "form_response.answers[?type=='email'].email | [0]"},
    }


def hmac_provider(**signature: Any) -> Provider:
    config = parse_config({"sources": {"forms": source_options(**signature)}}, env={})
    return config.sources["forms"].adapter


def digest(secret: str, message: bytes, algorithm: str = "sha256") -> bytes:
    return hmac.new(secret.encode(), message, getattr(hashlib, algorithm)).digest()


def encoded(raw: bytes, encoding: str) -> str:
    return raw.hex() if encoding == "hex" else base64.b64encode(raw).decode()


def refusal(
    provider: Provider, headers: dict[str, str], *, secrets: list[str] | None = None
) -> str:
    with pytest.raises(SignatureError) as info:
        provider.verify(headers, BODY, secrets or [SECRET])
    assert SECRET not in info.value.message
    return info.value.reason


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "sha512"])
@pytest.mark.parametrize("encoding", ["hex", "base64"])
@pytest.mark.parametrize("prefix", ["", "sha256="])
def test_every_algorithm_encoding_and_prefix(algorithm: str, encoding: str, prefix: str) -> None:
    provider = hmac_provider(algorithm=algorithm, encoding=encoding, prefix=prefix)
    value = prefix + encoded(digest(SECRET, BODY, algorithm), encoding)

    assert provider.verify({HEADER: value}, BODY, [SECRET]) is None
    tampered = BODY.replace(b"ada@", b"eve@")
    with pytest.raises(SignatureError) as info:
        provider.verify({HEADER: value}, tampered, [SECRET])
    assert info.value.reason == "mismatch"


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "sha512"])
@pytest.mark.parametrize("encoding", ["hex", "base64"])
def test_what_the_adapter_signs_verifies_independently(algorithm: str, encoding: str) -> None:
    provider = hmac_provider(algorithm=algorithm, encoding=encoding, prefix="v1=")
    [value] = provider.sign(BODY, SECRET).values()
    assert value == "v1=" + encoded(digest(SECRET, BODY, algorithm), encoding)


def test_header_names_and_hex_digits_are_case_insensitive() -> None:
    provider = hmac_provider()
    value = digest(SECRET, BODY).hex().upper()
    assert provider.verify({HEADER.lower(): value}, BODY, [SECRET]) is None


def test_base64_in_the_url_safe_alphabet_and_without_padding_is_accepted() -> None:
    provider = hmac_provider(encoding="base64")
    # A body whose digest has a character the two alphabets write differently.
    body = next(
        candidate
        for candidate in (BODY + b" " * n for n in range(64))
        if set(base64.b64encode(digest(SECRET, candidate)).decode()) & set("+/")
    )
    url_safe = base64.urlsafe_b64encode(digest(SECRET, body)).decode().rstrip("=")
    assert set(url_safe) & set("-_")
    assert provider.verify({HEADER: url_safe}, body, [SECRET]) is None


def test_rotation_accepts_every_listed_secret_and_no_other() -> None:
    provider = hmac_provider()
    for secret in (OLD_SECRET, SECRET):
        headers = {HEADER: digest(secret, BODY).hex()}
        assert provider.verify(headers, BODY, [OLD_SECRET, SECRET]) is None
    headers = {HEADER: digest("someone-else", BODY).hex()}
    assert refusal(provider, headers, secrets=[OLD_SECRET, SECRET]) == "mismatch"


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing"),
        ({"X-Other-Signature": digest(SECRET, BODY).hex()}, "missing"),  # wrong header name
        ({HEADER: "   "}, "missing"),
        ({HEADER: "sha256=" + digest(SECRET, BODY).hex()}, "malformed"),  # prefix not configured
        ({HEADER: "zz" * 32}, "malformed"),
        ({HEADER: digest(SECRET, BODY, "sha1").hex()}, "malformed"),  # a digest of another size
        ({HEADER: base64.b64encode(digest(SECRET, BODY)).decode()}, "malformed"),  # not hex
        ({HEADER: digest(OLD_SECRET, BODY).hex()}, "mismatch"),
    ],
)
def test_refusals_name_their_reason(headers: dict[str, str], reason: str) -> None:
    assert refusal(hmac_provider(), headers) == reason


def test_a_configured_prefix_is_required() -> None:
    provider = hmac_provider(prefix="sha256=")
    assert refusal(provider, {HEADER: digest(SECRET, BODY).hex()}) == "malformed"


# -- a signed timestamp ------------------------------------------------------------------


def stamped(secret: str, stamp: str, body: bytes = BODY) -> dict[str, str]:
    return {STAMP_HEADER: stamp, HEADER: digest(secret, stamp.encode() + b"." + body).hex()}


def test_timestamp_inside_the_tolerance_is_accepted() -> None:
    provider = hmac_provider(timestamp_header=STAMP_HEADER, tolerance="5m")
    for offset in (-240, 0, 240):
        stamp = str(int(time.time()) + offset)
        assert provider.verify(stamped(SECRET, stamp), BODY, [SECRET]) is None


def test_timestamp_in_milliseconds_is_accepted() -> None:
    provider = hmac_provider(timestamp_header=STAMP_HEADER)
    stamp = str(int(time.time() * 1000))
    assert provider.verify(stamped(SECRET, stamp), BODY, [SECRET]) is None


@pytest.mark.parametrize(("offset", "reason"), [(-600, "stale"), (600, "future")])
def test_timestamp_outside_the_tolerance_is_refused(offset: int, reason: str) -> None:
    provider = hmac_provider(timestamp_header=STAMP_HEADER, tolerance="5m")
    stamp = str(int(time.time()) + offset)
    assert refusal(provider, stamped(SECRET, stamp)) == reason


def test_default_tolerance_is_five_minutes() -> None:
    provider = hmac_provider(timestamp_header=STAMP_HEADER)
    assert provider.verify(stamped(SECRET, str(int(time.time()) - 250)), BODY, [SECRET]) is None
    assert refusal(provider, stamped(SECRET, str(int(time.time()) - 350))) == "stale"


def test_the_signature_covers_the_timestamp() -> None:
    provider = hmac_provider(timestamp_header=STAMP_HEADER)
    now = int(time.time())
    headers = stamped(SECRET, str(now - 3600))
    headers[STAMP_HEADER] = str(now)  # a captured request with a fresh time pasted in
    assert refusal(provider, headers) == "mismatch"
    body_only = {STAMP_HEADER: str(now), HEADER: digest(SECRET, BODY).hex()}
    assert refusal(provider, body_only) == "mismatch"


@pytest.mark.parametrize(
    ("stamp", "reason"), [(None, "missing"), ("yesterday", "malformed"), ("1.5", "malformed")]
)
def test_a_missing_or_unreadable_timestamp_is_refused(stamp: str | None, reason: str) -> None:
    provider = hmac_provider(timestamp_header=STAMP_HEADER)
    headers = {HEADER: digest(SECRET, BODY).hex()}
    if stamp is not None:
        headers[STAMP_HEADER] = stamp
    assert refusal(provider, headers) == reason


def test_the_adapter_signs_the_timestamp_it_sends() -> None:
    provider = hmac_provider(timestamp_header=STAMP_HEADER, encoding="base64")
    headers = provider.sign(BODY, SECRET)
    stamp = headers[STAMP_HEADER]
    expected = base64.b64encode(digest(SECRET, stamp.encode() + b"." + BODY)).decode()
    assert headers[HEADER] == expected


# -- the 401 answers through the receiver ---------------------------------------------------


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[FlaskClient, Store]]:
    store = Store(f"sqlite:///{tmp_path / 'leadrelay.db'}")
    store.migrate()
    options = source_options(timestamp_header=STAMP_HEADER, tolerance="5m")
    options["secrets"] = [OLD_SECRET, SECRET]
    config = parse_config({"store": store.url, "sources": {"forms": options}}, env={})
    yield create_app(config, store).test_client(), store
    store.close()


def failures(reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "leadrelay_signature_failures_total", {"source": "forms", "reason": reason}
    )
    return value or 0.0


@pytest.mark.parametrize(
    ("make_headers", "reason", "words"),
    [
        (lambda now: {}, "missing", f"missing {HEADER} header"),
        (lambda now: {HEADER: "ab" * 32}, "missing", f"missing {STAMP_HEADER} header"),
        (lambda now: {HEADER: "nope", STAMP_HEADER: now}, "malformed", f"{HEADER} must look"),
        (lambda now: stamped("wrong", now), "mismatch", "does not match any configured secret"),
        (lambda now: stamped(SECRET, str(int(now) - 900)), "stale", "older than the tolerance"),
        (lambda now: stamped(SECRET, str(int(now) + 900)), "future", "further ahead"),
    ],
)
def test_401_answers_say_why_and_store_nothing(
    client: tuple[FlaskClient, Store], make_headers: Any, reason: str, words: str
) -> None:
    test_client, store = client
    before = failures(reason)
    response = test_client.post(
        "/webhooks/forms", data=BODY, headers=make_headers(str(int(time.time())))
    )
    assert response.status_code == 401
    answer = response.get_json()
    assert answer["error"] == "invalid_signature"
    assert words in answer["message"]
    assert SECRET not in response.get_data(as_text=True)
    assert failures(reason) == before + 1
    assert store.list_events(EventFilter()) == []


def test_a_genuine_request_is_accepted_with_either_secret(
    client: tuple[FlaskClient, Store],
) -> None:
    test_client, store = client
    now = str(int(time.time()))
    first = test_client.post("/webhooks/forms", data=BODY, headers=stamped(OLD_SECRET, now))
    again = test_client.post("/webhooks/forms", data=BODY, headers=stamped(SECRET, now))
    assert first.status_code == 200
    assert first.get_json()["status"] == "accepted"
    assert again.get_json() == {"status": "duplicate", "event_id": first.get_json()["event_id"]}
    [event] = store.list_events(EventFilter())
    assert event["lead_key"] == "email:ada@example.com"
