"""Slack connector through the real slack-sdk against the local fake Slack."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from pydantic import ValidationError

from leadrelay.connectors.slack import SlackConnector, SlackOptions
from leadrelay.connectors.slack.message import build_message, fit
from leadrelay.core.delivery.contract import (
    ConnectionCheckFailed,
    Delivered,
    Permanent,
    RateLimited,
    Retryable,
)
from leadrelay.core.delivery.registry import connector_class
from leadrelay.core.schema import Activity
from tests.factories import make_event
from tests.fakes.server import RunningServer, serve
from tests.fakes.slack import MAX_FIELD_TEXT, MAX_HEADER, MAX_SECTION_TEXT, FakeSlack

STAR = Activity(
    kind="star",
    text="Starred on 2026-04-24",
    url="https://github.com/competitor/their-sdk",
    context={"signal_source": "competitor/their-sdk"},
)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # The SDK routes every request through $HTTPS_PROXY when set, loopback included.
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def _served() -> Iterator[tuple[FakeSlack, RunningServer]]:
    # One server for the module (stopping one costs half a second); state resets per test.
    shared = FakeSlack()
    with serve(shared.app) as running:
        yield shared, running


@pytest.fixture
def fake(_served: tuple[FakeSlack, RunningServer]) -> Iterator[FakeSlack]:
    shared = _served[0]
    shared.reset()
    yield shared
    shared.release()


@pytest.fixture
def server(_served: tuple[FakeSlack, RunningServer], fake: FakeSlack) -> RunningServer:
    return _served[1]


def token_connector(server: RunningServer, fake: FakeSlack, **overrides: Any) -> SlackConnector:
    options: dict[str, Any] = {
        "type": "slack",
        "token": fake.token,
        "channel": "C0LEADS01",
        "base_url": f"{server.base_url}/api/",
        "timeout": 2,
    }
    options.update(overrides)
    return SlackConnector("sales-slack", SlackOptions.model_validate(options))


def webhook_connector(
    server: RunningServer, fake: FakeSlack, path: str | None = None, **overrides: Any
) -> SlackConnector:
    options: dict[str, Any] = {
        "type": "slack",
        "webhook_url": server.base_url + (path or fake.webhook_path),
        "timeout": 2,
    }
    options.update(overrides)
    return SlackConnector("sales-hook", SlackOptions.model_validate(options))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def all_texts(node: Any) -> list[str]:
    """Every `text` string in a Block Kit structure."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "text" and isinstance(value, str):
                found.append(value)
            else:
                found.extend(all_texts(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(all_texts(item))
    return found


# -- options ------------------------------------------------------------------------------


def test_registry_resolves_the_slack_type() -> None:
    assert connector_class("slack") is SlackConnector


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "exactly one of `webhook_url`"),
        (
            {
                "webhook_url": "https://hooks.slack.com/services/T1/B1/s3cr3t",
                "token": "xoxb-s3cr3t",
            },
            "exactly one of `webhook_url`",
        ),
        ({"token": "xoxb-s3cr3t"}, "`token` needs `channel`"),
        (
            {"webhook_url": "https://hooks.slack.com/services/T1/B1/s3cr3t", "channel": "C1"},
            "`channel` only applies with `token`",
        ),
        ({"webhook_url": "ftp://hooks.slack.com/services/T1/B1/s3cr3t"}, "https:// URL"),
        ({"token": "xoxb-s3cr3t", "channel": "C1", "base_url": "file:///etc"}, "http(s) URL"),
    ],
)
def test_options_need_exactly_one_mode(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        SlackOptions.model_validate({"type": "slack", **options})
    assert message in str(caught.value)
    assert "s3cr3t" not in str(caught.value)


def test_secrets_are_not_in_repr(server: RunningServer, fake: FakeSlack) -> None:
    token_mode = token_connector(server, fake)
    webhook_mode = webhook_connector(server, fake)
    for connector in (token_mode, webhook_mode):
        shown = repr(connector) + repr(connector.options) + str(connector.options)
        assert fake.token not in shown
        assert fake.webhook_secret not in shown
        assert "**********" in shown


# -- delivery -----------------------------------------------------------------------------


def test_token_mode_posts_one_block_kit_message(server: RunningServer, fake: FakeSlack) -> None:
    connector = token_connector(server, fake)
    event = make_event(type="lead.created", activity=STAR, location="Berlin", score=42)

    outcomes = connector.send([event])

    assert len(outcomes) == 1
    assert isinstance(outcomes[0], Delivered)
    assert "C0LEADS01" in outcomes[0].message
    [message] = fake.messages["C0LEADS01"]
    assert message["blocks"][0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "New lead: Jane Doe", "emoji": False},
    }
    assert message["blocks"][1]["text"]["text"] == (
        "*Jane Doe*\nStaff Engineer at *Vercel*\njane@example.com"
    )
    assert message["blocks"][2]["text"]["text"] == (
        "*What they did:* starred competitor/their-sdk\n>Starred on 2026-04-24"
    )
    field_texts = [f["text"] for f in message["blocks"][3]["fields"]]
    assert field_texts == [
        "*Location*\nBerlin",
        "*Score*\n42",
        "*Source*\ngitleads (gitleads)",
    ]
    links = message["blocks"][4]["text"]["text"]
    assert links == (
        "<https://github.com/jdoe|GitHub>  ·  <https://github.com/competitor/their-sdk|Activity>"
    )
    assert message["text"] == (
        "New lead: Jane Doe (Staff Engineer at Vercel) starred competitor/their-sdk"
    )
    [post] = [r for r in fake.requests if r.path == "/api/chat.postMessage"]
    assert post.headers["Authorization"] == f"Bearer {fake.token}"
    assert post.json() == connector.preview(event)["payload"]


