"""The Slack connector: sends each event's message with `slack-sdk` and checks the setup.

The SDK's own retry handlers are disabled. WebClient retries a connection error once by
default, which for a POST that may have reached Slack means a second message; leadrelay's
engine owns retries and backoff. Delivery is at-least-once: a timeout after Slack accepted
the message leads to a repeat on retry.
"""

from __future__ import annotations

import http.client
import logging
import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, ClassVar
from urllib.parse import urlsplit

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.webhook import WebhookClient

from leadrelay.connectors._http import scrub
from leadrelay.connectors.slack.errors import (
    api_error_text,
    classify_api_error,
    classify_webhook_answer,
    describe_error,
    header,
)
from leadrelay.connectors.slack.message import build_message
from leadrelay.connectors.slack.options import SlackOptions
from leadrelay.core.delivery.contract import (
    ConnectionCheckFailed,
    Connector,
    ConnectorOptions,
    Delivered,
    Outcome,
    Permanent,
    Retryable,
)
from leadrelay.core.schema import LeadEvent

logger = logging.getLogger(__name__)

_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{6,}$")


class SlackConnector(Connector[SlackOptions]):
    type_name: ClassVar[str] = "slack"
    options_model: ClassVar[type[ConnectorOptions]] = SlackOptions
    # One message per event; chat.postMessage has no batch form.
    batch_size: ClassVar[int] = 1
    delivery_guarantee: ClassVar[str] = "at-least-once"

    def __init__(self, name: str, options: SlackOptions) -> None:
        super().__init__(name, options)
        timeout = options.timeout
        self._secrets = _secret_fragments(options)
        sdk_logger = _sdk_logger(name, self._secrets)
        self._web: WebClient | None = None
        self._webhook: WebhookClient | None = None
        # retry_handlers=[]: see the module docstring; the engine retries, not the SDK.
        if options.webhook_url is not None:
            self._webhook = WebhookClient(
                url=options.webhook_url.get_secret_value(),
                timeout=timeout,  # type: ignore[arg-type]  # urllib takes float seconds
                retry_handlers=[],
                logger=sdk_logger,
            )
        else:
            assert options.token is not None
            self._web = WebClient(
                token=options.token.get_secret_value(),
                base_url=options.base_url,
                timeout=timeout,  # type: ignore[arg-type]
                retry_handlers=[],
                logger=sdk_logger,
            )

    # -- what is sent

    def payload(self, event: LeadEvent) -> dict[str, Any]:
        """The exact JSON body posted for this event."""
        message = build_message(event)
        body: dict[str, Any] = {}
        if self.options.channel:
            body["channel"] = self.options.channel
        body.update(message)
        # A lead's website unfurling under every message is noise.
        body["unfurl_links"] = False
        body["unfurl_media"] = False
        return body

    def preview(self, event: LeadEvent) -> dict[str, Any]:
        target = (
            f"chat.postMessage to {self.options.channel}"
            if self._web is not None
            else "incoming webhook"
        )
        return {"target": target, "payload": self.payload(event)}

    # -- sending

    def send(self, batch: Sequence[LeadEvent]) -> list[Outcome]:
        return [self._send_one(event) for event in batch]

    def _send_one(self, event: LeadEvent) -> Outcome:
        body = self.payload(event)
        try:
            if self._webhook is not None:
                answer = self._webhook.send_dict(body)
                outcome = classify_webhook_answer(
                    answer.status_code, answer.body or "", answer.headers
                )
            else:
                assert self._web is not None
                response = self._web.chat_postMessage(**body)
                outcome = Delivered(
                    f"posted to {response.get('channel', self.options.channel)} "
                    f"(ts {response.get('ts')})"
                )
        except SlackApiError as exc:
            answer_data = exc.response.data if isinstance(exc.response.data, dict) else {}
            outcome = classify_api_error(
                exc.response.status_code, answer_data, exc.response.headers, self.options.channel
            )
        except (OSError, http.client.HTTPException) as exc:
            # URLError (refused, DNS), socket timeouts, resets: the engine retries.
            outcome = Retryable(f"cannot reach Slack: {_network_reason(exc)}")
        except SlackClientError as exc:
            outcome = Permanent(f"Slack client refused the request: {exc}")
        return _scrubbed(outcome, *self._secrets)

    # -- checks

    def check_connection(self) -> None:
        """Token mode: auth.test, the chat:write scope, and the channel where it can be seen.

        Webhook mode: Slack has no read-only check for an incoming webhook. We POST a body
        with no message (`null`): a live webhook answers 400 `invalid_payload` (or
        `no_text` / `missing_text_or_fallback_or_attachments`) and posts nothing, while a
        dead one answers `no_service`, `invalid_token`, `no_team`… A 400 proves the URL is
        live; it cannot prove that the channel still accepts posts (archived channels are
        only reported on a real post).
        """
        try:
            if self._webhook is not None:
                self._check_webhook(self._webhook)
            else:
                assert self._web is not None
                self._check_token(self._web)
        except ConnectionCheckFailed as exc:
            raise ConnectionCheckFailed(scrub(str(exc), *self._secrets)) from None
        except (OSError, http.client.HTTPException) as exc:
            raise ConnectionCheckFailed(
                scrub(f"cannot reach Slack: {_network_reason(exc)}", *self._secrets)
            ) from None

    def _check_webhook(self, client: WebhookClient) -> None:
        answer = client.send_dict({})
        code = (answer.body or "").strip()
        if answer.status_code == 400 and code in (
            "invalid_payload",
            "no_text",
            "missing_text_or_fallback_or_attachments",
        ):
            return
        if 200 <= answer.status_code < 300:
            return
        outcome = classify_webhook_answer(answer.status_code, code, answer.headers)
        raise ConnectionCheckFailed(f"incoming webhook check failed: {outcome.message}")

    def _check_token(self, client: WebClient) -> None:
        channel = self.options.channel or ""
        try:
            auth = client.auth_test()
        except SlackApiError as exc:
            raise ConnectionCheckFailed(f"auth.test failed: {api_error_text(exc, None)}") from None
        scopes_header = header(auth.headers, "X-OAuth-Scopes")
        scopes = {s.strip() for s in scopes_header.split(",")} if scopes_header else None
        if scopes is not None and "chat:write" not in scopes:
            raise ConnectionCheckFailed(
                f"the token lacks the chat:write scope (it has {scopes_header}); add it under "
                "OAuth & Permissions and reinstall the app"
            )
        if not _CHANNEL_ID.match(channel):
            logger.info(
                "slack connector %r: channel %r is a name, not an ID; it is checked on the "
                "first post (use the channel ID to have it checked now)",
                self.name,
                channel,
            )
            return
        try:
            info = client.conversations_info(channel=channel)
        except SlackApiError as exc:
            data = exc.response.data if isinstance(exc.response.data, dict) else {}
            if data.get("error") == "missing_scope":
                logger.warning(
                    "slack connector %r: cannot verify channel %s without the %s scope; "
                    "it is checked on the first post",
                    self.name,
                    channel,
                    data.get("needed", "channels:read"),
                )
                return
            raise ConnectionCheckFailed(
                f"conversations.info failed: {api_error_text(exc, channel)}"
            ) from None
        details = info.get("channel") or {}
        if details.get("is_archived"):
            raise ConnectionCheckFailed(describe_error("is_archived", channel=channel))
        public_posting = scopes is not None and "chat:write.public" in scopes
        if details.get("is_member") is False and not (
            public_posting and not details.get("is_private")
        ):
            raise ConnectionCheckFailed(describe_error("not_in_channel", channel=channel))

    def close(self) -> None:
        """Nothing to release: the SDK opens one urllib connection per request."""


