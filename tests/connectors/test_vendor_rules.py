"""Every request to HubSpot, Salesforce and Slack keeps the vendor's rules, for every bundled
sample and for extreme leads, in the dry run (`preview`) and in `send` against the fakes.

The leads go through normalization (the providers' adapters), so what is checked is what a
deployment would send. The rules, each what the vendor would otherwise refuse:

- HubSpot: at most 100 inputs per batch call; every property value (note bodies too) at
  most 65,536 characters; no malformed email as the upsert id or the `email` property.
- Salesforce: at most 200 records per sObject Collections call; only fields the object's
  describe lists; text values within the describe's length in UTF-16 units; no malformed
  Email.
- Slack: Block Kit limits (at most 50 blocks; header text 150; section text 3000; at most
  10 fields of at most 2000; block_id 255; context elements 10) and what slack_sdk's Block
  Kit models refuse; message text at most 40,000.

The fakes enforce the same rules, so each `send` must also end Delivered or Skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import SecretStr

from leadrelay.connectors._mapping import utf16_len
from leadrelay.connectors.hubspot.connector import HubSpotConnector
from leadrelay.connectors.hubspot.options import HubSpotOptions
from leadrelay.connectors.salesforce.connector import SalesforceConnector
from leadrelay.connectors.salesforce.options import SalesforceOptions
from leadrelay.connectors.slack.connector import SlackConnector
from leadrelay.connectors.slack.options import SlackOptions
from leadrelay.core.app.samples import bundled_sample_files
from leadrelay.core.delivery.contract import Connector, Delivered, Skipped
from leadrelay.core.ingest.providers import Parsed
from leadrelay.core.schema import LeadEvent
from tests.fakes import hubspot as fake_hubspot
from tests.fakes import salesforce as fake_salesforce
from tests.fakes.hubspot import FakeHubSpot
from tests.fakes.salesforce import FakeSalesforce
from tests.fakes.server import RunningServer, serve
from tests.fakes.slack import FakeSlack
from tests.providers.common import BUILTIN_PROVIDERS, parse
from tests.vendor_specs import block_kit_problems

HUBSPOT_BATCH = 100
HUBSPOT_VALUE = 65_536
SALESFORCE_COLLECTION = 200
SLACK_BLOCKS, SLACK_HEADER, SLACK_SECTION = 50, 150, 3000
SLACK_FIELDS, SLACK_FIELD, SLACK_BLOCK_ID, SLACK_CONTEXT, SLACK_TEXT = 10, 2000, 255, 10, 40_000


# -- the leads ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LeadCase:
    name: str
    events: tuple[LeadEvent, ...]


def _normalized(provider: str, payload: dict[str, Any]) -> LeadEvent:
    result = parse(provider, payload)
    assert isinstance(result, Parsed), result
    return result.event


def _samples() -> list[LeadCase]:
    cases = []
    for provider in BUILTIN_PROVIDERS:
        for path in bundled_sample_files(provider):
            result = parse(provider, json.loads(path.read_text(encoding="utf-8")))
            if isinstance(result, Parsed):
                cases.append(LeadCase(f"sample {provider}/{path.name}", (result.event,)))
    return cases


def _gitleads(**data: Any) -> LeadEvent:
    """A GitLeads stargazer lead: the provider with the most free text (name, bio)."""
    return _normalized(
        "gitleads",
        {
            "event": "lead.created",
            "timestamp": "2026-04-24T10:31:00Z",
            "data": {
                "id": f"lead_{abs(hash(json.dumps(data, sort_keys=True)))}",
                "signal_type": "stargazer",
                "signal_source": "competitor/their-sdk",
                "github_username": "jdoe",
                "github_profile_url": "https://github.com/jdoe",
                "name": "Jane Doe",
                "email": "jane@example.com",
                "company": "Vercel",
                **data,
            },
        },
    )


def _leadhub(**lead: Any) -> LeadEvent:
    """A LeadHub lead: separate first and last names, company, phone, stage."""
    return _normalized(
        "leadhub",
        {
            "event": "lead.created",
            "occurred_at": "2026-04-29T10:30:00Z",
            "lead": {"id": 123, "first_name": "Jane", "last_name": "Smith", **lead},
        },
    )


def _leadshark_dm(message: str) -> LeadEvent:
    return _normalized(
        "leadshark",
        {
            "event": "dm.sent",
            "timestamp": "2024-03-21T15:30:00Z",
            "data": {
                "lead": {
                    "name": "John Doe",
                    "linkedin_url": "https://linkedin.com/in/johndoe",
                    "linkedin_username": "johndoe",
                },
                "message": message,
                "automation": {"id": "automation_123", "name": "Launch " * 100},
                "post_id": "post_123",
            },
        },
    )


# Astral characters count twice in UTF-16: a limit counted in code points would overshoot.
ROCKETS = "🚀" * 40_000
MALFORMED_EMAILS = (
    "dotty..dots@example..com",
    ("x" * 70) + "@example.com",
    "[email\u00a0protected]",
    "no-at-sign.example.com",
    ".leading@example.com",
    "trailing.@example.com",
    "jane@-example.com",
)


def _extremes() -> list[LeadCase]:
    long_name = ("Ada" * 84)[:250] + " " + ("Lovelace" * 32)[:249]
    cases = [
        LeadCase("bio of 5,000 characters", (_gitleads(bio="Rust & Go <b>" * 385),)),
        LeadCase("bio of 70,000 characters", (_gitleads(bio="x" * 70_000),)),
        LeadCase("bio of 40,000 emoji (80,000 UTF-16 units)", (_gitleads(bio=ROCKETS),)),
        LeadCase("name of 500 characters", (_gitleads(name=long_name),)),
        LeadCase(
            "first, last and company names of 500 characters",
            (
                _leadhub(
                    first_name="é" * 500,
                    last_name="Ł" * 500,
                    company="Acme " * 100,
                    email="long.names@example.com",
                    phone="+1 555 0100 " * 10,
                    website="https://example.com/" + "p" * 500,
                    stage="Stage " * 100,
                ),
            ),
        ),
        LeadCase(
            "title, company and location of 5,000 characters",
            (_leadhub(title="T" * 5000, company="Acme " * 1000, location="🌍" * 5000),),
        ),
        LeadCase("emoji-only name", (_gitleads(name="🚀🔥✨"),)),
        LeadCase("name with emoji", (_gitleads(name="José Müller 🚀", email="jose@example.com"),)),
        LeadCase("one-word name", (_gitleads(name="Cher", email="cher@example.com"),)),
        LeadCase("no name at all", (_gitleads(name=None, email="anon@example.com"),)),
        LeadCase("no last name", (_leadhub(last_name=None, email="first.only@example.com"),)),
        LeadCase("no company, free mail", (_gitleads(company=None, email="jd@gmail.com"),)),
        LeadCase("no email", (_gitleads(email=None),)),
        LeadCase(
            "no email, no company, no name",
            (_gitleads(email=None, company=None, name=None, github_username="ghost"),),
        ),
        LeadCase(
            "email of 90 characters (over Salesforce's 80)",
            (_gitleads(email=("a" * 64) + "@" + ("b" * 21) + ".example"),),
        ),
        LeadCase("DM of 70,000 characters", (_leadshark_dm("Hello " + "z" * 70_000),)),
        LeadCase("DM of 40,000 emoji", (_leadshark_dm(ROCKETS),)),
        LeadCase(
            "markup and mentions in lead text",
            (
                _gitleads(
                    name="<!channel> *Bold* #general @here",
                    bio="<https://evil.example|click> & <@U123> " * 200,
                    company="<script>alert(1)</script>",
                    email="markup@example.com",
                ),
            ),
        ),
    ]
    cases += [
        LeadCase(f"malformed email {email!r}", (_gitleads(email=email),))
        for email in MALFORMED_EMAILS
    ]
    cases.append(
        LeadCase(
            "300 leads in one batch",
            tuple(
                _gitleads(
                    id=f"lead_{i}",
                    email=f"lead{i}@example.com",
                    github_username=f"dev{i}",
                    bio="b" * (i * 25),
                )
                for i in range(300)
            ),
        )
    )
    return cases


CASES = _samples() + _extremes()


def test_the_sweep_covers_every_bundled_sample_and_the_malformed_emails() -> None:
    sample_cases = [c for c in CASES if c.name.startswith("sample ")]
    parsed_samples = {c.name.removeprefix("sample ").split("/")[0] for c in sample_cases}
    assert parsed_samples == set(BUILTIN_PROVIDERS)
    for case in CASES:
        if case.name.startswith("malformed email"):
            [event] = case.events
            assert event.lead.email is None
            assert event.lead.extra["invalid_email"]


# -- the rules ----------------------------------------------------------------------------------


def _bodies(plan: Any) -> Iterator[tuple[str, Any]]:
    """(path, body) of every request a preview describes, however deeply it nests them."""
    if isinstance(plan, dict):
        if "path" in plan and "body" in plan:
            yield str(plan["path"]), plan["body"]
        for value in plan.values():
            yield from _bodies(value)
    elif isinstance(plan, list):
        for value in plan:
            yield from _bodies(value)


def _placeholder(value: Any) -> bool:
    # Previews name ids they cannot know yet as "<Id of the Lead found>".
    return isinstance(value, str) and value.startswith("<") and value.endswith(">")


def hubspot_violations(path: str, body: Any) -> list[str]:
    found = []
    inputs = body.get("inputs") if isinstance(body, dict) else None
    items = inputs if isinstance(inputs, list) else [body]
    if isinstance(inputs, list) and len(inputs) > HUBSPOT_BATCH:
        found.append(f"{path}: {len(inputs)} inputs (limit {HUBSPOT_BATCH})")
    for item in items:
        if not isinstance(item, dict):
            continue
        for name, value in (item.get("properties") or {}).items():
            if not isinstance(value, str):
                found.append(f"{path}: {name} is {type(value).__name__}, not a string")
            elif utf16_len(value) > HUBSPOT_VALUE:
                found.append(f"{path}: {name} has {utf16_len(value)} characters")
        emails = [(item.get("properties") or {}).get("email")]
        if item.get("idProperty") == "email":
            emails.append(item.get("id"))
        for email in emails:
            if email is not None and not fake_hubspot.EMAIL_PATTERN.match(str(email)):
                found.append(f"{path}: malformed email {email!r} sent")
    return found


# What the fake's describe lists, by object and lower-cased field name.
SALESFORCE_DESCRIBE = {
    "Lead": {spec.name.lower(): spec for spec in fake_salesforce.standard_lead_fields()},
    "Task": {name.lower(): spec for name, spec in fake_salesforce.TASK_FIELDS.items()},
}


def salesforce_violations(path: str, body: Any) -> list[str]:
    found = []
    records = body.get("records") if isinstance(body, dict) else None
    if not isinstance(records, list):
        return found
    if len(records) > SALESFORCE_COLLECTION:
        found.append(f"{path}: {len(records)} records (limit {SALESFORCE_COLLECTION})")
    for record in records:
        sobject = (record.get("attributes") or {}).get("type")
        fields = SALESFORCE_DESCRIBE.get(sobject)
        if fields is None:
            found.append(f"{path}: record of type {sobject!r}")
            continue
        for name, value in record.items():
            spec = fields.get(name.lower())
            if name == "attributes" or (name.lower() == "id" and sobject == "Lead"):
                continue
            if spec is None:
                if not name.endswith("__c"):  # the external id field, added per org
                    found.append(f"{path}: {sobject} has no field {name}")
                continue
            if _placeholder(value) and spec.type in ("id", "reference"):
                continue
            if isinstance(value, str) and spec.length and utf16_len(value) > spec.length:
                found.append(f"{path}: {sobject}.{name} has {utf16_len(value)} > {spec.length}")
            if spec.type == "email" and not fake_salesforce.EMAIL_PATTERN.match(str(value)):
                found.append(f"{path}: malformed {sobject}.{name} {value!r}")
    return found


def soql_violations(soql: str) -> list[str]:
    """A lookup by Email must not look for a malformed address either."""
    query = fake_salesforce.parse_soql(soql)
    return [
        f"lookup by malformed Email {value!r}"
        for column, values in query.conditions
        if column.lower() == "email"
        for value in values
        if not fake_salesforce.EMAIL_PATTERN.match(str(value))
    ]


def _queries(plan: Any) -> Iterator[str]:
    """The SOQL of every lookup a Salesforce preview describes."""
    if isinstance(plan, dict):
        if isinstance(plan.get("q"), str):
            yield plan["q"]
        for value in plan.values():
            yield from _queries(value)


def slack_violations(payload: dict[str, Any]) -> list[str]:
    found = []
    text = payload.get("text")
    if isinstance(text, str) and len(text) > SLACK_TEXT:
        found.append(f"text has {len(text)} characters")
    blocks = payload.get("blocks") or []
    if len(blocks) > SLACK_BLOCKS:
        found.append(f"{len(blocks)} blocks")
    for index, block in enumerate(blocks):
        where = f"blocks/{index} ({block.get('type')})"
        if len(block.get("block_id") or "") > SLACK_BLOCK_ID:
            found.append(f"{where}: block_id too long")
        if block["type"] == "header" and len(block["text"]["text"]) > SLACK_HEADER:
            found.append(f"{where}: header text {len(block['text']['text'])}")
        if block["type"] == "section":
            if "text" in block and len(block["text"]["text"]) > SLACK_SECTION:
                found.append(f"{where}: text {len(block['text']['text'])}")
            fields = block.get("fields") or []
            if len(fields) > SLACK_FIELDS:
                found.append(f"{where}: {len(fields)} fields")
            found += [
                f"{where}: field of {len(f['text'])}"
                for f in fields
                if len(f["text"]) > SLACK_FIELD
            ]
        if block["type"] == "context" and len(block["elements"]) > SLACK_CONTEXT:
            found.append(f"{where}: {len(block['elements'])} context elements")
    return found + block_kit_problems(blocks)


@pytest.mark.parametrize(
    ("check", "request_body", "problem"),
    [
        (
            lambda body: hubspot_violations("/upsert", body),
            {"inputs": [{"id": "a@b.co", "idProperty": "email", "properties": {}}] * 101},
            "/upsert: 101 inputs (limit 100)",
        ),
        (
            lambda body: hubspot_violations("/upsert", body),
            {"inputs": [{"id": "k", "properties": {"message": "🚀" * 32_769}}]},
            "/upsert: message has 65538 characters",
        ),
        (
            lambda body: hubspot_violations("/upsert", body),
            {"inputs": [{"id": "a..b@example.com", "idProperty": "email", "properties": {}}]},
            "/upsert: malformed email 'a..b@example.com' sent",
        ),
        (
            lambda body: salesforce_violations("/sobjects", body),
            {"records": [{"attributes": {"type": "Lead"}, "LastName": "x"}] * 201},
            "/sobjects: 201 records (limit 200)",
        ),
        (
            lambda body: salesforce_violations("/sobjects", body),
            {"records": [{"attributes": {"type": "Lead"}, "FirstName": "🚀" * 21}]},
            "/sobjects: Lead.FirstName has 42 > 40",
        ),
        (
            lambda body: salesforce_violations("/sobjects", body),
            {"records": [{"attributes": {"type": "Lead"}, "MailingCity": "Berlin"}]},
            "/sobjects: Lead has no field MailingCity",
        ),
        (
            lambda body: salesforce_violations("/sobjects", body),
            {"records": [{"attributes": {"type": "Lead"}, "Email": "x@example..com"}]},
            "/sobjects: malformed Lead.Email 'x@example..com'",
        ),
        (
            slack_violations,
            {"blocks": [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}]},
            "blocks/0 (section): 11 fields",
        ),
        (
            slack_violations,
            {"blocks": [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}]},
            "blocks/0 (header): header text 151",
        ),
        (
            slack_violations,
            {"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "t" * 3001}}]},
            "blocks/0 (section): text 3001",
        ),
        (
            slack_violations,
            {"blocks": [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * 2001}]}]},
            "blocks/0 (section): field of 2001",
        ),
        (slack_violations, {"blocks": [{"type": "divider"}] * 51}, "51 blocks"),
        (
            soql_violations,
            "SELECT Id FROM Lead WHERE Email IN ('a@example.com', 'b@@example.com')",
            "lookup by malformed Email 'b@@example.com'",
        ),
    ],
)
def test_each_rule_catches_what_the_vendor_refuses(
    check: Any, request_body: Any, problem: str
) -> None:
    assert problem in check(request_body)


# -- the connectors against the fakes -----------------------------------------------------------

EXT = "LeadRelay_Key__c"
SF_USER, SF_PASSWORD = "integration@acme.example", "hunter2-password"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # The SDKs route every request through $HTTPS_PROXY when set, loopback included.
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def hubspot() -> Iterator[tuple[FakeHubSpot, HubSpotConnector]]:
    fake = FakeHubSpot()
    fake.reset(unique_properties=["leadrelay_key"])
    with serve(fake.app) as running:
        options = HubSpotOptions(
            access_token=SecretStr("test-token"),
            base_url=running.base_url,
            key_property="leadrelay_key",
            # The long free text goes to HubSpot too, where the 65,536 limit applies.
            properties={"bio": "message", "location": "city"},
        )
        connector = HubSpotConnector("crm", options)
        connector.pacer.sleep = lambda _seconds: None
        yield fake, connector
        connector.close()
    fake.close()


@pytest.fixture(scope="module")
def salesforce_server() -> Iterator[tuple[FakeSalesforce, RunningServer]]:
    fake = FakeSalesforce()
    fake.add_field(EXT, external_id=True)
    fake.add_user(SF_USER, SF_PASSWORD)
    with serve(fake.app, https=True) as running:
        yield fake, running
    fake.release()


@pytest.fixture(scope="module", params=["upsert by external id", "find by Email"])
def salesforce(
    request: pytest.FixtureRequest, salesforce_server: tuple[FakeSalesforce, RunningServer]
) -> Iterator[tuple[FakeSalesforce, SalesforceConnector]]:
    fake, running = salesforce_server
    options = SalesforceOptions(
        username=SF_USER,
        password=SecretStr(SF_PASSWORD),
        login_url=running.base_url,
        verify=running.ca_file or True,
        external_id_field=EXT if request.param == "upsert by external id" else None,
        timeout=10,
    )
    connector = SalesforceConnector("sf", options)
    yield fake, connector
    connector.close()


@pytest.fixture(scope="module")
def slack() -> Iterator[tuple[FakeSlack, SlackConnector]]:
    fake = FakeSlack()
    with serve(fake.app) as running:
        options = SlackOptions(
            token=SecretStr(fake.token), channel="C0LEADS01", base_url=f"{running.base_url}/api/"
        )
        connector = SlackConnector("team", options)
        yield fake, connector
        connector.close()
    fake.release()


def _accepted(connector: Connector, events: tuple[LeadEvent, ...]) -> None:
    outcomes = connector.send(list(events))
    refused = [o for o in outcomes if not isinstance(o, Delivered | Skipped)]
    assert refused == [], refused[:3]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_hubspot_requests_keep_hubspots_rules(
    case: LeadCase, hubspot: tuple[FakeHubSpot, HubSpotConnector]
) -> None:
    fake, connector = hubspot
    previewed = [
        problem
        for event in case.events
        for path, body in _bodies(connector.preview(event))
        for problem in hubspot_violations(path, body)
    ]
    assert previewed == []

    first = len(fake.requests)
    _accepted(connector, case.events)

    sent = fake.requests[first:]
    assert [p for r in sent if r.body for p in hubspot_violations(r.path, r.body)] == []


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_salesforce_requests_keep_salesforces_rules(
    case: LeadCase, salesforce: tuple[FakeSalesforce, SalesforceConnector]
) -> None:
    fake, connector = salesforce
    previewed = [
        problem
        for event in case.events
        for path, body in _bodies(connector.preview(event))
        for problem in salesforce_violations(path, body)
    ]
    previewed += [
        problem
        for event in case.events
        for soql in _queries(connector.preview(event))
        for problem in soql_violations(soql)
    ]
    assert previewed == []

    first = len(fake.calls)
    _accepted(connector, case.events)

    sent = fake.calls[first:]
    assert [p for c in sent for p in salesforce_violations(c.path, c.body)] == []
    lookups = [c.query["q"] for c in sent if "/query" in c.path]
    assert [p for soql in lookups for p in soql_violations(soql)] == []


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_slack_messages_keep_block_kit_limits(
    case: LeadCase, slack: tuple[FakeSlack, SlackConnector]
) -> None:
    fake, connector = slack
    previewed = [
        problem
        for event in case.events
        for problem in slack_violations(connector.preview(event)["payload"])
    ]
    assert previewed == []

    first = len(fake.all_messages())
    _accepted(connector, case.events)

    posted = fake.all_messages()[first:]
    assert len(posted) == len(case.events)
    assert [p for m in posted for p in slack_violations(m["payload"])] == []
