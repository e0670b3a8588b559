"""Hostile lead data, end to end: signed webhooks → receiver → store → worker → a CSV file
and Slack (incoming webhook and bot token, against the fake Slack).

Proves: a lead named `<!channel>` or carrying `<@U…>`, `<#C…>`, `<!subteam^…>` or a
`<https://evil|label>` link pings no one and links nowhere in any Slack message (every
`<…>` left in a message is a link the connector built from an http(s) URL); `&`, `<`,
`>` arrive escaped and the text is kept, not dropped. In the CSV, every text cell a
spreadsheet would run (leading `=`, `+`, `-`, `@`, tab, CR) starts with `'` and is
otherwise unchanged; the score column stays a number; HTML stays verbatim, inert text.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from leadrelay.core.delivery.worker import Worker
from leadrelay.core.ingest.receiver import create_app
from leadrelay.core.store.store import DeliveryFilter
from tests.conftest import make_config, migrated_store
from tests.fakes.server import serve
from tests.fakes.slack import FAKE_TOKEN, FakeSlack
from tests.signing import encode, sign

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
SAFE_LINK = re.compile(r"^https?://[^\s|<>]+\|(GitHub|LinkedIn|Website|Activity)$")

GITLEADS_ATTACK = {
    "event": "lead.created",
    "timestamp": "2026-04-24T10:31:00Z",
    "data": {
        "id": "lead_attack",
        "signal_type": "stargazer",
        "signal_source": "<!everyone>/repo",
        "signal_context": "=1+1 <!subteam^S0ADMINS> <https://evil.example/steal|Verify now>",
        "github_username": "eve",
        "github_profile_url": "https://github.com/eve|<!everyone>",
        "name": "<!channel> Eve <@U0ADMIN>",
        "email": "eve@example.com",
        "bio": "<!here> hi <#C0GENERAL> <script>alert('x')</script> & <b>bold</b>",
        "company": "<script>alert('x')</script> & <b>Co</b>",
        "location": "@SUM(1+1)*cmd|' /C calc'!A0",
    },
}
LEADHUB_ATTACK = {
    "event": "lead.created",
    "occurred_at": "2026-04-29T10:30:00Z",
    "lead": {
        "id": 666,
        "first_name": "=2+5",
        "last_name": "-3+4 <!channel>",
        "email": "mallory@example.com",
        "phone": "+1-555-0100",
        "title": "\t=cmd|' /C calc'!A0",
        "company": '\r=HYPERLINK("https://evil.example","Click")',
        "stage": "@stage",
        "website": "javascript:alert(1)",
        "location": "<img src=x onerror=alert(1)>",
        "lead_score": -5,
        "tags": ["=SUM(1)", "<!everyone>", "ok"],
        "status": "new",
    },
}


@pytest.fixture
def delivered(tmp_path: Path, sqlite_url: str) -> Iterator[tuple[Path, FakeSlack]]:
    """Both attacks received, stored and delivered to CSV and two Slack connectors."""
    slack = FakeSlack()
    csv_path = tmp_path / "leads.csv"
    with serve(slack.app) as slack_server:
        config = make_config(
            sqlite_url,
            connectors={
                "archive": {"type": "csv", "path": str(csv_path)},
                "slack-hook": {
                    "type": "slack",
                    "webhook_url": slack_server.base_url + slack.webhook_path,
                },
                "slack-bot": {
                    "type": "slack",
                    "token": FAKE_TOKEN,
                    "channel": "C0LEADS01",
                    "base_url": f"{slack_server.base_url}/api/",
                },
            },
        )
        store = migrated_store(sqlite_url)
        try:
            client = create_app(config, store).test_client()
            for provider, payload in (("gitleads", GITLEADS_ATTACK), ("leadhub", LEADHUB_ATTACK)):
                body = encode(payload)
                response = client.post(
                    f"/webhooks/{provider}",
                    data=body,
                    headers=sign(provider, body, _secret(provider)),
                )
                assert response.get_json()["status"] == "accepted", response.get_data()
            worker = Worker(config, store)
            try:
                worker.drain()
            finally:
                for connector in worker.connectors.values():
                    connector.close()
            rows = store.list_deliveries(DeliveryFilter(limit=100))
            assert {(r["connector"], r["status"]) for r in rows} == {
                (name, "delivered") for name in ("archive", "slack-hook", "slack-bot")
            }
            assert len(rows) == 6
        finally:
            store.close()
        yield csv_path, slack


def _secret(provider: str) -> str:
    from tests.conftest import SECRETS

    return SECRETS[provider]


def strings_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


def test_slack_messages_ping_no_one_and_link_nowhere_unexpected(
    delivered: tuple[Path, FakeSlack],
) -> None:
    _, slack = delivered
    messages = slack.all_messages()
    assert len(messages) == 4  # two events, two Slack connectors
    for message in messages:
        texts = list(strings_in({"text": message.get("text"), "blocks": message.get("blocks")}))
        joined = "\n".join(texts)
        for control in ("<!", "<@", "<#"):
            assert control not in joined, (control, joined)
        for markup in re.findall(r"<([^<>]*)>", joined):
            assert SAFE_LINK.match(markup), f"unexpected Slack markup <{markup}>"
            assert "evil.example" not in markup
        assert "javascript:" not in "".join(re.findall(r"<[^<>]*>", joined))
    everything = json.dumps(messages)
    # The hostile text is shown, escaped, not dropped.
    for shown in (
        "&lt;!channel&gt; Eve &lt;@U0ADMIN&gt;",
        "&lt;!subteam^S0ADMINS&gt;",
        "&lt;https://evil.example/steal|Verify now&gt;",
        "&lt;script&gt;alert('x')&lt;/script&gt; &amp; &lt;b&gt;Co&lt;/b&gt;",
        "&lt;!everyone&gt;",
        "&lt;img src=x onerror=alert(1)&gt;",
    ):
        assert shown in everything, shown
    # The GitHub link survives, with the pipe that tried to end it percent-encoded.
    assert "<https://github.com/eve%7C&lt;!everyone&gt;|GitHub>" in everything


def test_csv_cells_never_run_as_formulas_and_html_stays_text(
    delivered: tuple[Path, FakeSlack],
) -> None:
    csv_path, _ = delivered
    with csv_path.open(newline="", encoding="utf-8") as handle:
        rows = {row["provider"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {"gitleads", "leadhub"}
    for row in rows.values():
        for column, cell in row.items():
            if column != "score":
                assert not cell.startswith(FORMULA_STARTS), (column, cell)

    gitleads, leadhub = rows["gitleads"], rows["leadhub"]
    assert gitleads["company"] == "<script>alert('x')</script> & <b>Co</b>"  # verbatim
    assert gitleads["location"] == "'@SUM(1+1)*cmd|' /C calc'!A0"
    assert gitleads["full_name"] == "<!channel> Eve <@U0ADMIN>"
    assert leadhub["first_name"] == "'=2+5"
    assert leadhub["last_name"] == "'-3+4 <!channel>"
    assert leadhub["phone"] == "'+1-555-0100"
    # Providers trim surrounding whitespace, so a leading tab or CR never reaches the sink;
    # what follows it still would run, and is neutralized.
    assert leadhub["title"] == "'=cmd|' /C calc'!A0"
    assert leadhub["company"] == '\'=HYPERLINK("https://evil.example","Click")'
    assert leadhub["stage"] == "'@stage"
    assert leadhub["website"] == "javascript:alert(1)"
    assert leadhub["location"] == "<img src=x onerror=alert(1)>"
    assert leadhub["tags"] == "'=SUM(1), <!everyone>, ok"
    assert leadhub["score"] == "-5"  # a number the sink formats itself stays a number