def test_webhook_mode_posts_the_same_message(server: RunningServer, fake: FakeSlack) -> None:
    connector = webhook_connector(server, fake)
    event = make_event(
        type="lead.activity",
        activity=Activity(kind="comment", text="Great post on <b>SDKs</b> & more"),
        linkedin_username="jane-doe",
    )

    outcomes = connector.send([event])

    assert outcomes == [Delivered("posted via incoming webhook")]
    [message] = fake.messages["C0LEADS01"]
    assert message["blocks"][0]["text"]["text"] == "Lead activity: Jane Doe"
    assert message["blocks"][2]["text"]["text"] == (
        "*What they did:* commented\n>Great post on &lt;b&gt;SDKs&lt;/b&gt; &amp; more"
    )
    assert "<https://www.linkedin.com/in/jane-doe|LinkedIn>" in message["blocks"][4]["text"]["text"]
    preview = connector.preview(event)
    assert preview["target"] == "incoming webhook"
    assert "channel" not in preview["payload"]
    [post] = [r for r in fake.requests if r.path == fake.webhook_path]
    assert post.json() == preview["payload"]


def test_a_batch_gets_one_message_and_one_outcome_per_event(
    server: RunningServer, fake: FakeSlack
) -> None:
    connector = token_connector(server, fake, channel="#leads")
    events = [make_event(full_name=f"Lead {i}") for i in range(3)]

    outcomes = connector.send(events)

    assert [type(o) for o in outcomes] == [Delivered, Delivered, Delivered]
    assert [m["blocks"][0]["text"]["text"] for m in fake.messages["C0LEADS01"]] == [
        "New lead: Lead 0",
        "New lead: Lead 1",
        "New lead: Lead 2",
    ]


# -- escaping -----------------------------------------------------------------------------


def test_lead_text_is_escaped_so_nobody_is_pinged(server: RunningServer, fake: FakeSlack) -> None:
    connector = webhook_connector(server, fake)
    event = make_event(
        full_name="<!channel>",
        title="<https://evil.example|click>",
        company="Smith & <!here> Sons",
        email="<@U123>@example.com",
        activity=Activity(kind="comment", text="<!everyone> see <https://evil|click>"),
    )

    assert isinstance(connector.send([event])[0], Delivered)

    [message] = fake.messages["C0LEADS01"]
    blocks = message["blocks"]
    assert blocks[0]["text"]["text"] == "New lead: &lt;!channel&gt;"
    assert blocks[1]["text"]["text"] == (
        "*&lt;!channel&gt;*\n"
        "&lt;https://evil.example|click&gt; at *Smith &amp; &lt;!here&gt; Sons*\n"
        "&lt;@U123&gt;@example.com"
    )
    assert blocks[2]["text"]["text"] == (
        "*What they did:* commented\n>&lt;!everyone&gt; see &lt;https://evil|click&gt;"
    )
    assert message["text"].startswith("New lead: &lt;!channel&gt; (&lt;https://evil.example|click")
    body = json.dumps(message["payload"])
    for raw in ("<!channel>", "<!here>", "<!everyone>", "<@U123>", "<https://evil"):
        assert raw not in body


