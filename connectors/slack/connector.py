"""Slack connector: one Block Kit message per lead event, on the official `slack-sdk`.

Two modes, exactly one per connector:

- `webhook_url`: an incoming webhook (`slack_sdk.webhook.WebhookClient`). The URL is a
  secret (anyone holding it can post), so it is a `SecretStr` and never shown.
- `token` + `channel`: a bot token and `chat.postMessage` (`slack_sdk.WebClient`).
  `base_url` points the client elsewhere (tests use a local fake).

Decisions worth knowing:

- Lead text is untrusted. Every piece of it is escaped for Slack (`&`, `<`, `>`), so a
  lead named `<!channel>` shows that text and pings no one, and `<https://evil|click>`
  is not a link. Link markup is built only from URLs that parse as http(s) with a host.
  Mrkdwn emphasis characters (`*`, `_`, `~`) are left alone: they can only restyle text.
- Block Kit limits (header 150, section 3000, field 2000, 10 fields, 50 blocks, message
  text 40,000) are respected by cutting text with an ellipsis, never inside an entity.
  Long values (a 10,000-character bio) are cut much shorter, to a readable preview,
  which also keeps the message under Slack's undocumented total-size limit
  (`msg_blocks_too_long`).
- The SDK's own retry handlers are disabled. WebClient retries a connection error once
  by default, which for a POST that may have reached Slack means a second message;
  leadrelay's engine owns retries and backoff. Delivery is at-least-once: a timeout
  after Slack accepted the message leads to a repeat on retry.
- Outcomes: ok → Delivered; HTTP 429 or `ratelimited` → RateLimited with Retry-After;
  5xx, 408, network errors, timeouts and Slack's transient codes (`internal_error`,
  `fatal_error`, `service_unavailable`, `request_timeout`) → Retryable; every other
  error → Permanent with Slack's error code and a hint on how to fix it.
"""

from __future__ import annotations

import http.client
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.webhook import WebhookClient

from leadrelay.connectors._http import (
    Failure,
    failure_outcome,
    parse_retry_after,
    scrub,
    status_failure,
)
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

DEFAULT_BASE_URL = "https://slack.com/api/"

# Block Kit and chat.postMessage limits (docs.slack.dev, "Block Kit" reference).
HEADER_TEXT_LIMIT = 150
SECTION_TEXT_LIMIT = 3000
FIELD_TEXT_LIMIT = 2000
FIELDS_PER_SECTION_LIMIT = 10
BLOCKS_PER_MESSAGE_LIMIT = 50
MESSAGE_TEXT_LIMIT = 40_000

# Our own, tighter budgets: a salesperson scans the message; the full record is in the CRM.
_FIELD_VALUE_BUDGET = 300
_ACTIVITY_TEXT_BUDGET = 1500
_BIO_BUDGET = 600
_FALLBACK_TEXT_BUDGET = 1000
# Per link target, escaped: four links and their separators stay under one section's 3000.
_URL_BUDGET = 700

_DEFAULT_RETRY_AFTER = 30.0

# Slack error codes that are worth retrying; every other code is permanent.
_TRANSIENT_ERRORS = frozenset(
    {
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
        "team_added_to_org",
        "org_login_required",
        "rollup_error",
    }
)

# What to do about a permanent error, by Slack's error code.
_HINTS: dict[str, str] = {
    "not_authed": "no token was sent; set `token` to the bot token (xoxb-…)",
    "invalid_auth": "the token is not valid (mistyped, rotated or from another workspace); "
    "copy the Bot User OAuth Token again",
    "account_inactive": "the token belongs to a deleted user or workspace",
    "token_revoked": "the token was revoked (app uninstalled?); reinstall the app and update "
    "`token`",
    "token_expired": "the token expired (token rotation is on); use a non-rotating bot token",
    "not_allowed_token_type": "this token type cannot post; use the bot token (xoxb-…)",
    "no_permission": "the token lacks permission for this channel",
    "ekm_access_denied": "workspace administrators have suspended posting",
    "channel_not_found": "the channel does not exist or the app cannot see it; use the "
    "channel ID and invite the app to private channels",
    "not_in_channel": "the app is not a member of the channel; `/invite` the app there or add "
    "the chat:write.public scope",
    "is_archived": "the channel is archived; unarchive it or set another `channel`",
    "restricted_action": "a workspace preference prevents the app from posting there",
    "restricted_action_read_only_channel": "the channel is read-only for the app",
    "invalid_blocks": "Slack refused the message layout (a leadrelay bug: please report it)",
    "invalid_blocks_format": "Slack refused the message layout (a leadrelay bug: please report it)",
    "msg_too_long": "the message text is too long",
    "msg_blocks_too_long": "the message blocks are too long in total",
    "no_text": "the message had no text",
    "too_many_attachments": "too many attachments",
    # Incoming webhooks answer with plain-text codes.
    "invalid_payload": "Slack could not read the request body",
    "missing_text_or_fallback_or_attachments": "the message had no text",
    "invalid_token": "the webhook URL is not valid (mistyped or regenerated); copy it again",
    "no_service": "the webhook was removed or its app uninstalled; create a new webhook URL",
    "no_service_id": "the webhook URL is incomplete; copy it again",
    "no_team": "the workspace of this webhook no longer exists",
    "team_disabled": "the workspace of this webhook is disabled",
    "no_active_hooks": "the webhook is disabled; enable it or create a new one",
    "channel_is_archived": "the webhook's channel is archived; create a webhook for another "
    "channel",
    "action_prohibited": "an administrator restricted posting to this channel",
    "posting_to_general_channel_denied": "only admins may post to the workspace's general "
    "channel; choose another channel for the webhook",
    "user_not_found": "the user in the request does not exist",
}