# -- small helpers ------------------------------------------------------------------------


def _secret_fragments(options: SlackOptions) -> tuple[str, ...]:
    """The token, and the webhook URL with the parts of it that are enough to post."""
    fragments: list[str] = []
    if options.token is not None:
        fragments.append(options.token.get_secret_value())
    if options.webhook_url is not None:
        url = options.webhook_url.get_secret_value()
        path = urlsplit(url).path
        fragments += [url, path]
        last_segment = path.rstrip("/").rsplit("/", 1)[-1]
        if len(last_segment) >= 8:
            fragments.append(last_segment)
    # Longest first, so a URL is replaced whole rather than around its path.
    return tuple(sorted((f for f in fragments if f), key=len, reverse=True))


class _ScrubSecrets(logging.Filter):
    """Removes this connector's secrets from what the SDK logs (bodies, URLs, errors)."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub(record.getMessage(), *self.secrets)
        record.args = None
        return True


def _sdk_logger(connector_name: str, secrets: tuple[str, ...]) -> logging.Logger:
    """A logger for the SDK that never shows secrets.

    The SDK logs whole request URLs and bodies at DEBUG (the webhook URL is the secret) and
    response bodies at ERROR; INFO as the floor skips the dumps, the filter scrubs the rest.
    """
    sdk_logger = logging.getLogger(f"{__name__}.sdk.{connector_name}")
    sdk_logger.setLevel(logging.INFO)
    existing = next((f for f in sdk_logger.filters if isinstance(f, _ScrubSecrets)), None)
    if existing is None:
        sdk_logger.addFilter(_ScrubSecrets(secrets))
    else:
        # Another instance of this connector (a reload, a rotated token) logs here too:
        # keep scrubbing its secrets as well.
        existing.secrets = tuple(sorted({*existing.secrets, *secrets}, key=len, reverse=True))
    return sdk_logger


def _network_reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)  # URLError wraps the socket error
    inner = reason if isinstance(reason, BaseException) else exc
    if isinstance(inner, TimeoutError) or "timed out" in str(inner):
        return "timed out"
    text = getattr(inner, "strerror", None) or str(inner) or type(inner).__name__
    return str(text)


def _scrubbed(outcome: Outcome, *secrets: str) -> Outcome:
    return replace(outcome, message=scrub(outcome.message, *secrets))