def test_only_validated_http_urls_become_links(server: RunningServer, fake: FakeSlack) -> None:
    event = make_event(
        github_url="javascript:alert(1)",
        website="https://acme.example/a|b?x=1&y=<2>",
        linkedin_url="https://www.linkedin.com/in/jane doe",
    )

    links = build_message(event)["blocks"][-2]["text"]["text"]

    assert links == "<https://acme.example/a%7Cb?x=1&amp;y=&lt;2&gt;|Website>"


def test_fit_never_cuts_inside_an_entity() -> None:
    assert fit("abc&amp;def", 8) == "abc…"
    assert fit("abcd&amp;", 9) == "abcd&amp;"
    assert fit("x" * 10, 5) == "xxxx…"


# -- size limits --------------------------------------------------------------------------


def test_huge_lead_fields_are_cut_to_block_kit_limits(
    server: RunningServer, fake: FakeSlack
) -> None:
    connector = token_connector(server, fake)
    event = make_event(
        full_name="N" * 400,
        title="T&" * 3000,
        company="C" * 5000,
        bio="word " * 2000,
        location="L" * 5000,
        tags=[f"tag{i}" for i in range(2000)],
        github_url="https://github.com/" + "g" * 670,
        linkedin_url="https://linkedin.com/in/" + "l" * 670,
        website="https://acme.example/" + "w" * 670,
        activity=Activity(
            kind="comment",
            text="line\n" * 10_000,
            campaign="K" * 5000,
            url="https://x.example/?" + "a=1&" * 500,  # too long to link without cutting
        ),
    )
    assert len(event.lead.bio or "") == 10_000

    outcomes = connector.send([event])

    assert isinstance(outcomes[0], Delivered), outcomes
    [message] = fake.messages["C0LEADS01"]
    header = message["blocks"][0]["text"]["text"]
    assert len(header) == MAX_HEADER
    assert header.endswith("…")
    for block in message["blocks"]:
        if block["type"] == "section" and "text" in block:
            assert len(block["text"]["text"]) <= MAX_SECTION_TEXT
        for item in block.get("fields", []):
            assert len(item["text"]) <= MAX_FIELD_TEXT
    bio = next(
        b for b in message["blocks"] if b.get("text", {}).get("text", "").startswith("_word")
    )
    assert bio["text"]["text"].endswith("…_")
    assert len(bio["text"]["text"]) < 700
    # Well under Slack's undocumented total (msg_blocks_too_long, about 12,000 characters).
    assert sum(len(t) for t in all_texts(message["blocks"])) < 10_000
    assert len(message["text"]) <= 1000
    assert "&am…" not in json.dumps(message["blocks"])
    links = message["blocks"][-2]["text"]["text"]
    assert [link.rsplit("|", 1)[1] for link in links.split("  ·  ")] == [
        "GitHub>",
        "LinkedIn>",
        "Website>",
    ]


