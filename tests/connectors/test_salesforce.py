"""The Salesforce connector through simple-salesforce against the HTTPS fake (no SDK patching)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest

from leadrelay.connectors.salesforce.client import BatchFailure
from leadrelay.connectors.salesforce.connector import SalesforceConnector
from leadrelay.connectors.salesforce.mapping import cut, utf16_len
from leadrelay.connectors.salesforce.options import SalesforceOptions
from leadrelay.core.delivery.contract import (
    ConnectionCheckFailed,
    Delivered,
    Permanent,
    RateLimited,
    Retryable,
    Skipped,
)
from leadrelay.core.delivery.registry import connector_class
from leadrelay.core.schema import Activity
from tests.factories import make_event
from tests.fakes.salesforce import FakeSalesforce
from tests.fakes.server import RunningServer, serve

USERNAME = "integration@acme.example"
PASSWORD = "hunter2-password-SECRET"
TOKEN = "tokenSECRET42"
EXT = "LeadRelay_Key__c"

Connect = Callable[..., SalesforceConnector]


@pytest.fixture
def fake() -> FakeSalesforce:
    fake = FakeSalesforce()
    fake.add_field(EXT, external_id=True)
    fake.add_user(USERNAME, PASSWORD, TOKEN)
    return fake


class _CurrentFake:
    """One HTTPS server for the module (stopping one costs half a second), a fresh fake per test."""

    def __init__(self) -> None:
        self.fake: FakeSalesforce | None = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        assert self.fake is not None
        return self.fake.app(environ, start_response)


@pytest.fixture(scope="module")
def https_server() -> Iterator[tuple[RunningServer, _CurrentFake]]:
    current = _CurrentFake()
    with serve(current, https=True) as running:
        yield running, current


@pytest.fixture
def server(
    fake: FakeSalesforce, https_server: tuple[RunningServer, _CurrentFake]
) -> Iterator[RunningServer]:
    running, current = https_server
    current.fake = fake
    try:
        yield running
    finally:
        fake.release()  # never leave a stalled request behind


@pytest.fixture
def connect(server: RunningServer) -> Iterator[Connect]:
    made: list[SalesforceConnector] = []

    def _connect(**overrides: Any) -> SalesforceConnector:
        options: dict[str, Any] = {
            "username": USERNAME,
            "password": PASSWORD,
            "security_token": TOKEN,
            "login_url": server.base_url,
            "verify": server.ca_file,
            "external_id_field": EXT,
            "timeout": 5,
        }
        options.update(overrides)
        options = {k: v for k, v in options.items() if v is not None}
        connector = SalesforceConnector("crm", SalesforceOptions(**options))
        made.append(connector)
        return connector

    yield _connect
    for connector in made:
        connector.close()


def _only(outcomes: list[Any]) -> Any:
    assert len(outcomes) == 1
    return outcomes[0]


# -- create and upsert -----------------------------------------------------------------


def test_upsert_creates_lead_with_mapped_fields(fake: FakeSalesforce, connect: Connect) -> None:
    event = make_event(
        phone="+49 30 1234", location="Berlin", bio="Builds compilers", tags=["rust"]
    )

    outcome = _only(connect().send([event]))

    assert isinstance(outcome, Delivered)
    assert outcome.message.startswith("created Lead 00Q")
    [lead] = fake.find(EXT, "email:jane@example.com")
    assert lead["FirstName"] == "Jane"
    assert lead["LastName"] == "Doe"
    assert lead["Company"] == "Vercel"
    assert lead["Title"] == "Staff Engineer"
    assert lead["Email"] == "jane@example.com"
    assert lead["Phone"] == "+49 30 1234"
    assert lead["City"] == "Berlin"
    assert lead["Description"] == "Builds compilers\nGitHub: https://github.com/jdoe\nTags: rust"
    [upsert] = fake.data_calls("PATCH", f"/composite/sobjects/Lead/{EXT}")
    assert upsert.body["allOrNone"] is False
    assert upsert.body["records"][0]["attributes"] == {"type": "Lead"}


def test_upsert_of_existing_lead_updates_without_duplicate(
    fake: FakeSalesforce, connect: Connect
) -> None:
    connector = connect()
    first = _only(connector.send([make_event()]))
    again = _only(connector.send([make_event(type="lead.updated", title="CTO")]))

    assert isinstance(first, Delivered)
    assert isinstance(again, Delivered)
    assert again.message.startswith("updated Lead")
    [lead] = fake.find(EXT, "email:jane@example.com")
    assert lead["Title"] == "CTO"
    assert len(fake.leads) == 1
    assert fake.logins == 1  # one session serves both batches


def test_same_lead_twice_in_one_batch_is_one_write_where_the_later_values_win(
    fake: FakeSalesforce, connect: Connect
) -> None:
    events = [
        make_event(title="Engineer", phone="+1 555 0100"),
        make_event(type="lead.updated", title="Manager"),
    ]

    outcomes = connect().send(events)

    assert [type(o) for o in outcomes] == [Delivered, Delivered]
    [lead] = fake.find("Email", "jane@example.com")
    assert (lead["Title"], lead["Phone"]) == ("Manager", "+1 555 0100")
    [write] = fake.data_calls("PATCH", f"/composite/sobjects/Lead/{EXT}")
    assert len(write.body["records"]) == 1


def test_batch_is_split_at_200_records(fake: FakeSalesforce, connect: Connect) -> None:
    connector = connect()
    events = [make_event(email=f"dev{i}@acme.io") for i in range(250)]

    outcomes = connector.send(events)

    assert SalesforceConnector.batch_size == 200
    assert all(isinstance(o, Delivered) for o in outcomes)
    sizes = [len(c.body["records"]) for c in fake.data_calls("PATCH", "/composite/sobjects/Lead/")]
    assert sizes == [200, 50]
    assert len(fake.leads) == 250


def test_collection_limit_is_enforced_by_the_fake(fake: FakeSalesforce, connect: Connect) -> None:
    connector = connect()
    connector.send([make_event()])  # log in
    session = next(iter(fake.sessions))

    response = requests.patch(
        f"{connector.options.login_url}/services/data/v59.0/composite/sobjects/Lead/{EXT}",
        json={"records": [{"attributes": {"type": "Lead"}}] * 201},
        headers={"Authorization": f"Bearer {session}"},
        verify=connector.options.verify,
        timeout=5,
    )

    assert response.status_code == 400
    assert response.json()[0]["errorCode"] == "EXCEEDED_ID_LIMIT"


def test_fake_answers_single_record_calls_like_the_rest_api(
    fake: FakeSalesforce, server: RunningServer
) -> None:
    http = requests.Session()
    http.trust_env = False  # else REQUESTS_CA_BUNDLE would override `verify`
    http.verify = server.ca_file
    sf = Salesforce(instance_url=server.base_url, session_id=fake.issue_session(), session=http)

    created = sf.Lead.create({"LastName": "Doe", "Company": "Acme", "Email": "d@acme.io"})
    status = sf.Lead.update(created["id"], {"Title": "CTO"})
    fetched = sf.Lead.get(created["id"])
    with pytest.raises(SalesforceMalformedRequest) as missing:
        sf.Lead.create({"LastName": "Doe"})
    http.close()

    assert created["success"] is True
    assert status == 204
    assert (fetched["Title"], fetched["attributes"]["type"]) == ("CTO", "Lead")
    assert missing.value.content == [
        {
            "message": "Required fields are missing: [Company]",
            "errorCode": "REQUIRED_FIELD_MISSING",
            "fields": ["Company"],
        }
    ]


# -- find by Email ---------------------------------------------------------------------


def test_find_by_email_updates_existing_lead(fake: FakeSalesforce, connect: Connect) -> None:
    existing = fake.seed_lead(LastName="Doe", Company="Old Co", Email="JANE@example.com")
    connector = connect(external_id_field=None)

    outcome = _only(connector.send([make_event(title="VP Engineering")]))

    assert outcome == Delivered(f"updated Lead {existing}")
    assert len(fake.leads) == 1
    assert fake.leads[existing]["Title"] == "VP Engineering"
    assert fake.leads[existing]["Company"] == "Vercel"
    [lookup] = fake.data_calls("GET", "/query")
    assert "IsConverted = false" in lookup.query["q"]


def test_find_by_email_creates_when_missing_and_matches_next_time(
    fake: FakeSalesforce, connect: Connect
) -> None:
    connector = connect(external_id_field=None)

    created = _only(connector.send([make_event()]))
    updated = _only(connector.send([make_event(type="lead.updated", title="CTO")]))

    assert created.message.startswith("created Lead")
    assert updated.message.startswith("updated Lead")
    assert len(fake.leads) == 1


def test_find_by_email_updates_the_lead_of_an_earlier_email(
    fake: FakeSalesforce, connect: Connect
) -> None:
    existing = fake.seed_lead(LastName="Changer", Company="Acme", Email="ed.old@example.com")
    connector = connect(external_id_field=None)
    identities = ["email:ed.old@example.com", "leadhub:4242@leadhub", "email:ed.new@example.com"]

    outcome = _only(connector.send([make_event(email="ed.new@example.com", identities=identities)]))

    assert outcome == Delivered(f"updated Lead {existing}")
    assert len(fake.leads) == 1
    assert fake.leads[existing]["Email"] == "ed.new@example.com"


def test_external_id_holds_the_stable_key_across_an_email_change(
    fake: FakeSalesforce, connect: Connect
) -> None:
    connector = connect()
    key = "email:ed.old@example.com"
    connector.send([make_event(key=key, email="ed.old@example.com")])
    connector.send([make_event(key=key, email="ed.new@example.com")])

    [lead] = fake.leads.values()
    assert lead["Email"] == "ed.new@example.com"


def test_find_by_email_escapes_soql(fake: FakeSalesforce, connect: Connect) -> None:
    existing = fake.seed_lead(LastName="O'Brien", Company="Acme", Email="o'brien@acme.io")
    connector = connect(external_id_field=None)

    outcome = _only(connector.send([make_event(email="o'brien@acme.io", title="Founder")]))

    assert outcome == Delivered(f"updated Lead {existing}")
    assert fake.leads[existing]["Title"] == "Founder"


def test_find_by_email_batch_with_repeats_creates_once(
    fake: FakeSalesforce, connect: Connect
) -> None:
    events = [make_event(email=f"dev{i}@acme.io") for i in range(120)]
    events.append(make_event(email="dev7@acme.io", type="lead.updated", title="Lead dev"))

    outcomes = connect(external_id_field=None).send(events)

    assert all(isinstance(o, Delivered) for o in outcomes)
    assert len(fake.leads) == 120
    assert fake.find("Email", "dev7@acme.io")[0]["Title"] == "Lead dev"
    assert len(fake.data_calls("GET", "/query")) == 3  # 3 lookups of <= 50; the repeat merged


def test_lead_without_email_is_skipped_in_email_mode(connect: Connect) -> None:
    event = make_event(email=None, github_username="octo")

    outcome = _only(connect(external_id_field=None).send([event]))

    assert isinstance(outcome, Skipped)
    assert "external_id_field" in outcome.message


# -- fallbacks and truncation ----------------------------------------------------------


@pytest.mark.parametrize(
    ("lead", "first", "last"),
    [
        ({}, "Jane", "Doe"),
        ({"last_name": None}, "Jane", "Doe"),  # from full_name, without the first name
        ({"first_name": "Cher", "last_name": None, "full_name": "Cher"}, None, "Cher"),
        ({"first_name": None, "last_name": None, "full_name": "王小明"}, None, "王小明"),
        ({"last_name": None, "full_name": None}, "Jane", "jane"),  # email local part
        (
            {"last_name": None, "full_name": None, "email": None, "github_username": "octo"},
            "Jane",
            "octo",
        ),
        (
            {
                "first_name": None,
                "last_name": None,
                "full_name": None,
                "email": None,
                "github_username": None,
                "linkedin_username": "jdoe-li",
            },
            None,
            "jdoe-li",
        ),
        (
            {
                "first_name": None,
                "last_name": None,
                "full_name": None,
                "email": None,
                "github_username": None,
                "provider_lead_id": "x1",
            },
            None,
            "[not provided]",
        ),
    ],
)
def test_last_name_fallbacks(
    connect: Connect, lead: dict[str, Any], first: str | None, last: str
) -> None:
    record = connect().build_record(make_event(**lead))

    assert record.get("FirstName") == first
    assert record["LastName"] == last


@pytest.mark.parametrize(
    ("lead", "company"),
    [
        pytest.param({}, "Vercel", id="company-as-given"),
        pytest.param({"company": "  Globex  "}, "Globex", id="company-trimmed"),
        pytest.param({"company": None, "email": "ann@globex.io"}, "globex.io", id="email-domain"),
        pytest.param(
            {"company": None, "email": "Ann@Globex.IO"}, "globex.io", id="email-domain-lowercased"
        ),
        pytest.param(
            {"company": "  ", "email": "ann@globex.io"}, "globex.io", id="blank-company-is-missing"
        ),
        pytest.param(
            {"company": None, "email": "ann@gmail.com"}, "[not provided]", id="free-mail-domain"
        ),
        pytest.param(
            {"company": None, "email": "123+ann@users.noreply.github.com"},
            "[not provided]",
            id="github-no-reply-domain",
        ),
        pytest.param(
            {"company": None, "email": "ann@bots.noreply.github.com"},
            "[not provided]",
            id="any-noreply-github-subdomain",
        ),
        pytest.param(
            {"company": None, "email": "not-an-address"}, "[not provided]", id="email-without-at"
        ),
        pytest.param(
            {"company": "  ", "email": None, "github_username": "ann"},
            "[not provided]",
            id="no-email",
        ),
    ],
)
def test_company_fallbacks(connect: Connect, lead: dict[str, Any], company: str) -> None:
    assert connect().build_record(make_event(**lead))["Company"] == company


def test_company_fallback_is_the_configured_value(connect: Connect) -> None:
    event = make_event(company=None, email="ann@gmail.com")

    assert connect(fallback_company="Individual").build_record(event)["Company"] == "Individual"


def test_company_mapped_to_null_gets_no_fallback(connect: Connect) -> None:
    event = make_event(company=None, email="ann@globex.io")

    assert "Company" not in connect(field_map={"Company": None}).build_record(event)


def test_fallback_values_are_configurable_and_accepted(
    fake: FakeSalesforce, connect: Connect
) -> None:
    connector = connect(fallback_last_name="Unknown", fallback_company="Individual")
    event = make_event(
        first_name=None, last_name=None, full_name=None, email=None, github_username=None,
        company=None, linkedin_username="li-user", provider_lead_id="p1",
    )  # fmt: skip

    assert isinstance(_only(connector.send([event])), Delivered)
    [lead] = fake.find(EXT, "linkedin:li-user")
    assert (lead["LastName"], lead["Company"]) == ("li-user", "Individual")


def test_values_are_cut_to_salesforce_field_lengths(fake: FakeSalesforce, connect: Connect) -> None:
    event = make_event(
        first_name="F" * 60, last_name="L" * 100, title="T" * 200, company="C" * 300,
        location="😀" * 30, phone="1" * 50,
    )  # fmt: skip
    connector = connect()

    record = connector.build_record(event)
    outcome = _only(connector.send([event]))

    assert isinstance(outcome, Delivered)  # the fake enforces the real lengths
    assert record["FirstName"] == "F" * 40
    assert record["LastName"] == "L" * 80
    assert record["Title"] == "T" * 128
    assert record["Company"] == "C" * 255
    assert record["Phone"] == "1" * 40
    assert record["City"] == "😀" * 20  # 40 UTF-16 code units, no half character
    assert utf16_len(record["City"]) == 40


def test_cut_never_splits_a_surrogate_pair() -> None:
    assert cut("ab😀", 3) == "ab"
    assert cut("ab😀", 4) == "ab😀"


def test_overlong_email_is_not_cut_but_noted(connect: Connect) -> None:
    email = "a" * 75 + "@example.com"

    record = connect().build_record(make_event(email=email))

    assert "Email" not in record
    assert record["Description"].endswith(f"Email (too long for the Email field): {email}")


def test_field_map_adds_overrides_and_drops(fake: FakeSalesforce, connect: Connect) -> None:
    fake.add_field("GitHub_Username__c", length=39)
    connector = connect(
        field_map={"GitHub_Username__c": "github_username", "Description": None, "City": None}
    )

    outcome = _only(connector.send([make_event(location="Berlin")]))

    assert isinstance(outcome, Delivered)
    [lead] = fake.find(EXT, "email:jane@example.com")
    assert lead["GitHub_Username__c"] == "jdoe"
    assert "Description" not in lead
    assert "City" not in lead


def test_field_map_rejects_unknown_lead_fields(server: RunningServer) -> None:
    with pytest.raises(ValidationError, match="not a lead field"):
        SalesforceOptions(
            instance_url=server.base_url, session_id="x", field_map={"Foo__c": "shoe_size"}
        )


# -- preview ---------------------------------------------------------------------------


def test_preview_is_the_exact_request_without_network(
    fake: FakeSalesforce, connect: Connect
) -> None:
    connector = connect()
    event = make_event()

    preview = connector.preview(event)

    assert preview["method"] == "PATCH"
    assert preview["path"] == f"/services/data/v59.0/composite/sobjects/Lead/{EXT}"
    assert preview["body"]["records"] == [
        {"attributes": {"type": "Lead"}, **connector.build_record(event)}
    ]
    assert fake.calls == []


def test_preview_in_email_mode_shows_lookup_and_both_branches(connect: Connect) -> None:
    preview = connect(external_id_field=None).preview(make_event())

    assert preview["action"] == "find_by_email"
    assert "WHERE Email IN ('jane@example.com')" in preview["lookup"]["q"]
    assert preview["if_not_found"]["method"] == "POST"
    assert preview["if_found"]["body"]["records"][0]["id"] == "<Id of the Lead found>"


# -- activities: a completed Task on the lead --------------------------------------------


def star(**lead_fields: Any) -> Any:
    activity = Activity(
        kind="star",
        text="Starred competitor/their-sdk",
        url="https://github.com/competitor/their-sdk",
        campaign="q2-launch",
    )
    return make_event(type="lead.activity", activity=activity, **lead_fields)


@pytest.mark.parametrize("external_id_field", [EXT, None], ids=["upsert", "find_by_email"])
def test_an_activity_logs_a_completed_task_on_the_lead(
    fake: FakeSalesforce, connect: Connect, external_id_field: str | None
) -> None:
    outcome = _only(connect(external_id_field=external_id_field).send([star()]))

    [lead] = fake.find("Email", "jane@example.com")
    [task] = fake.tasks_of(lead["Id"])
    assert isinstance(outcome, Delivered)
    assert outcome.message == f"created Lead {lead['Id']}; logged Task {next(iter(fake.tasks))}"
    assert task == {
        "WhoId": lead["Id"],
        "Subject": "Starred a repository",
        "Description": "Starred competitor/their-sdk\n"
        "https://github.com/competitor/their-sdk\n"
        "Campaign: q2-launch\n"
        "gitleads lead.activity, via leadrelay",
        "Status": "Completed",
        "Priority": "Normal",
        "ActivityDate": "2026-04-24",
    }


def test_events_without_an_activity_log_no_task(fake: FakeSalesforce, connect: Connect) -> None:
    outcome = _only(connect().send([make_event()]))

    assert isinstance(outcome, Delivered)
    assert fake.tasks == {}
    assert fake.data_calls("POST") == []


def test_activity_tasks_can_be_turned_off(fake: FakeSalesforce, connect: Connect) -> None:
    connector = connect(activity_tasks=False)

    outcome = _only(connector.send([star()]))

    assert isinstance(outcome, Delivered)
    assert len(fake.leads) == 1
    assert fake.tasks == {}
    assert "then_log_task" not in connector.preview(star())


def test_a_refused_task_is_permanent_and_says_the_lead_was_written(
    fake: FakeSalesforce, connect: Connect
) -> None:
    fake.reject_tasks("FIELD_CUSTOM_VALIDATION_EXCEPTION", "Tasks need an owner")

    outcome = _only(connect().send([star()]))

    [lead] = fake.find(EXT, "email:jane@example.com")
    assert isinstance(outcome, Permanent)
    assert outcome.message == (
        f"created Lead {lead['Id']}, but Salesforce refused its Task: "
        "Salesforce FIELD_CUSTOM_VALIDATION_EXCEPTION: Tasks need an owner"
    )


def test_a_failed_task_call_is_retried_without_a_second_lead(
    fake: FakeSalesforce, connect: Connect
) -> None:
    connector = connect()
    unavailable = [{"errorCode": "SERVER_UNAVAILABLE", "message": "try later"}]
    fake.fail_next(503, unavailable, path_contains="/composite/sobjects", method="POST")

    first = _only(connector.send([star(idempotency_key="star-1")]))
    again = _only(connector.send([star(idempotency_key="star-1")]))

    assert isinstance(first, Retryable)
    assert "SERVER_UNAVAILABLE" in first.message
    assert isinstance(again, Delivered)
    assert again.message.startswith("updated Lead")
    [lead] = fake.find(EXT, "email:jane@example.com")
    assert len(fake.leads) == 1
    assert len(fake.tasks_of(lead["Id"])) == 1


def test_an_incomplete_answer_to_the_task_call_is_retryable(
    fake: FakeSalesforce, connect: Connect
) -> None:
    fake.fail_next(200, {"hasErrors": False}, path_contains="/composite/sobjects", method="POST")

    outcome = _only(connect().send([star()]))

    assert outcome == Retryable(
        "Salesforce answered composite/sobjects with 1 results for 1 records"
    )
    assert fake.tasks == {}


def test_a_lead_written_before_a_failed_call_still_gets_its_task(
    fake: FakeSalesforce, connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An archive between two activities of one lead makes three rounds; the second fails.
    connector = connect(on_delete="archive")
    deliver = connector._deliver
    rounds: list[int] = []

    def second_round_fails(client: Salesforce, chunk: Any) -> Any:
        rounds.append(len(chunk))
        if len(rounds) == 2:
            raise BatchFailure(Retryable("Salesforce answered 503"))
        return deliver(client, chunk)

    monkeypatch.setattr(connector, "_deliver", second_round_fails)

    first, deleted, second = connector.send([star(), make_event(type="lead.deleted"), star()])

    [lead] = fake.find(EXT, "email:jane@example.com")
    assert rounds == [1, 1]
    assert isinstance(first, Delivered)
    assert "logged Task" in first.message
    assert len(fake.tasks_of(lead["Id"])) == 1
    assert deleted == second == Retryable("Salesforce answered 503")


def test_activities_of_one_lead_in_one_write_each_log_their_task(
    fake: FakeSalesforce, connect: Connect
) -> None:
    outcomes = connect().send([star(), star()])

    [lead] = fake.find(EXT, "email:jane@example.com")
    assert all(isinstance(o, Delivered) and "logged Task" in o.message for o in outcomes)
    assert len(fake.tasks_of(lead["Id"])) == 2
    assert len(fake.data_calls("PATCH", f"/composite/sobjects/Lead/{EXT}")) == 1


def test_an_archived_lead_gets_no_task(fake: FakeSalesforce, connect: Connect) -> None:
    lead_id = fake.seed_lead(LastName="Doe", Company="Acme", **{EXT: "email:jane@example.com"})
    activity = Activity(kind="stage_changed", text="lost")
    deleted = make_event(type="lead.deleted", activity=activity)

    outcome = _only(connect(on_delete="archive").send([deleted]))

    assert isinstance(outcome, Delivered)
    assert fake.tasks_of(lead_id) == []


def test_preview_shows_the_task_after_the_lead(connect: Connect) -> None:
    event = star()

    preview = connect().preview(event)

    task = preview["then_log_task"]
    assert (task["method"], task["path"]) == ("POST", "/services/data/v59.0/composite/sobjects")
    [record] = task["body"]["records"]
    assert record["attributes"] == {"type": "Task"}
    assert record["WhoId"] == "<Id of the Lead written above>"
    assert record["Subject"] == "Starred a repository"


@pytest.mark.parametrize("sobject", ["Contact", "Account"])
def test_objects_other_than_lead_are_refused_at_config_time(
    fake: FakeSalesforce, connect: Connect, sobject: str
) -> None:
    """Lead-only fields (Company, City, Website) would fail every record with INVALID_FIELD."""
    with pytest.raises(ValidationError, match="writes Lead records only"):
        connect(object=sobject)


# -- lead.deleted ----------------------------------------------------------------------


def test_deleted_is_skipped_by_default_without_network(
    fake: FakeSalesforce, connect: Connect
) -> None:
    outcome = _only(connect().send([make_event(type="lead.deleted")]))

    assert isinstance(outcome, Skipped)
    assert fake.calls == []


def test_deleted_with_archive_sets_closed_status(fake: FakeSalesforce, connect: Connect) -> None:
    connector = connect(on_delete="archive")
    connector.send([make_event()])

    archived = _only(connector.send([make_event(type="lead.deleted")]))
    missing = _only(connector.send([make_event(type="lead.deleted", email="nobody@acme.io")]))

    assert isinstance(archived, Delivered)
    assert archived.message.startswith("archived Lead")
    [lead] = fake.find(EXT, "email:jane@example.com")
    assert lead["Status"] == "Closed - Not Converted"
    assert isinstance(missing, Skipped)
    assert len(fake.leads) == 1  # archiving never creates


# -- error classes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "message", "expected"),
    [
        (400, "MALFORMED_ID", "Lead ID: id value of incorrect type: 42", Permanent),
        (400, "INVALID_TYPE", "Must send a concrete entity type.", Permanent),
        (400, "JSON_PARSER_ERROR", "Unexpected character", Permanent),
        (404, "NOT_FOUND", "The requested resource does not exist", Permanent),
        (503, "SERVER_UNAVAILABLE", "Server is unavailable", Retryable),
        (500, "UNKNOWN_EXCEPTION", "An unexpected error occurred", Retryable),
        (400, "UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access", Retryable),
    ],
)
def test_request_level_errors_are_classified(
    fake: FakeSalesforce,
    connect: Connect,
    status: int,
    code: str,
    message: str,
    expected: type,
) -> None:
    fake.fail_next(status, [{"message": message, "errorCode": code}])

    outcome = _only(connect().send([make_event()]))

    assert isinstance(outcome, expected)
    assert code in outcome.message
    assert message in outcome.message


def test_request_limit_exceeded_is_rate_limited(fake: FakeSalesforce, connect: Connect) -> None:
    body = [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    connector = connect(rate_limit_delay=90)
    fake.fail_next(403, body)
    fake.fail_next(403, body, headers={"Retry-After": "17"})

    default_delay = _only(connector.send([make_event()]))
    header_delay = _only(connector.send([make_event()]))

    assert default_delay == RateLimited(
        "HTTP 403: Salesforce REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded.", 90.0
    )
    assert isinstance(header_delay, RateLimited)
    assert header_delay.retry_after == 17.0


def test_per_record_errors_split_the_batch(fake: FakeSalesforce, connect: Connect) -> None:
    fake.add_field("Region__c", required=True)
    connector = connect(field_map={"Region__c": "extra.region"})
    fake.reject_record(
        "dup@acme.io",
        "DUPLICATES_DETECTED",
        "You're creating a duplicate record. We recommend you use an existing record instead.",
    )
    fake.reject_record("busy@acme.io", "UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access")
    events = [
        make_event(email="ok@acme.io", extra={"region": "EMEA"}),
        make_event(email="noregion@acme.io"),
        make_event(email="dup@acme.io", extra={"region": "EMEA"}),
        make_event(email="busy@acme.io", extra={"region": "EMEA"}),
    ]

    ok, missing, duplicate, locked = connector.send(events)

    assert isinstance(ok, Delivered)
    assert missing == Permanent(
        "Salesforce REQUIRED_FIELD_MISSING: Required fields are missing: [Region__c] "
        "(fields: Region__c)"
    )
    assert isinstance(duplicate, Permanent)
    assert "DUPLICATES_DETECTED: You're creating a duplicate record" in duplicate.message
    assert isinstance(locked, Retryable)
    assert "UNABLE_TO_LOCK_ROW" in locked.message
    assert len(fake.leads) == 1


def test_string_too_long_on_custom_field_is_permanent(
    fake: FakeSalesforce, connect: Connect
) -> None:
    fake.add_field("Handle__c", length=5)
    connector = connect(field_map={"Handle__c": "github_username"})

    outcome = _only(connector.send([make_event(github_username="octocat-long")]))

    assert outcome == Permanent(
        "Salesforce STRING_TOO_LONG: Handle: data value too large: octocat-long "
        "(max length=5) (fields: Handle__c)"
    )


def test_unknown_field_is_permanent_invalid_field(connect: Connect) -> None:
    outcome = _only(connect(field_map={"Nope__c": "title"}).send([make_event()]))

    assert outcome == Permanent(
        "HTTP 400: Salesforce INVALID_FIELD: No such column 'Nope__c' on sobject of type Lead"
    )


def test_read_only_field_is_permanent(connect: Connect) -> None:
    outcome = _only(
        connect(field_map={"IsConverted": "extra.converted"}).send(
            [make_event(extra={"converted": True})]
        )
    )

    assert isinstance(outcome, Permanent)
    assert "INVALID_FIELD_FOR_INSERT_UPDATE: Unable to create/update fields: IsConverted" in (
        outcome.message
    )


# -- sessions and logins ---------------------------------------------------------------


def test_expired_session_logs_in_again_once(fake: FakeSalesforce, connect: Connect) -> None:
    connector = connect()
    connector.send([make_event()])
    fake.expire_sessions()

    outcome = _only(connector.send([make_event(type="lead.updated", title="CTO")]))

    assert isinstance(outcome, Delivered)
    assert fake.logins == 2
    assert fake.find(EXT, "email:jane@example.com")[0]["Title"] == "CTO"


def test_failed_relogin_is_permanent_login_failed(fake: FakeSalesforce, connect: Connect) -> None:
    connector = connect()
    connector.send([make_event()])
    fake.expire_sessions()
    fake.add_user(USERNAME, "rotated-password", TOKEN)

    outcome = _only(connector.send([make_event()]))

    assert outcome == Permanent(
        "login failed: INVALID_LOGIN: Invalid username, password, security token; "
        "or user locked out."
    )


def test_new_session_refused_too_is_permanent(fake: FakeSalesforce, connect: Connect) -> None:
    connector = connect()
    fake.reject_all_sessions = True

    outcome = _only(connector.send([make_event()]))

    assert isinstance(outcome, Permanent)
    assert outcome.message.startswith("login failed: Salesforce refused the new session too")
    assert fake.logins == 2  # the first login, and exactly one more


def test_session_id_mode_sends_and_reports_expiry(
    fake: FakeSalesforce, connect: Connect, server: RunningServer
) -> None:
    session = fake.issue_session()
    connector = connect(
        username=None, password=None, security_token=None, login_url=None,
        instance_url=server.base_url, session_id=session,
    )  # fmt: skip

    delivered = _only(connector.send([make_event()]))
    fake.expire_sessions()
    expired = _only(connector.send([make_event()]))

    assert isinstance(delivered, Delivered)
    assert isinstance(expired, Permanent)
    assert expired.message.startswith("session expired: INVALID_SESSION_ID")
    assert session not in expired.message
    assert fake.logins == 0


def test_soap_login_server_error_is_retryable(fake: FakeSalesforce, connect: Connect) -> None:
    fake.fail_next(503, "<html>Service Unavailable</html>", path_contains="/services/Soap/")

    outcome = _only(connect().send([make_event()]))

    assert isinstance(outcome, Retryable)
    assert outcome.message.startswith("login failed: 503")


def _rsa_key_pair(directory: Path) -> tuple[Path, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = directory / "server.key"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return key_file, public


def test_jwt_login(fake: FakeSalesforce, connect: Connect, tmp_path: Path) -> None:
    key_file, public = _rsa_key_pair(tmp_path)
    fake.add_jwt_client("3MVG9-consumer-key", public)
    connector = connect(
        password=None, security_token=None, consumer_key="3MVG9-consumer-key",
        private_key_file=str(key_file),
    )  # fmt: skip

    outcome = _only(connector.send([make_event()]))
    fake.expire_sessions()
    again = _only(connector.send([make_event()]))

    assert isinstance(outcome, Delivered)
    assert isinstance(again, Delivered)
    assert fake.logins == 2
    [token_call, *_] = [c for c in fake.calls if c.path == "/services/oauth2/token"]
    assert token_call.method == "POST"


def test_jwt_with_unregistered_key_is_permanent(
    fake: FakeSalesforce, connect: Connect, tmp_path: Path
) -> None:
    key_file, _ = _rsa_key_pair(tmp_path)
    (tmp_path / "other").mkdir()
    _, other_public = _rsa_key_pair(tmp_path / "other")
    fake.add_jwt_client("3MVG9-consumer-key", other_public)
    connector = connect(
        password=None, security_token=None, consumer_key="3MVG9-consumer-key",
        private_key_file=str(key_file),
    )  # fmt: skip

    outcome = _only(connector.send([make_event()]))

    assert outcome == Permanent("login failed: invalid_grant: invalid assertion")


# -- network failures ------------------------------------------------------------------


def test_connection_refused_is_retryable(connect: Connect) -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        port = placeholder.getsockname()[1]
        connector = connect(login_url=f"https://127.0.0.1:{port}")

        outcome = _only(connector.send([make_event()]))

    assert isinstance(outcome, Retryable)
    assert outcome.message.startswith("cannot reach Salesforce")


def test_timeout_is_retryable(fake: FakeSalesforce, connect: Connect) -> None:
    connector = connect(timeout=0.3)
    connector.send([make_event()])  # logged in
    fake.stall_next()

    outcome = _only(connector.send([make_event(type="lead.updated")]))
    fake.release()

    assert isinstance(outcome, Retryable)
    assert outcome.message.startswith("timeout after 0.3s")


def test_verify_option_wins_over_requests_ca_bundle(
    connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", requests.certs.where())

    assert isinstance(_only(connect().send([make_event()])), Delivered)


def test_untrusted_certificate_is_retryable_not_a_crash(connect: Connect) -> None:
    outcome = _only(connect(verify=True).send([make_event()]))

    assert isinstance(outcome, Retryable)
    assert "CERTIFICATE_VERIFY_FAILED" in outcome.message


# -- check_connection ------------------------------------------------------------------


def test_check_connection_passes(connect: Connect) -> None:
    connect().check_connection()


def test_check_connection_names_the_problem(fake: FakeSalesforce, connect: Connect) -> None:
    fake.add_field("Plain__c")
    with pytest.raises(ConnectionCheckFailed, match="Plain__c is not marked as an External ID"):
        connect(external_id_field="Plain__c").check_connection()
    with pytest.raises(ConnectionCheckFailed, match="Lead has no field\\(s\\) Nope__c"):
        connect(field_map={"Nope__c": "title"}).check_connection()
    with pytest.raises(ConnectionCheckFailed, match="login failed: INVALID_LOGIN"):
        connect(password="wrong").check_connection()


def test_check_connection_asks_for_task_rights_only_when_tasks_are_logged(
    fake: FakeSalesforce, connect: Connect
) -> None:
    fake.tasks_createable = False

    with pytest.raises(ConnectionCheckFailed, match="cannot create Task records"):
        connect().check_connection()
    connect(activity_tasks=False).check_connection()
    assert [c.path for c in fake.data_calls("GET", "/describe")][-1].endswith("Lead/describe")


# -- secrets and options ---------------------------------------------------------------


def test_secrets_never_in_repr_or_errors(fake: FakeSalesforce, connect: Connect) -> None:
    connector = connect()
    connector.send([make_event()])
    session = next(iter(fake.sessions))
    fake.fail_next(
        400,
        [
            {
                "errorCode": "INVALID_FIELD",
                "message": f"echo {session} {PASSWORD}{TOKEN} sessionid=x1",
            }
        ],
    )

    outcome = _only(connector.send([make_event()]))
    failed_login = _only(connect(password="wrong-SECRET").send([make_event()]))

    text = repr(connector) + repr(connector.options) + outcome.message + failed_login.message
    for secret in (session, PASSWORD, TOKEN, "wrong-SECRET", "sessionid=x1"):
        assert secret not in text
    assert "**********" in outcome.message


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "choose exactly one way to authenticate"),
        ({"username": "u", "password": "p", "session_id": "s"}, "choose exactly one"),
        ({"password": "p"}, "also needs: username"),
        ({"instance_url": "https://x.my.salesforce.com"}, "also needs: session_id"),
        ({"instance_url": "http://x.my.salesforce.com", "session_id": "s"}, "https://"),
        ({"consumer_key": "k", "username": "u"}, "also needs: private_key_file"),
        ({"username": "u", "password": "p", "external_id_field": "bad field"}, "API name"),
        ({"username": "u", "password": "p", "api_version": "latest"}, "API version"),
        ({"username": "u", "password": "p", "verify": "/nonexistent/ca.pem"}, "does not exist"),
    ],
)
def test_options_validation(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SalesforceOptions(**options)


def test_registry_resolves_the_connector() -> None:
    assert connector_class("salesforce") is SalesforceConnector


# -- fallback values only on create (issue 18) ------------------------------------------------


def test_update_by_email_never_sends_fallback_values(
    fake: FakeSalesforce, connect: Connect
) -> None:
    existing = fake.seed_lead(LastName="Doe", Company="Real Co", Email="jane@example.com")
    event = make_event(
        type="lead.updated",
        email="jane@example.com",
        first_name=None,
        last_name=None,
        full_name=None,
        company=None,
        stage="qualified",
    )
    outcome = _only(connect(external_id_field=None).send([event]))
    assert outcome == Delivered(f"updated Lead {existing}")
    assert fake.leads[existing]["Company"] == "Real Co"
    assert fake.leads[existing]["LastName"] == "Doe"
    [update] = fake.data_calls("PATCH", "/composite/sobjects")
    assert not {"Company", "LastName"} & set(update.body["records"][0])


def test_upsert_sends_fallback_values_only_to_create(
    fake: FakeSalesforce, connect: Connect
) -> None:
    connector = connect()
    thin = {"first_name": None, "last_name": None, "full_name": None, "company": None}
    created = _only(connector.send([make_event(email="new@example.com", **thin)]))
    assert isinstance(created, Delivered), created
    [lead] = fake.find("Email", "new@example.com")
    assert (lead["LastName"], lead["Company"]) == ("new", "example.com")

    fake.leads[lead["Id"]].update(LastName="Newton", Company="Real Co")
    updated = _only(connector.send([make_event(email="new@example.com", **thin)]))
    assert isinstance(updated, Delivered), updated
    [lead] = fake.find("Email", "new@example.com")
    assert (lead["LastName"], lead["Company"]) == ("Newton", "Real Co")


def test_a_create_and_an_update_in_one_write_keep_the_first_events_real_name(
    fake: FakeSalesforce, connect: Connect
) -> None:
    events = [
        make_event(last_name="Doe", full_name="Jane Doe"),
        # No name: its own create would fall back to the email's local part.
        make_event(type="lead.updated", last_name=None, full_name=None, title="CTO"),
    ]

    outcomes = connect(external_id_field=None).send(events)

    assert all(isinstance(o, Delivered) for o in outcomes)
    [lead] = fake.find("Email", "jane@example.com")
    assert (lead["LastName"], lead["Title"]) == ("Doe", "CTO")
    assert len(fake.data_calls("POST", "/composite/sobjects")) == 1
