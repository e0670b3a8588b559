"""Slack connector options: an incoming webhook, or a bot token and a channel."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from leadrelay.core.delivery.contract import ConnectorOptions

DEFAULT_BASE_URL = "https://slack.com/api/"


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