# -- error classification -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "extra", "kind", "words"),
    [
        ("invalid_auth", {}, Permanent, ["invalid_auth", "Bot User OAuth Token"]),
        ("not_authed", {}, Permanent, ["not_authed"]),
        ("account_inactive", {}, Permanent, ["account_inactive", "deleted"]),
        ("token_revoked", {}, Permanent, ["token_revoked", "reinstall"]),
        (
            "missing_scope",
            {"needed": "chat:write", "provided": "channels:read"},
            Permanent,
            ["missing_scope", "lacks the chat:write scope", "it has channels:read"],
        ),
        (
            "invalid_blocks",
            {
                "errors": ["must be less than 3001 characters [json-pointer:/blocks/1/text/text]"],
                "response_metadata": {
                    "messages": [
                        "[ERROR] must be less than 3001 characters "
                        "[json-pointer:/blocks/1/text/text]"
                    ]
                },
            },
            Permanent,
            ["invalid_blocks", "json-pointer:/blocks/1/text/text"],
        ),
        ("msg_too_long", {}, Permanent, ["msg_too_long"]),
        ("some_future_error", {}, Permanent, ["some_future_error"]),
        ("internal_error", {}, Retryable, ["internal_error"]),
        ("fatal_error", {}, Retryable, ["fatal_error"]),
        ("service_unavailable", {}, Retryable, ["service_unavailable"]),
        ("request_timeout", {}, Retryable, ["request_timeout"]),
        ("ratelimited", {}, RateLimited, ["ratelimited"]),
    ],
)
def test_ok_false_errors_are_classified(
    server: RunningServer,
    fake: FakeSlack,
    error: str,
    extra: dict[str, Any],
    kind: type,
    words: list[str],
) -> None:
    fake.fail_next(error, **extra)

    [outcome] = token_connector(server, fake).send([make_event()])

    assert type(outcome) is kind
    for word in words:
        assert word in outcome.message
    assert fake.all_messages() == []


def test_channel_problems_come_from_the_fake_state(server: RunningServer, fake: FakeSlack) -> None:
    fake.add_channel("C0ARCHIVE", "old-leads", is_archived=True)
    fake.add_channel("C0OUTSIDE", "sales", is_member=False)

    [missing] = token_connector(server, fake, channel="C0NOPE999").send([make_event()])
    [archived] = token_connector(server, fake, channel="C0ARCHIVE").send([make_event()])
    [outside] = token_connector(server, fake, channel="C0OUTSIDE").send([make_event()])

    assert isinstance(missing, Permanent)
    assert missing.message.startswith("Slack error channel_not_found: C0NOPE999: ")
    assert isinstance(archived, Permanent)
    assert "is_archived" in archived.message
    assert isinstance(outside, Permanent)
    assert "not_in_channel" in outside.message
    assert "/invite" in outside.message


def test_missing_chat_write_scope_names_the_scope(server: RunningServer, fake: FakeSlack) -> None:
    fake.scopes = ["channels:read"]
    [outcome] = token_connector(server, fake).send([make_event()])
    assert isinstance(outcome, Permanent)
    assert "lacks the chat:write scope (it has channels:read)" in outcome.message


@pytest.mark.parametrize("mode", ["token", "webhook"])
def test_429_is_rate_limited_with_retry_after_and_not_retried_by_the_sdk(
    server: RunningServer, fake: FakeSlack, mode: str
) -> None:
    connector = (
        token_connector(server, fake) if mode == "token" else webhook_connector(server, fake)
    )
    fake.rate_limit_next(retry_after=17)

    [outcome] = connector.send([make_event()])

    assert isinstance(outcome, RateLimited)
    assert outcome.retry_after == 17.0
    assert len(fake.requests) == 1
    assert fake.all_messages() == []


@pytest.mark.parametrize("mode", ["token", "webhook"])
@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_is_retryable_and_sent_once(
    server: RunningServer, fake: FakeSlack, mode: str, status: int
) -> None:
    connector = (
        token_connector(server, fake) if mode == "token" else webhook_connector(server, fake)
    )
    fake.server_error_next(status)

    [outcome] = connector.send([make_event()])

    assert isinstance(outcome, Retryable)
    assert f"HTTP {status}" in outcome.message
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("invalid_payload", 400),
        ("channel_is_archived", 410),
        ("action_prohibited", 403),
        ("posting_to_general_channel_denied", 403),
        ("no_service", 404),
        ("invalid_token", 403),
    ],
)
def test_webhook_plain_text_errors_are_permanent(
    server: RunningServer, fake: FakeSlack, code: str, status: int
) -> None:
    fake.fail_next(code)

    [outcome] = webhook_connector(server, fake).send([make_event()])

    assert isinstance(outcome, Permanent)
    assert outcome.message.startswith(f"HTTP {status}, Slack error {code}: ")
    assert fake.webhook_secret not in outcome.message


