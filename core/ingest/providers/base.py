"""The small interface every provider adapter implements.

A provider knows the lead schema and nothing else: no web framework, no store. The
receiver hands it the request headers, the raw body and the source's secrets; it answers
with one of three typed parse results or raises `SignatureError`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from leadrelay.core.schema import EventType, LeadEvent

_HEX_DIGEST = re.compile("[0-9a-f]{64}")

log = logging.getLogger("leadrelay.providers")


class SignatureError(Exception):
    """The request is not signed by anyone holding one of the source's secrets.

    `reason` is one of "missing", "malformed", "mismatch" or "not_binding" (a body the
    signed form cannot represent exactly); the message never contains a secret or the
    expected digest.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Parsed:
    """A lead event the adapter could read."""

    event: LeadEvent


@dataclass(frozen=True)
class Ignored:
    """A valid, verified event that is not about a lead (stored for audit, not delivered)."""

    provider_event: str
    idempotency_key: str
    reason: str


@dataclass(frozen=True)
class Unreadable:
    """Valid JSON of a shape the adapter cannot read: quarantined raw, replayable later.

    `adapter_error` is the type name of the exception when the adapter itself failed (a
    defect, quarantined all the same); None when the payload's shape is the problem.
    """

    reason: str
    provider_event: str | None = None
    adapter_error: str | None = None


ParseResult = Parsed | Ignored | Unreadable


class ShapeError(Exception):
    """A payload field has a type the adapter cannot read; the message names the field."""


def json_type_name(value: object) -> str:
    """The JSON name of a Python value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def hmac_sha256_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header lookup that works for plain dicts as well as Werkzeug headers."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, candidate in headers.items():
        if key.lower() == lowered:
            return candidate
    return None


class ProviderOptions(BaseModel):
    """The YAML keys a provider reads beside `provider` and `secrets` (generic providers)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Provider(ABC):
    """Base class: subclasses set the class attributes and implement `read`.

    `event_types` maps the provider's event names to normalized types; a name mapped to
    None is a known non-lead event (answered "ignored"), and a name missing from the map
    is unknown (also "ignored", with a reason that says so).

    A provider configured per source declares `options_model`: the source's other YAML
    keys are validated with it at config load, and `for_source` builds the provider for
    that source. Providers without options are built with no arguments.
    """

    name: ClassVar[str]
    signature_header: ClassVar[str]
    signature_prefix: ClassVar[str] = "sha256="
    event_types: ClassVar[dict[str, EventType | None]]
    options_model: ClassVar[type[ProviderOptions] | None] = None
    # Headers `read` uses: the receiver stores them (and X-Request-Id) with the event, so
    # a replay parses it as the receiver did. Nothing else is stored: an allow-list keeps
    # out whatever credentials a client or a proxy adds (X-Goog-Iap-Jwt-Assertion, ...).
    kept_headers: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def for_source(cls, options: ProviderOptions | None) -> Provider:
        """The provider serving one source (`options` is None unless `options_model` is set)."""
        return cls()

    @classmethod
    def secret_problem(cls, secret: str) -> str | None:
        """Why `secret` cannot be used by this provider, or None; never quotes the secret."""
        return None

    # -- signatures -------------------------------------------------------------------

    def signed_messages(self, body: bytes) -> list[bytes]:
        """The byte strings a genuine sender may have signed; the raw body by default."""
        return [body]

    def verify(self, headers: Mapping[str, str], body: bytes, secrets: Sequence[str]) -> None:
        """Raise SignatureError unless one of `secrets` signed one of the signed messages.

        Every secret and every candidate message is tried, always with constant-time
        compares, so rotation works by listing the new secret beside the old one.
        """
        digest = self.presented_digest(headers)
        matched = False
        for message in self.signed_messages(body):
            matched |= self.signed_by(message, digest, secrets)
        if not matched:
            raise self.mismatch()

    def presented_digest(self, headers: Mapping[str, str]) -> str:
        """The hex digest of the signature header; SignatureError when absent or malformed."""
        presented = header(headers, self.signature_header)
        if not presented:
            raise SignatureError("missing", f"missing {self.signature_header} header")
        presented = presented.strip()
        prefix = self.signature_prefix
        if prefix and not presented.startswith(prefix):
            raise SignatureError(
                "malformed", f"{self.signature_header} must look like {prefix}<hex digest>"
            )
        digest = presented[len(prefix) :]
        if not _HEX_DIGEST.fullmatch(digest):
            raise SignatureError(
                "malformed",
                f"{self.signature_header} must carry a 64-character lower-case hex digest",
            )
        return digest

    @staticmethod
    def signed_by(message: bytes, digest: str, secrets: Sequence[str]) -> bool:
        matched = False
        for secret in secrets:
            # No early exit: the time taken does not reveal which secret matched.
            matched |= hmac.compare_digest(hmac_sha256_hex(secret, message), digest)
        return matched

    def mismatch(self) -> SignatureError:
        return SignatureError(
            "mismatch", f"{self.signature_header} does not match any configured secret"
        )

    def canonical_body(self, body: bytes) -> bytes:
        """The form of `body` its signature binds: two bodies with the same canonical form
        are one event to a signature check, so quarantined events are deduplicated on it."""
        return body

    def sign(self, body: bytes, secret: str) -> dict[str, str]:
        """Headers a genuine sender would attach to `body` (for tests, `test` and `trigger`)."""
        digest = hmac_sha256_hex(secret, self.signed_messages(body)[-1])
        return {self.signature_header: f"{self.signature_prefix}{digest}"}

    # -- parsing ----------------------------------------------------------------------

    def parse(
        self,
        payload: dict[str, Any],
        *,
        source: str,
        received_at: datetime,
        headers: Mapping[str, str] | None = None,
    ) -> ParseResult:
        """Turn a verified JSON object into a typed result; never raises for bad shapes.

        A ShapeError from `read` becomes Unreadable with its message. Any other exception
        is a defect in the adapter; it is turned into Unreadable too, because a quarantined
        event can be replayed once the adapter is fixed, while an exception would fail the
        request and the provider would eventually give up on the event.
        """
        if not isinstance(payload, dict):
            return Unreadable(f"payload must be a JSON object, got {json_type_name(payload)}")
        name = payload.get("event", payload.get("type"))
        provider_event = name if isinstance(name, str) else None
        try:
            return self.read(
                payload,
                source=source,
                received_at=received_at,
                headers=headers if headers is not None else {},
            )
        except ShapeError as error:
            return Unreadable(str(error), provider_event=provider_event)
        except Exception as error:
            log.error(
                "%s adapter failed; the event is quarantined",
                self.name,
                exc_info=error,
                extra={"fields": {"provider": self.name, "provider_event": provider_event}},
            )
            return Unreadable(
                f"adapter error {type(error).__name__}: {error}",
                provider_event=provider_event,
                adapter_error=type(error).__name__,
            )

    @abstractmethod
    def read(
        self,
        payload: dict[str, Any],
        *,
        source: str,
        received_at: datetime,
        headers: Mapping[str, str],
    ) -> ParseResult:
        """The adapter's reading of a JSON object; may raise ShapeError (see `parse`)."""