_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{6,}$")
_GITHUB_USERNAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")
_LINKEDIN_USERNAME = re.compile(r"^[A-Za-z0-9_-]{3,100}$")
_PARTIAL_ENTITY = re.compile(r"&(?:a|am|amp|l|lt|g|gt)?$")
_MRKDWN_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})

_TITLES: dict[str, str] = {
    "lead.created": "New lead",
    "lead.updated": "Lead updated",
    "lead.enriched": "Lead enriched",
    "lead.deleted": "Lead deleted",
    "lead.activity": "Lead activity",
}

# Activity kind -> (verb, whether the verb takes the activity's target as its object).
_ACTIVITY_VERBS: dict[str, tuple[str, bool]] = {
    "star": ("starred", True),
    "issue": ("opened an issue in", True),
    "pull_request": ("opened a pull request in", True),
    "code": ("mentioned you in code in", True),
    "comment": ("commented", False),
    "like": ("liked", True),
    "profile_visit": ("visited your profile", False),
    "dm": ("exchanged a DM", False),
    "email_captured": ("left their email", False),
    "form_submitted": ("submitted a form", False),
    "stage_changed": ("moved to stage", True),
    "assigned": ("was assigned to", True),
}
# Where providers put the thing an activity was about (repository, post, form…).
_ACTIVITY_TARGET_KEYS = ("signal_source", "repository", "repo", "post", "target", "form")


# -- options ------------------------------------------------------------------------------


