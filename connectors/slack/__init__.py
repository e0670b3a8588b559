"""Slack: one Block Kit message per lead event, on the official `slack-sdk`.

Two modes, exactly one per connector (`options.py`):

- `webhook_url`: an incoming webhook (`slack_sdk.webhook.WebhookClient`). The URL is a
  secret (anyone holding it can post), so it is a `SecretStr` and never shown.
- `token` + `channel`: a bot token and `chat.postMessage` (`slack_sdk.WebClient`).
  `base_url` points the client elsewhere (tests use a local fake).

Decisions worth knowing:

- Lead text is untrusted: it is escaped (`&`, `<`, `>`) so it can neither ping nor link,
  and the mrkdwn text objects built from it are `verbatim` (`message.py`).
- Block Kit limits (header 150, section 3000, field 2000, 10 fields, 50 blocks, message
  text 40,000) are respected by cutting text with an ellipsis, never inside an entity.
  Long values (a 10,000-character bio) are cut much shorter, to a readable preview,
  which also keeps the message under Slack's undocumented total-size limit
  (`msg_blocks_too_long`).
- Delivery is at-least-once: the SDK's retries are off (the engine owns them), and a
  timeout after Slack accepted a message leads to a repeat on retry (`connector.py`).
- Outcomes (`errors.py`): ok → Delivered; HTTP 429 or `ratelimited` → RateLimited with
  Retry-After; 5xx, 408, network errors, timeouts and Slack's transient codes
  (`internal_error`, `fatal_error`, `service_unavailable`, `request_timeout`) → Retryable;
  every other error → Permanent with Slack's error code and a hint on how to fix it.
"""

from leadrelay.connectors.slack.connector import SlackConnector
from leadrelay.connectors.slack.options import SlackOptions

__all__ = ["SlackConnector", "SlackOptions"]
