"""`provider: hmac`: any JSON webhook signed with an HMAC of its body in one header.

The source's YAML says where the signature is and how it is written (`signature:`), and
how to read the payload (`event`, `types`, `lead`, ...: see mapping.py):

    signature:
      header: Typeform-Signature    # required
      algorithm: sha256             # sha1 | sha256 | sha512
      encoding: base64              # hex | base64 (standard or URL-safe alphabet)
      prefix: "sha256="             # optional; must be present, stripped before comparing
      timestamp_header: X-Timestamp # optional; then the signed bytes are "<timestamp>.<body>"
      tolerance: 5m                 # with timestamp_header: refuse older or newer requests

Secrets are used as their UTF-8 bytes. The idempotency key is the `event_id` expression's
value when it finds one, else a fingerprint of the event name and the parsed body.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, Literal

from pydantic import Field, model_validator

from leadrelay.core.durations import Duration
from leadrelay.core.ingest.providers.base import (
    Provider,
    ProviderOptions,
    SignatureError,
    header,
)
from leadrelay.core.ingest.providers.freshness import check_fresh, unix_seconds
from leadrelay.core.ingest.providers.mapping import (
    Expression,
    MappedProvider,
    MappingOptions,
    mapped_text,
)

DEFAULT_TOLERANCE = timedelta(minutes=5)
_HEADER_NAME = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"  # an HTTP token
_HEX = re.compile(r"[0-9a-fA-F]+")
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")


class SignatureOptions(ProviderOptions):
    header: str = Field(pattern=_HEADER_NAME)
    algorithm: Literal["sha1", "sha256", "sha512"] = "sha256"
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = ""
    timestamp_header: str | None = Field(default=None, pattern=_HEADER_NAME)
    tolerance: Duration | None = None

    @model_validator(mode="after")
    def _tolerance_needs_a_timestamp(self) -> SignatureOptions:
        if self.tolerance is not None:
            if self.timestamp_header is None:
                raise ValueError("tolerance needs timestamp_header (the time that is signed)")
            if self.tolerance <= timedelta(0):
                raise ValueError("tolerance must be longer than zero")
        return self


class HmacOptions(MappingOptions):
    signature: SignatureOptions
    event_id: Expression | None = None


class HmacProvider(MappedProvider):
    name = "hmac"
    options_model = HmacOptions

    def __init__(self, options: HmacOptions) -> None:
        super().__init__(options)
        self.signature = options.signature
        self.event_id = options.event_id
        self.tolerance = options.signature.tolerance or DEFAULT_TOLERANCE
        self.digest_size = hashlib.new(options.signature.algorithm).digest_size

    @classmethod
    def for_source(cls, options: ProviderOptions | None) -> Provider:
        if not isinstance(options, HmacOptions):
            raise TypeError("the hmac provider needs HmacOptions")
        return cls(options)

    # -- signatures -------------------------------------------------------------------

    def _digest(self, secret: str, message: bytes) -> bytes:
        return hmac.new(secret.encode("utf-8"), message, self.signature.algorithm).digest()

    def _encode(self, digest: bytes) -> str:
        if self.signature.encoding == "hex":
            return digest.hex()
        return base64.b64encode(digest).decode("ascii")

    def _presented_digest(self, presented: str) -> bytes:
        sig = self.signature
        shape = f"{sig.prefix}<{sig.algorithm} digest in {sig.encoding}>"
        if not presented.startswith(sig.prefix):
            raise SignatureError("malformed", f"{sig.header} must look like {shape}")
        text = presented[len(sig.prefix) :].strip()
        digest: bytes | None = None
        if sig.encoding == "hex" and _HEX.fullmatch(text):
            digest = bytes.fromhex(text)
        elif sig.encoding == "base64" and _BASE64.fullmatch(text):
            standard = text.replace("-", "+").replace("_", "/")
            try:
                digest = base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
            except binascii.Error:
                digest = None
        if digest is None or len(digest) != self.digest_size:
            raise SignatureError("malformed", f"{sig.header} must look like {shape}")
        return digest

    def verify(self, headers: Mapping[str, str], body: bytes, secrets: Sequence[str]) -> None:
        sig = self.signature
        presented = (header(headers, sig.header) or "").strip()
        if not presented:
            raise SignatureError("missing", f"missing {sig.header} header")
        digest = self._presented_digest(presented)
        message = body
        signed_at = None
        if sig.timestamp_header is not None:
            stamp = (header(headers, sig.timestamp_header) or "").strip()
            if not stamp:
                raise SignatureError("missing", f"missing {sig.timestamp_header} header")
            signed_at = unix_seconds(stamp, sig.timestamp_header, milliseconds=True)
            message = stamp.encode("ascii") + b"." + body
        matched = False
        for secret in secrets:
            # No early exit: the time taken does not reveal which secret matched.
            matched |= hmac.compare_digest(self._digest(secret, message), digest)
        if not matched:
            raise SignatureError("mismatch", f"{sig.header} does not match any configured secret")
        if sig.timestamp_header is not None and signed_at is not None:
            check_fresh(signed_at, self.clock(), sig.timestamp_header, self.tolerance)

    def sign(self, body: bytes, secret: str) -> dict[str, str]:
        sig = self.signature
        headers: dict[str, str] = {}
        message = body
        if sig.timestamp_header is not None:
            stamp = str(int(self.clock()))
            headers[sig.timestamp_header] = stamp
            message = stamp.encode("ascii") + b"." + body
        headers[sig.header] = sig.prefix + self._encode(self._digest(secret, message))
        return headers

    # -- parsing ----------------------------------------------------------------------

    def idempotency_key(
        self, provider_event: str, payload: dict[str, Any], headers: Mapping[str, str]
    ) -> str:
        if self.event_id is not None:
            key_path = f"event_id ({self.event_id.text})"
            event_id = mapped_text(self.event_id.search(payload, key_path), key_path)
            if event_id is not None:
                return event_id
        return self.fallback_key(provider_event, payload)
