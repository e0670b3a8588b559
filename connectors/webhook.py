"""`type: webhook`: POST every normalized lead event, signed, to any URL.

One request per event (batch_size 1):

    POST <url>
    Content-Type: application/json
    User-Agent: leadrelay/<version>
    <custom headers>
    webhook-id: <event_id>            same on every retry: receivers dedup on it
    webhook-timestamp: <unix seconds of this attempt>
    webhook-signature: v1,<base64>    one per secret, space separated (rotation); absent
                                      when no secrets are configured
    body: the LeadEvent as compact UTF-8 JSON; `raw` only with `include_raw: true`

Signing follows Standard Webhooks (see `standard_webhooks.py`), so receivers verify with
the `standardwebhooks` or `svix` libraries. Delivery is at-least-once: a retry after a
lost response sends the same `webhook-id` again.

Outcomes (following the Standard Webhooks "delivery success and failure" section):

- 2xx: Delivered.
- 3xx: Permanent, naming the Location. Redirects are never followed: a POST silently
  re-sent to another host could leak leads and signatures, and the spec asks senders to
  have the URL updated instead.
- 410 Gone: Permanent with an error starting with `GONE_ERROR_PREFIX`, and the connector
  asks to be disabled (see `WebhookConnector.disable_requested`).
- 429: RateLimited after Retry-After (seconds or HTTP-date; 60 s when absent).
- 503 with Retry-After: RateLimited; without it, Retryable like any 5xx.
- 408, other 5xx, timeouts, connection and TLS errors: Retryable.
- Any other 4xx: Permanent with the status and the first 500 characters of the body.

Capability URLs (Zapier or Make hooks) carry their secret in the path or query, so the
URL is shown as scheme and host only, its path and query masked (repr, preview, `connectors
test` output), and every error text is scrubbed of them, of the signing secrets and of the
custom header values. The host is shown: an endpoint whose secret is its host name
(Pipedream's `<id>.m.pipedream.net`) is printed in full. Credentials belong in `headers`,
whose values are all treated as secrets, and `user:password@` URLs are refused.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any
from urllib.parse import urlsplit

import requests
from pydantic import ConfigDict, Field, SecretStr, field_validator
from pydantic_core import PydanticSerializationError

from leadrelay.connectors import http_deadline
from leadrelay.connectors._http import MASK, classify_status, parse_retry_after, scrub
from leadrelay.connectors.standard_webhooks import decode_secret, webhook_headers
from leadrelay.core.delivery.contract import (
    ConnectionCheckFailed,
    Connector,
    ConnectorOptions,
    Delivered,
    Outcome,
    Permanent,
    RateLimited,
    Retryable,
)
from leadrelay.core.schema import LeadEvent

logger = logging.getLogger("leadrelay.connectors.webhook")

USER_AGENT = f"leadrelay/{version('leadrelay')}"

# The delivery engine (and anyone reading dead letters) can rely on this prefix.
GONE_ERROR_PREFIX = "410 Gone"

# Headers the connector owns: overriding them would break the body or the signature.
RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "content-encoding",
        "transfer-encoding",
        "host",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
)
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token

ERROR_BODY_CHARS = 500
# Enough bytes for ERROR_BODY_CHARS characters of UTF-8; reading stops there.
_ERROR_BODY_BYTES = 4 * ERROR_BODY_CHARS
DEFAULT_RATE_LIMIT_DELAY = 60.0


class WebhookOptions(ConnectorOptions):
    """Options of `type: webhook`.

    `secrets` are `whsec_<base64>` Standard Webhooks secrets (first = current; add the new
    one during a rotation so receivers holding either verify). Empty: requests are sent
    unsigned, still with `webhook-id` and `webhook-timestamp`.
    """

    # Keep raw option values (secrets, header values) out of validation error texts.
    model_config = ConfigDict(hide_input_in_errors=True)

    url: str
    secrets: list[SecretStr] = Field(default_factory=list)
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    timeout: float = Field(default=10.0, gt=0, le=300)
    include_raw: bool = False

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, masked_url(value) if name == "url" else value

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a malformed port
        except ValueError as exc:
            raise ValueError(f"not a valid URL: {exc}") from None
        if parts.scheme not in ("http", "https"):
            raise ValueError("must be an http:// or https:// URL")
        if not parts.hostname:
            raise ValueError("has no host")
        if parts.username is not None or parts.password is not None:
            raise ValueError(
                "must not contain user:password@; send credentials in `headers` "
                "(e.g. Authorization), which are kept secret"
            )
        if any(ch.isspace() for ch in url):
            raise ValueError("must not contain whitespace")
        return url

    @field_validator("secrets")
    @classmethod
    def _standard_webhooks_secrets(cls, secrets: list[SecretStr]) -> list[SecretStr]:
        for position, secret in enumerate(secrets):
            try:
                decode_secret(secret.get_secret_value())
            except ValueError as exc:
                raise ValueError(f"secret #{position + 1}: {exc}") from None
        return secrets

    @field_validator("headers")
    @classmethod
    def _sendable_headers(cls, headers: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, value in headers.items():
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"header name {name!r} is not a valid HTTP header name")
            if name.lower() in RESERVED_HEADERS:
                raise ValueError(f"header {name!r} is set by the connector and cannot be set")
            if any(ch in value.get_secret_value() for ch in "\r\n\0"):
                raise ValueError(f"header {name!r} has a line break or NUL in its value")
        return headers


class WebhookConnector(Connector[WebhookOptions]):
    """Signed JSON POSTs of normalized lead events to one URL.

    410 contract with the delivery engine: on a 410 answer the outcome is
    `Permanent(message="410 Gone: …")` and `disable_requested` (declared by `Connector`)
    is set to a human-readable reason. After each `send`, the engine checks
    `disable_requested`; when set, it persists `enabled: false` for this connector with
    that reason, so later deliveries wait instead of failing, and clears it. Re-enabling
    builds a fresh connector, whose `disable_requested` is None.
    """

    type_name = "webhook"
    options_model = WebhookOptions
    batch_size = 1
    delivery_guarantee = "at-least-once"

    def __init__(self, name: str, options: WebhookOptions) -> None:
        super().__init__(name, options)
        self._keys = [decode_secret(secret.get_secret_value()) for secret in options.secrets]
        self._session = http_deadline.session()
        # Only the headers we set (plus transport ones) go out, so preview() is exact.
        self._session.headers.clear()
        self._secret_values = [
            *(secret.get_secret_value() for secret in options.secrets),
            *(value.get_secret_value() for value in options.headers.values()),
        ]
        capability = _capability_part(options.url)
        if capability:
            self._secret_values.append(capability)

    # -- Connector API -------------------------------------------------------------------

    def send(self, batch: Sequence[LeadEvent]) -> list[Outcome]:
        return [self._send_one(event) for event in batch]

    def preview(self, event: LeadEvent, *, timestamp: int | None = None) -> dict[str, Any]:
        """The request `send` would make, signed for `timestamp`.

        `timestamp` defaults to the event's `received_at`, so a preview is reproducible;
        `send` signs with the current time. The URL's path and query and the custom
        header values are masked; the body and the signatures are shown as they would be
        sent.
        """
        body = self._body(event)
        signed_at = timestamp if timestamp is not None else int(event.received_at.timestamp())
        return {
            "method": "POST",
            "url": masked_url(self.options.url),
            "headers": self._headers(event.event_id, signed_at, body, reveal=False),
            "body": body.decode("utf-8"),
        }

    def check_connection(self) -> None:
        """HEAD the URL: any answer proves it is reachable, except a redirect or 410 Gone.

        HEAD has no side effects on a well-behaved receiver; a 404/405 to HEAD is common
        for POST-only endpoints and is not a failure.
        """
        headers = {name: value.get_secret_value() for name, value in self.options.headers.items()}
        try:
            response = self._session.head(
                self.options.url,
                headers={"User-Agent": USER_AGENT, **headers},
                timeout=self.options.timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise ConnectionCheckFailed(self._network_error(exc)) from None
        with response:
            if 300 <= response.status_code < 400:
                raise ConnectionCheckFailed(self._redirect_error(response))
            if response.status_code == 410:
                raise ConnectionCheckFailed(
                    f"{GONE_ERROR_PREFIX}: the receiver no longer accepts webhooks at this URL"
                )

    def close(self) -> None:
        self._session.close()

    # -- one delivery ----------------------------------------------------------------------

    def _send_one(self, event: LeadEvent) -> Outcome:
        body = self._body(event)
        headers = self._headers(event.event_id, int(time.time()), body, reveal=True)
        # `timeout` bounds the whole call, not each read: see http_deadline.
        with http_deadline.deadline(self.options.timeout) as expired:
            try:
                response = self._session.post(
                    self.options.url,
                    data=body,
                    headers=headers,
                    timeout=self.options.timeout,
                    allow_redirects=False,
                    stream=True,  # so an error body is read only as far as we report it
                )
            except requests.RequestException as exc:
                return Retryable(self._network_error(exc, expired.is_set()))
            with response:
                if expired.is_set():
                    # Cut off inside the headers: the answer is not known to be whole.
                    return Retryable(
                        f"no response within {self.options.timeout:g}s: the headers never ended"
                    )
                return self._outcome(response)

    def _outcome(self, response: requests.Response) -> Outcome:
        status = response.status_code
        # Read even a success body (bounded) so the connection goes back to the pool.
        received = _read_prefix(response, _ERROR_BODY_BYTES)
        if 200 <= status < 300:
            return Delivered(f"HTTP {status}")
        if 300 <= status < 400:
            return Permanent(self._redirect_error(response))
        detail = f"HTTP {status} {response.reason or ''}".rstrip()
        text = received.decode(response.encoding or "utf-8", errors="replace")
        body = self._scrub(text[:ERROR_BODY_CHARS].strip())
        if body:
            detail = f"{detail}: {body}"
        if status == 410:
            return self._gone(detail)
        retry_after = response.headers.get("Retry-After")
        wait = parse_retry_after(retry_after, DEFAULT_RATE_LIMIT_DELAY)
        if status == 503 and retry_after:
            return RateLimited(detail, wait)  # Standard Webhooks: an overloaded receiver
        return classify_status(status, detail, retry_after=wait)

    def _gone(self, detail: str) -> Permanent:
        reason = (
            f"{GONE_ERROR_PREFIX}: the receiver no longer accepts webhooks at this URL; "
            f"connector {self.name!r} should be disabled until its url is fixed and it is "
            f"re-enabled ({detail})"
        )
        self.disable_requested = reason
        logger.warning(
            "webhook connector %r: %s answered 410 Gone; requesting that the connector be "
            "disabled (pending deliveries wait; fix the url, then run `connectors enable %s`)",
            self.name,
            urlsplit(self.options.url).netloc,
            self.name,
        )
        return Permanent(reason)

    # -- request building --------------------------------------------------------------

    def _body(self, event: LeadEvent) -> bytes:
        exclude = None if self.options.include_raw else {"raw"}
        try:
            return event.model_dump_json(exclude=exclude).encode("utf-8")
        except PydanticSerializationError:
            # A lone surrogate (legal as a JSON escape, so a provider can send one) has
            # no UTF-8 form; ASCII JSON carries it as the same \u escape instead.
            payload = event.model_dump(mode="json", exclude=exclude)
            return json.dumps(payload, separators=(",", ":")).encode("ascii")

    def _headers(
        self, event_id: str, timestamp: int, body: bytes, *, reveal: bool
    ) -> dict[str, str]:
        custom = {
            name: value.get_secret_value() if reveal else str(value)
            for name, value in self.options.headers.items()
        }
        headers = {"Content-Type": "application/json"}
        if not any(name.lower() == "user-agent" for name in custom):
            headers["User-Agent"] = USER_AGENT
        headers.update(custom)
        headers.update(webhook_headers(self._keys, event_id, timestamp, body))
        return headers

    # -- error texts -----------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        return scrub(text, *self._secret_values)

    def _network_error(self, exc: requests.RequestException, expired: bool = False) -> str:
        if expired or isinstance(exc, requests.Timeout):
            prefix = f"no response within {self.options.timeout:g}s"
        else:
            prefix = "network error"
        return self._scrub(f"{prefix}: {type(exc).__name__}: {exc}")

    def _redirect_error(self, response: requests.Response) -> str:
        location = response.headers.get("Location") or "(no Location header)"
        return self._scrub(
            f"HTTP {response.status_code} redirect to {location}: redirects are not "
            "followed; set the connector url to the final address"
        )


def masked_url(url: str) -> str:
    """`url` with its path and query masked: what may be shown of a capability URL."""
    if not _capability_part(url):
        return url
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/{MASK}"


def _capability_part(url: str) -> str:
    """Path and query, where capability URLs keep their secret; "" when there are none."""
    target = urlsplit(url)._replace(scheme="", netloc="", fragment="").geturl()
    return "" if target in ("", "/") else target


def _read_prefix(response: requests.Response, limit: int) -> bytes:
    """At most about `limit` bytes of the body; whatever arrived if the stream breaks."""
    received = bytearray()
    try:
        for chunk in response.iter_content(chunk_size=limit):
            received += chunk
            if len(received) >= limit:
                break
    except requests.RequestException:
        pass  # the status line already says what happened
    return bytes(received)
