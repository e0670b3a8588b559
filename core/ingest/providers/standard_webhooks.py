"""`provider: standard-webhooks`: senders that follow the Standard Webhooks spec (Svix and
every sender built on it).

Spec: https://www.standardwebhooks.com, "Verifying webhooks". Each request carries

    webhook-id:        the message id, the same on every retry: the idempotency key
    webhook-timestamp: integer Unix seconds of this attempt
    webhook-signature: space-separated "v1,<base64 HMAC-SHA256>" of "<id>.<timestamp>.<body>"

Secrets are written as the sender shows them, `whsec_<base64>` (the prefix is optional,
as in the reference library); the HMAC key is the base64-decoded part. Every listed secret
and every `v1` signature is compared, constant-time, so both sides can rotate. A request
whose timestamp is further than `tolerance` (default 5 minutes, as the spec says) from
now is refused even when its signature matches: that bounds replays of captured requests.

The payload is read by the source's mapping (mapping.py); `event` defaults to the spec's
`type` and `occurred_at` to its `timestamp`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from pydantic import Field, field_validator

from leadrelay.core.durations import Duration
from leadrelay.core.ingest.providers.base import (
    Provider,
    ProviderOptions,
    SignatureError,
    header,
)
from leadrelay.core.ingest.providers.freshness import check_fresh, unix_seconds
from leadrelay.core.ingest.providers.mapping import Expression, MappedProvider, MappingOptions

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format marker, not a secret
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_DIGEST_SIZE = hashlib.sha256().digest_size


class StandardWebhooksOptions(MappingOptions):
    event: Expression = Field(default="type", validate_default=True)
    occurred_at: Expression | None = Field(default="timestamp", validate_default=True)
    tolerance: Duration = timedelta(minutes=5)

    @field_validator("tolerance")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("tolerance must be longer than zero")
        return value


def secret_key(secret: str) -> bytes | None:
    """The HMAC key of a `whsec_<base64>` secret, or None if it is not one."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    if not _BASE64.fullmatch(encoded):
        return None
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        return None
    return key or None


def _signatures(value: str) -> list[bytes]:
    """The decoded `v1` signatures of a webhook-signature header (other versions skipped)."""
    found = []
    for entry in value.split():
        version, _, encoded = entry.partition(",")
        if version != "v1" or not _BASE64.fullmatch(encoded):
            continue
        try:
            digest = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            continue
        if len(digest) == _DIGEST_SIZE:
            found.append(digest)
    return found


class StandardWebhooksProvider(MappedProvider):
    name = "standard-webhooks"
    options_model = StandardWebhooksOptions
    kept_headers = (ID_HEADER, TIMESTAMP_HEADER)

    def __init__(self, options: StandardWebhooksOptions) -> None:
        super().__init__(options)
        self.tolerance = options.tolerance

    @classmethod
    def for_source(cls, options: ProviderOptions | None) -> Provider:
        if not isinstance(options, StandardWebhooksOptions):
            raise TypeError("the standard-webhooks provider needs StandardWebhooksOptions")
        return cls(options)

    @classmethod
    def secret_problem(cls, secret: str) -> str | None:
        if secret_key(secret) is None:
            return (
                f"not a Standard Webhooks secret ({SECRET_PREFIX}<base64>, as the sender shows it)"
            )
        return None

    # -- signatures -------------------------------------------------------------------

    def verify(self, headers: Mapping[str, str], body: bytes, secrets: Sequence[str]) -> None:
        values = {}
        for name in (ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER):
            values[name] = (header(headers, name) or "").strip()
            if not values[name]:
                raise SignatureError("missing", f"missing {name} header")
        signed_at = unix_seconds(values[TIMESTAMP_HEADER], TIMESTAMP_HEADER)
        presented = _signatures(values[SIGNATURE_HEADER])
        if not presented:
            raise SignatureError(
                "malformed", f"{SIGNATURE_HEADER} carries no v1,<base64 HMAC-SHA256> signature"
            )
        # The integer as the reference library re-reads it (it ignores leading zeros).
        message = f"{values[ID_HEADER]}.{int(signed_at)}.".encode() + body
        matched = False
        for secret in secrets:
            key = secret_key(secret)
            if key is None:  # refused at config load; never matches
                continue
            expected = hmac.new(key, message, hashlib.sha256).digest()
            for digest in presented:
                # No early exit: the time taken does not reveal which secret matched.
                matched |= hmac.compare_digest(expected, digest)
        if not matched:
            raise SignatureError(
                "mismatch", f"{SIGNATURE_HEADER} does not match any configured secret"
            )
        check_fresh(signed_at, self.clock(), TIMESTAMP_HEADER, self.tolerance)

    def sign(self, body: bytes, secret: str) -> dict[str, str]:
        key = secret_key(secret)
        if key is None:
            raise ValueError(self.secret_problem(secret))
        msg_id = f"msg_{uuid.uuid4().hex}"
        stamp = str(int(self.clock()))
        digest = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
        return {
            ID_HEADER: msg_id,
            TIMESTAMP_HEADER: stamp,
            SIGNATURE_HEADER: "v1," + base64.b64encode(digest).decode("ascii"),
        }

    # -- parsing ----------------------------------------------------------------------

    def idempotency_key(
        self, provider_event: str, payload: dict[str, Any], headers: Mapping[str, str]
    ) -> str:
        # The spec's dedup key: the same on every retry of one message.
        msg_id = (header(headers, ID_HEADER) or "").strip()
        return msg_id or self.fallback_key(provider_event, payload)
