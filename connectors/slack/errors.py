"""What Slack's answers mean: outcomes for refused posts, and hints on how to fix them.

Slack's own codes come first (`ratelimited`, the transient ones), then the HTTP status
through the shared table in `connectors._http`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from slack_sdk.errors import SlackApiError

from leadrelay.connectors._http import Failure, failure_outcome, parse_retry_after, status_failure
from leadrelay.core.delivery.contract import Delivered, Outcome

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


def header(headers: Mapping[str, Any] | None, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name.lower():
            return value[0] if isinstance(value, list) and value else str(value)
    return None


def describe_error(
    code: str, data: Mapping[str, Any] | None = None, channel: str | None = None
) -> str:
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
    return _classify(status, code, headers, data, describe_error(code, data, channel))


def classify_webhook_answer(status: int, body: str, headers: Mapping[str, Any]) -> Outcome:
    """An outcome for an incoming webhook answer: plain-text codes, meaningful status."""
    code = body.strip()[:200] or f"http_{status}"
    if 200 <= status < 300:
        return Delivered("posted via incoming webhook")
    return _classify(status, code, headers, {}, f"HTTP {status}, {describe_error(code)}")


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
        Failure.RETRY: f"Slack answered HTTP {status}: {describe_error(code, data)}",
        Failure.PERMANENT: refusal,
    }[failure]
    retry_after = parse_retry_after(header(headers, "Retry-After"), _DEFAULT_RETRY_AFTER)
    return failure_outcome(failure, message, retry_after=retry_after)


def api_error_text(exc: SlackApiError, channel: str | None) -> str:
    data = exc.response.data if isinstance(exc.response.data, dict) else {}
    code = str(data.get("error") or f"http_{exc.response.status_code}")
    return describe_error(code, data, channel)
