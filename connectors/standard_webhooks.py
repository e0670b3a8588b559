"""A tiny, dependency-free Standard Webhooks signer (symmetric `v1` scheme).

Spec: https://www.standardwebhooks.com (spec/standard-webhooks.md, "Signature scheme").
Each request carries

    webhook-id:        a unique message id, the same on every retry (receivers dedup on it)
    webhook-timestamp: integer unix seconds of this attempt
    webhook-signature: "v1,<base64 HMAC-SHA256(key, f"{id}.{timestamp}.{body}")>"

and, during a secret rotation, one space-separated signature per secret, so a receiver
that knows either the old or the new secret accepts the request.

Secrets are accepted only in the spec's serialized form, `whsec_<base64 of 24..64 random
bytes>`. Bare strings are refused on purpose: the reference verifier libraries
(`standardwebhooks`, `svix`) read an unprefixed secret as base64, so a raw passphrase would
sign with different key bytes than the receiver verifies with and every request would fail
there. `generate_secret()` makes a valid one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Sequence

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format marker, not a secret
MIN_SECRET_BYTES = 24  # the spec: "at least 24 bytes (192 bits, 512 maximum)"
MAX_SECRET_BYTES = 64
SIGNATURE_VERSION = "v1"


class InvalidSecret(ValueError):
    """A signing secret is not `whsec_<base64>` of an acceptable length.

    The message never contains the secret itself.
    """


def decode_secret(secret: str) -> bytes:
    """The HMAC key bytes of a `whsec_…` secret."""
    if not secret.startswith(SECRET_PREFIX):
        raise InvalidSecret(
            f"must start with {SECRET_PREFIX!r} followed by base64 (Standard Webhooks format); "
            "generate one with leadrelay.connectors.standard_webhooks.generate_secret()"
        )
    encoded = secret[len(SECRET_PREFIX) :]
    # Padding is optional in the wild (the reference libraries pad before decoding).
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        raise InvalidSecret(
            f"the part after {SECRET_PREFIX!r} is not valid standard base64"
        ) from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise InvalidSecret(
            f"decodes to {len(key)} bytes; Standard Webhooks secrets are "
            f"{MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} random bytes"
        )
    return key


def generate_secret(num_bytes: int = 32) -> str:
    """A fresh random secret in `whsec_<base64>` form, to give to the receiver."""
    if not MIN_SECRET_BYTES <= num_bytes <= MAX_SECRET_BYTES:
        raise ValueError(f"num_bytes must be {MIN_SECRET_BYTES}..{MAX_SECRET_BYTES}")
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(num_bytes)).decode("ascii")


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64>` signature of `{msg_id}.{timestamp}.{body}`."""
    # A "." in the id would let one (id, timestamp, body) split pass for another.
    if not msg_id or "." in msg_id:
        raise ValueError("msg_id must be non-empty and contain no '.'")
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def webhook_headers(
    keys: Sequence[bytes], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The `webhook-*` headers for one attempt; no `webhook-signature` when `keys` is empty."""
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(timestamp)}
    if keys:
        headers["webhook-signature"] = " ".join(sign(key, msg_id, timestamp, body) for key in keys)
    return headers