def test_webhook_errors_from_the_fake_state(server: RunningServer, fake: FakeSlack) -> None:
    [unknown_hook] = webhook_connector(server, fake, path="/services/T9/B9/nope").send(
        [make_event()]
    )
    fake.channels["C0LEADS01"].is_archived = True
    [archived] = webhook_connector(server, fake).send([make_event()])

    assert isinstance(unknown_hook, Permanent)
    assert "no_service" in unknown_hook.message
    assert isinstance(archived, Permanent)
    assert "HTTP 410, Slack error channel_is_archived" in archived.message


def test_webhook_rollup_error_is_retryable(server: RunningServer, fake: FakeSlack) -> None:
    fake.fail_next("rollup_error")
    [outcome] = webhook_connector(server, fake).send([make_event()])
    assert isinstance(outcome, Retryable)
    assert "rollup_error" in outcome.message


# -- network ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["token", "webhook"])
def test_connection_refused_is_retryable(fake: FakeSlack, mode: str) -> None:
    down = RunningServer(base_url=f"http://127.0.0.1:{closed_port()}", port=0, ca_file=None)
    connector = token_connector(down, fake) if mode == "token" else webhook_connector(down, fake)

    [outcome] = connector.send([make_event()])

    assert isinstance(outcome, Retryable)
    assert "cannot reach Slack" in outcome.message
    assert "refused" in outcome.message.lower()
    assert fake.webhook_secret not in outcome.message


@pytest.mark.parametrize("mode", ["token", "webhook"])
def test_timeout_is_retryable(server: RunningServer, fake: FakeSlack, mode: str) -> None:
    connector = (
        token_connector(server, fake, timeout=0.3)
        if mode == "token"
        else webhook_connector(server, fake, timeout=0.3)
    )
    fake.slow_next(seconds=30)

    [outcome] = connector.send([make_event()])
    fake.release()

    assert outcome == Retryable("cannot reach Slack: timed out")


def test_sdk_retry_handlers_are_disabled(server: RunningServer, fake: FakeSlack) -> None:
    # WebClient retries connection errors once by default: a second message after a reset.
    assert token_connector(server, fake)._web.retry_handlers == []  # type: ignore[union-attr]
    assert webhook_connector(server, fake)._webhook.retry_handlers == []  # type: ignore[union-attr]


def test_secrets_never_appear_in_errors(server: RunningServer, fake: FakeSlack) -> None:
    # A misbehaving proxy echoing the request into its error page.
    fake.server_error_next(500, body=f"upstream failed for Bearer {fake.token} {fake.webhook_path}")
    fake.server_error_next(500, body=f"upstream failed for {fake.webhook_path}")

    [token_outcome] = token_connector(server, fake).send([make_event()])
    [hook_outcome] = webhook_connector(server, fake).send([make_event()])

    for outcome in (token_outcome, hook_outcome):
        assert isinstance(outcome, Retryable)
        assert fake.token not in outcome.message
    assert fake.webhook_secret not in hook_outcome.message