class SlackOptions(ConnectorOptions):
    """`webhook_url`, or `token` + `channel`; never both."""

    # Validation errors must not echo the input: it holds the token or webhook URL.
    model_config = ConfigDict(hide_input_in_errors=True)

    type: Literal["slack"] = "slack"
    webhook_url: SecretStr | None = None
    token: SecretStr | None = None
    channel: str | None = None
    base_url: str = DEFAULT_BASE_URL
    timeout: float = Field(default=10.0, gt=0, le=300)

    @field_validator("base_url")
    @classmethod
    def _http_base_url(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("must be an http(s) URL, e.g. https://slack.com/api/")
        return value if value.endswith("/") else value + "/"

    @model_validator(mode="after")
    def _exactly_one_mode(self) -> SlackOptions:
        has_webhook = self.webhook_url is not None
        has_token = self.token is not None
        if has_webhook == has_token:
            raise ValueError(
                "set exactly one of `webhook_url` (incoming webhook) or `token` + `channel` "
                "(chat.postMessage)"
            )
        if has_webhook:
            if self.channel is not None:
                raise ValueError(
                    "`channel` only applies with `token`: an incoming webhook posts to the "
                    "channel chosen when it was created"
                )
            url = self.webhook_url.get_secret_value() if self.webhook_url else ""
            if urlsplit(url).scheme not in ("http", "https"):
                raise ValueError("`webhook_url` must be an https:// URL (hooks.slack.com/…)")
        elif not self.channel:
            raise ValueError("`token` needs `channel` (a channel ID such as C0123ABCD, or #name)")
        return self


# -- message building ---------------------------------------------------------------------


def escape_mrkdwn(text: str) -> str:
    """Escape the three characters Slack treats as control characters."""
    return text.translate(_MRKDWN_ESCAPES)


def fit(escaped: str, limit: int) -> str:
    """Cut already-escaped text to at most `limit` characters, ending in an ellipsis.

    Never cuts inside an entity (`&amp;`), which would leave a stray `&` behind.
    """
    if len(escaped) <= limit:
        return escaped
    cut = _PARTIAL_ENTITY.sub("", escaped[: limit - 1])
    return cut + "…"


def _text(value: str, limit: int) -> str:
    return fit(escape_mrkdwn(value), limit)


def safe_link(url: str | None, label: str) -> str | None:
    """`<url|label>` markup for an http(s) URL with a host, else None.

    The URL is escaped and `|` percent-encoded so it cannot end the link early; the label
    is escaped like any lead text.
    """
    if not url:
        return None
    url = url.strip()
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not host:
        return None
    target = escape_mrkdwn(url).replace("|", "%7C")
    if len(target) > _URL_BUDGET:
        return None  # a cut URL would lead somewhere else
    return f"<{target}|{escape_mrkdwn(label)}>"


def _display_name(event: LeadEvent) -> str:
    lead = event.lead
    joined = " ".join(p for p in (lead.first_name, lead.last_name) if p)
    return (
        lead.full_name
        or joined
        or lead.email
        or lead.github_username
        or lead.linkedin_username
        or lead.key
    )


def describe_activity(event: LeadEvent) -> str | None:
    """What the lead did, in words, unescaped: "starred competitor/their-sdk"."""
    activity = event.activity
    if activity is None:
        return None
    verb, takes_object = _ACTIVITY_VERBS.get(
        activity.kind, (activity.kind.replace("_", " "), False)
    )
    target = next(
        (
            str(activity.context[key])
            for key in _ACTIVITY_TARGET_KEYS
            if isinstance(activity.context.get(key), str) and activity.context[key]
        ),
        None,
    )
    if takes_object and target:
        return f"{verb} {target}"
    if target:
        return f"{verb} ({target})"
    return verb


def _links(event: LeadEvent) -> list[str]:
    lead = event.lead
    github = lead.github_url
    if not github and lead.github_username and _GITHUB_USERNAME.match(lead.github_username):
        github = f"https://github.com/{lead.github_username}"
    linkedin = lead.linkedin_url
    if not linkedin and lead.linkedin_username and _LINKEDIN_USERNAME.match(lead.linkedin_username):
        linkedin = f"https://www.linkedin.com/in/{lead.linkedin_username}"
    candidates = [
        safe_link(github, "GitHub"),
        safe_link(linkedin, "LinkedIn"),
        safe_link(lead.website, "Website"),
        safe_link(event.activity.url if event.activity else None, "Activity"),
    ]
    return [link for link in candidates if link]


def _format_score(score: float) -> str:
    return str(int(score)) if score.is_integer() else f"{score:g}"


def _format_time(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None


def build_message(event: LeadEvent) -> dict[str, Any]:
    """The `text` fallback and Block Kit `blocks` for one lead event, within Slack's limits."""
    lead = event.lead
    title = _TITLES.get(event.type, event.type)
    name = _display_name(event)
    role = " at ".join(p for p in (lead.title, lead.company) if p)

    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": _text(f"{title}: {name}", HEADER_TEXT_LIMIT),
                "emoji": False,
            },
        }
    ]

    who_lines = [f"*{_text(name, 200)}*"]
    role_parts = [_text(lead.title, 300)] if lead.title else []
    if lead.company:
        role_parts.append(f"*{_text(lead.company, 300)}*")
    if role_parts:
        who_lines.append(" at ".join(role_parts))
    if lead.email:
        who_lines.append(_text(lead.email, 320))
    who = "\n".join(who_lines)
    blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": who}})

    activity_words = describe_activity(event)
    if activity_words and event.activity is not None:
        did = f"*What they did:* {_text(activity_words, 500)}"
        if event.activity.text:
            quoted = _text(event.activity.text, _ACTIVITY_TEXT_BUDGET)
            did += "\n" + "\n".join(f">{line}" for line in quoted.splitlines())
        if event.activity.campaign:
            did += f"\n_Campaign:_ {_text(event.activity.campaign, 200)}"
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": fit(did, SECTION_TEXT_LIMIT)}}
        )

    facts: list[tuple[str, str | None]] = [
        ("Location", lead.location),
        ("Phone", lead.phone),
        ("Score", _format_score(lead.score) if lead.score is not None else None),
        ("Stage", lead.stage or lead.status),
        ("Owner", lead.owner),
        ("Tags", ", ".join(lead.tags) if lead.tags else None),
        ("Source", f"{event.source} ({event.provider})"),
    ]
    fields = [
        {"type": "mrkdwn", "text": f"*{label}*\n{_text(value, _FIELD_VALUE_BUDGET)}"}
        for label, value in facts
        if value
    ][:FIELDS_PER_SECTION_LIMIT]
    blocks.append({"type": "section", "fields": fields})

    if lead.bio:
        bio = "_" + _text(" ".join(lead.bio.split()), _BIO_BUDGET) + "_"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": bio}})

    links = _links(event)
    if links:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "  ·  ".join(links)}})

    context = " · ".join(
        p
        for p in (
            _text(event.provider_event, 100),
            _text(_format_time(event.occurred_at) or "", 40),
            _text(event.event_id, 60),
        )
        if p
    )
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})

    summary = f"{title}: {name}"
    if role:
        summary += f" ({role})"
    if activity_words:
        summary += f" {activity_words}"
    text = _text(summary, _FALLBACK_TEXT_BUDGET)

    return {"text": fit(text, MESSAGE_TEXT_LIMIT), "blocks": blocks[:BLOCKS_PER_MESSAGE_LIMIT]}


