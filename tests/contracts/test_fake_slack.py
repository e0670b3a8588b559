"""The fake Slack's answers, held to Slack's Web API spec and Block Kit models.

chat.postMessage answers are validated against tests/vendor_specs/slack-web-api.schema.json
(the spec's success schema and message object, Slack's documented error shape); the blocks
of a posted message go through slack_sdk's Block Kit models with their validation.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.fakes.slack import FAKE_TOKEN, FakeSlack
from tests.vendor_specs import SLACK, block_kit_problems, problems

AUTH = {"Authorization": f"Bearer {FAKE_TOKEN}"}
BLOCKS: list[dict[str, Any]] = [
    {"type": "header", "text": {"type": "plain_text", "text": "New lead", "emoji": True}},
    {
        "type": "section",
        "block_id": "lead",
        "text": {"type": "mrkdwn", "text": "*Jane Doe* &lt;!channel&gt;", "verbatim": True},
        "fields": [{"type": "mrkdwn", "text": "*Company*\nAcme", "verbatim": True}],
    },
    {"type": "divider"},
    {"type": "context", "elements": [{"type": "mrkdwn", "text": "via gitleads"}]},
]


def _post(fake: FakeSlack, **params: Any) -> Any:
    answer = fake.app.test_client().post("/api/chat.postMessage", json=params, headers=AUTH)
    assert answer.status_code == 200
    return answer.json


def test_a_posted_message_answer_matches_the_spec() -> None:
    fake = FakeSlack()

    answer = _post(fake, channel="C0LEADS01", text="New lead: Jane Doe", blocks=BLOCKS)

    assert answer["ok"] is True
    assert problems(SLACK, "ChatPostMessageOk", answer) == []
    assert answer["message"]["blocks"] == BLOCKS
    assert block_kit_problems(answer["message"]["blocks"]) == []


@pytest.mark.parametrize(
    ("setup", "params", "error"),
    [
        (lambda f: None, {"channel": "C0NOSUCH01", "text": "x"}, "channel_not_found"),
        (lambda f: None, {"channel": "C0LEADS01"}, "no_text"),
        (
            lambda f: f.scopes.remove("chat:write"),
            {"channel": "C0LEADS01", "text": "x"},
            "missing_scope",
        ),
        (
            lambda f: None,
            {"channel": "C0LEADS01", "blocks": [{**BLOCKS[1], "block_id": "b" * 256}]},
            "invalid_blocks",
        ),
        (
            lambda f: None,
            {"channel": "C0LEADS01", "blocks": [{"type": "section", "fields": []}]},
            "invalid_blocks",
        ),
        (
            lambda f: None,
            {
                "channel": "C0LEADS01",
                "blocks": [
                    {"type": "section", "text": {"type": "mrkdwn", "text": "x", "emoji": True}}
                ],
            },
            "invalid_blocks",
        ),
    ],
    ids=[
        "unknown channel",
        "no text",
        "missing scope",
        "long block_id",
        "empty fields",
        "emoji on mrkdwn",
    ],
)
def test_a_refusal_has_slacks_error_shape(setup: Any, params: dict[str, Any], error: str) -> None:
    fake = FakeSlack()
    setup(fake)

    answer = _post(fake, **params)

    assert answer["error"] == error
    assert problems(SLACK, "Error", answer) == []


def test_what_the_fake_refuses_slack_sdk_refuses_too() -> None:
    # The fake's Block Kit limits and the SDK's models agree on the block_id limit.
    assert block_kit_problems([{**BLOCKS[1], "block_id": "b" * 256}]) == [
        "blocks/0: block_id cannot exceed 255 characters"
    ]


def test_the_schema_refuses_a_message_with_keys_slack_does_not_send() -> None:
    # The contract has teeth: the spec's message object is closed.
    answer = _post(FakeSlack(), channel="C0LEADS01", text="hi")
    answer["message"]["payload"] = {"text": "hi"}

    assert problems(SLACK, "ChatPostMessageOk", answer) == [
        "message: Additional properties are not allowed ('payload' was unexpected)"
    ]


def test_the_incoming_webhook_answers_as_documented() -> None:
    fake = FakeSlack()
    client = fake.app.test_client()

    accepted = client.post(fake.webhook_path, json={"text": "New lead", "blocks": BLOCKS})
    refused = client.post(fake.webhook_path, json={"blocks": [{"type": "section", "fields": []}]})

    assert (accepted.status_code, accepted.mimetype, accepted.text) == (200, "text/plain", "ok")
    assert (refused.status_code, refused.text) == (400, "invalid_blocks")