def test_sdk_logs_never_carry_secrets(
    server: RunningServer, fake: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.server_error_next(500, body=f"echo Bearer {fake.token}")
    fake.server_error_next(500, body=f"echo {fake.webhook_path}")

    token_connector(server, fake).send([make_event()])
    webhook_connector(server, fake).send([make_event()])

    ours = [r for r in caplog.records if r.name.startswith("leadrelay.")]
    logged = "\n".join(record.getMessage() for record in ours)
    assert "echo" in logged  # the SDK did log the bodies...
    assert fake.token not in logged  # ...without the secrets
    assert fake.webhook_secret not in logged


# -- check_connection ---------------------------------------------------------------------


def test_check_connection_token_mode(server: RunningServer, fake: FakeSlack) -> None:
    token_connector(server, fake).check_connection()
    assert [r.path for r in fake.requests] == ["/api/auth.test", "/api/conversations.info"]
    assert fake.all_messages() == []


def test_check_connection_token_mode_failures(server: RunningServer, fake: FakeSlack) -> None:
    fake.add_channel("C0OUTSIDE", "sales", is_member=False)
    fake.add_channel("C0ARCHIVE", "old", is_archived=True)

    cases = {
        "invalid_auth": token_connector(server, fake, token="xoxb-wrong-token"),
        "channel_not_found": token_connector(server, fake, channel="C0NOPE999"),
        "not_in_channel": token_connector(server, fake, channel="C0OUTSIDE"),
        "is_archived": token_connector(server, fake, channel="C0ARCHIVE"),
    }
    for code, connector in cases.items():
        with pytest.raises(ConnectionCheckFailed) as caught:
            connector.check_connection()
        assert code in str(caught.value)
        assert "xoxb-wrong-token" not in str(caught.value)


def test_check_connection_reports_a_missing_chat_write_scope(
    server: RunningServer, fake: FakeSlack
) -> None:
    fake.scopes = ["channels:read"]
    with pytest.raises(ConnectionCheckFailed) as caught:
        token_connector(server, fake).check_connection()
    assert "chat:write" in str(caught.value)


def test_check_connection_webhook_mode_posts_nothing(
    server: RunningServer, fake: FakeSlack
) -> None:
    webhook_connector(server, fake).check_connection()

    assert fake.all_messages() == []
    assert [r.body for r in fake.requests] == [b"null"]
    with pytest.raises(ConnectionCheckFailed, match="no_service"):
        webhook_connector(server, fake, path="/services/T9/B9/nope").check_connection()


def test_check_connection_unreachable(fake: FakeSlack) -> None:
    down = RunningServer(base_url=f"http://127.0.0.1:{closed_port()}", port=0, ca_file=None)
    for connector in (token_connector(down, fake), webhook_connector(down, fake)):
        with pytest.raises(ConnectionCheckFailed, match="cannot reach Slack") as caught:
            connector.check_connection()
        assert fake.webhook_secret not in str(caught.value)


def post_message(server: RunningServer, fake: FakeSlack, body: dict[str, Any]) -> dict[str, Any]:
    answer = requests.post(
        f"{server.base_url}/api/chat.postMessage",
        json=body,
        headers={"Authorization": f"Bearer {fake.token}"},
        timeout=5,
    )
    return dict(answer.json())


# -- what Slack accepts (issue 18) --------------------------------------------------------------


def test_every_mrkdwn_text_object_is_verbatim() -> None:
    """Slack would otherwise auto-link `#channel` and `@name` look-alikes in lead text."""
    event = make_event(
        full_name="Jane #general @here",
        bio="see #random and @jane",
        location="@office",
        activity=STAR,
    )
    message = build_message(event)
    texts = [b["text"] for b in message["blocks"] if isinstance(b.get("text"), dict)]
    texts += [f for b in message["blocks"] for f in b.get("fields", [])]
    texts += [e for b in message["blocks"] for e in b.get("elements", [])]
    mrkdwn = [t for t in texts if t["type"] == "mrkdwn"]
    assert len(mrkdwn) >= 5
    assert all(t["verbatim"] is True for t in mrkdwn)
    assert all("emoji" not in t for t in mrkdwn)


@pytest.mark.parametrize(
    ("block", "pointer"),
    [
        ({"type": "section", "text": {"type": "mrkdwn", "text": "x", "emoji": True}}, "/emoji"),
        ({"type": "section", "fields": []}, "/fields"),
        ({"type": "section", "block_id": "b" * 256, "text": {"type": "mrkdwn", "text": "x"}},
         "/block_id"),
    ],
)  # fmt: skip
def test_fake_refuses_what_block_kit_refuses(
    server: RunningServer, fake: FakeSlack, block: dict[str, Any], pointer: str
) -> None:
    answer = post_message(server, fake, {"channel": "C0LEADS01", "text": "t", "blocks": [block]})
    assert answer["ok"] is False
    assert answer["error"] == "invalid_blocks"
    assert pointer in answer["errors"][0]


def test_post_message_answer_is_the_spec_message_object(
    server: RunningServer, fake: FakeSlack
) -> None:
    answer = post_message(server, fake, {"channel": "C0LEADS01", "text": "hello"})
    assert answer["ok"] is True
    assert set(answer["message"]) <= {"type", "user", "bot_id", "text", "ts", "blocks"}
    assert {"type", "text", "ts"} <= set(answer["message"])