# -- outcome classification ---------------------------------------------------------------


def _header(headers: Mapping[str, Any] | None, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name.lower():
            return value[0] if isinstance(value, list) and value else str(value)
    return None


def _describe(code: str, data: Mapping[str, Any] | None = None, channel: str | None = None) -> str:
    """Slack's code, what it means for the user, and Slack's own details where it gave any."""
    data = data or {}
    if code == "missing_scope":
        needed = data.get("needed") or "unknown"
        provided = data.get("provided")
        hint = f"the token lacks the {needed} scope"
        if provided:
            hint += f" (it has {provided})"
        hint += "; add it under OAuth & Permissions and reinstall the app"
    else:
        hint = _HINTS.get(code, "")
    if channel and code in ("channel_not_found", "not_in_channel", "is_archived"):
        hint = f"{channel}: {hint}"
    message = f"Slack error {code}"
    if hint:
        message += f": {hint}"
    details = (data.get("response_metadata") or {}).get("messages") or data.get("errors")
    if isinstance(details, list) and details:
        message += " (" + "; ".join(str(d) for d in details[:5]) + ")"
    return message


def classify_api_error(
    status: int, data: Mapping[str, Any], headers: Mapping[str, Any], channel: str | None
) -> Outcome:
    """An outcome for a Web API answer that was not `ok`."""
    code = str(data.get("error") or f"http_{status}")
    return _classify(status, code, headers, data, _describe(code, data, channel))


def classify_webhook_answer(status: int, body: str, headers: Mapping[str, Any]) -> Outcome:
    """An outcome for an incoming webhook answer: plain-text codes, meaningful status."""
    code = body.strip()[:200] or f"http_{status}"
    if 200 <= status < 300:
        return Delivered("posted via incoming webhook")
    return _classify(status, code, headers, {}, f"HTTP {status}, {_describe(code)}")


def _classify(
    status: int, code: str, headers: Mapping[str, Any], data: Mapping[str, Any], refusal: str
) -> Outcome:
    """Slack's own codes first (`ratelimited`, transient ones), then the HTTP status."""
    if code == "ratelimited":
        failure = Failure.RATE_LIMITED
    elif code in _TRANSIENT_ERRORS:
        failure = Failure.RETRY
    else:
        failure = status_failure(status)
    message = {
        Failure.RATE_LIMITED: f"Slack rate limit ({code})",
        Failure.RETRY: f"Slack answered HTTP {status}: {_describe(code, data)}",
        Failure.PERMANENT: refusal,
    }[failure]
    retry_after = parse_retry_after(_header(headers, "Retry-After"), _DEFAULT_RETRY_AFTER)
    return failure_outcome(failure, message, retry_after=retry_after)


# -- connector ----------------------------------------------------------------------------


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
            raise ConnectionCheckFailed(f"auth.test failed: {_api_error_text(exc, None)}") from None
        scopes_header = _header(auth.headers, "X-OAuth-Scopes")
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
                f"conversations.info failed: {_api_error_text(exc, channel)}"
            ) from None
        details = info.get("channel") or {}
        if details.get("is_archived"):
            raise ConnectionCheckFailed(_describe("is_archived", channel=channel))
        public_posting = scopes is not None and "chat:write.public" in scopes
        if details.get("is_member") is False and not (
            public_posting and not details.get("is_private")
        ):
            raise ConnectionCheckFailed(_describe("not_in_channel", channel=channel))

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


def _api_error_text(exc: SlackApiError, channel: str | None) -> str:
    data = exc.response.data if isinstance(exc.response.data, dict) else {}
    code = str(data.get("error") or f"http_{exc.response.status_code}")
    return _describe(code, data, channel)


def _scrubbed(outcome: Outcome, *secrets: str) -> Outcome:
    return replace(outcome, message=scrub(outcome.message, *secrets))
