"""The fake Salesforce's answers, held to the REST API's documented shapes.

Each case drives the fake into one kind of answer and validates the body against
tests/vendor_specs/salesforce-rest.schema.json (sObject Collections results, request-level
errors, describe, query).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.fakes.salesforce import FakeSalesforce
from tests.vendor_specs import SALESFORCE, problems

DATA = "/services/data/v59.0"
COLLECTIONS = f"{DATA}/composite/sobjects"
EXT = "LeadRelay_Key__c"


def _lead(**values: Any) -> dict[str, Any]:
    return {"attributes": {"type": "Lead"}, "LastName": "Doe", "Company": "Acme", **values}


@dataclass(frozen=True)
class Case:
    name: str
    ask: Callable[[FlaskClient, dict[str, str], FakeSalesforce], Any]
    status: int
    definition: str
    codes: tuple[str, ...] = ()  # the error codes the answer must carry, in order


def _record_codes(body: Any) -> tuple[str, ...]:
    return tuple(e["statusCode"] for result in body for e in result["errors"])


def _request_codes(body: Any) -> tuple[str, ...]:
    return tuple(error["errorCode"] for error in body)


def _task(who: str, **values: Any) -> dict[str, Any]:
    return {
        "attributes": {"type": "Task"},
        "WhoId": who,
        "Subject": "Starred a repository",
        "Status": "Completed",
        "Priority": "Normal",
        "ActivityDate": "2026-04-24",
        **values,
    }


CASES = [
    Case(
        "describe Lead",
        lambda c, h, f: c.get(f"{DATA}/sobjects/Lead/describe", headers=h),
        200,
        "DescribeSObject",
    ),
    Case(
        "describe Task",
        lambda c, h, f: c.get(f"{DATA}/sobjects/Task/describe", headers=h),
        200,
        "DescribeSObject",
    ),
    Case(
        "create: accepted, malformed email, missing LastName, over-long Title",
        lambda c, h, f: c.post(
            COLLECTIONS,
            json={
                "allOrNone": False,
                "records": [
                    _lead(Email="jane@example.com"),
                    _lead(Email="dotty..dots@example..com"),
                    _lead(LastName=""),
                    _lead(Title="t" * 129),
                ],
            },
            headers=h,
        ),
        200,
        "CollectionResponse",
        ("INVALID_EMAIL_ADDRESS", "REQUIRED_FIELD_MISSING", "STRING_TOO_LONG"),
    ),
    Case(
        "upsert by external id: created, then updated",
        lambda c, h, f: (
            f.seed_lead(LastName="Old", Company="Acme", **{EXT: "email:old@example.com"}),
            c.patch(
                f"{COLLECTIONS}/Lead/{EXT}",
                json={
                    "allOrNone": False,
                    "records": [
                        _lead(**{EXT: "email:new@example.com"}),
                        _lead(**{EXT: "email:old@example.com"}),
                    ],
                },
                headers=h,
            ),
        )[1],
        200,
        "CollectionUpsertResponse",
    ),
    Case(
        "update without an id",
        lambda c, h, f: c.patch(
            COLLECTIONS, json={"allOrNone": False, "records": [_lead()]}, headers=h
        ),
        200,
        "CollectionResponse",
        ("MISSING_ARGUMENT",),
    ),
    Case(
        "create with a field Lead does not have",
        lambda c, h, f: c.post(
            COLLECTIONS, json={"records": [_lead(MailingCity="Berlin")]}, headers=h
        ),
        400,
        "RequestErrors",
        ("INVALID_FIELD",),
    ),
    Case(
        "create with over 200 records",
        lambda c, h, f: c.post(COLLECTIONS, json={"records": [_lead()] * 201}, headers=h),
        400,
        "RequestErrors",
        ("EXCEEDED_ID_LIMIT",),
    ),
    Case(
        "a Task on a Lead, and one on no Lead",
        lambda c, h, f: c.post(
            COLLECTIONS,
            json={
                "records": [
                    _task(f.seed_lead(LastName="Doe", Company="Acme")),
                    _task("00Q000000000999AAA"),
                ]
            },
            headers=h,
        ),
        200,
        "CollectionResponse",
        ("INVALID_CROSS_REFERENCE_KEY",),
    ),
    Case(
        "a Task with a field Task does not have",
        lambda c, h, f: c.post(
            COLLECTIONS, json={"records": [_task("00Q000000000001AAA", Company="x")]}, headers=h
        ),
        400,
        "RequestErrors",
        ("INVALID_FIELD",),
    ),
    Case(
        "query by Email",
        lambda c, h, f: (
            f.seed_lead(LastName="Doe", Company="Acme", Email="jane@example.com"),
            c.get(
                f"{DATA}/query",
                query_string={"q": "SELECT Id, Email FROM Lead WHERE Email = 'jane@example.com'"},
                headers=h,
            ),
        )[1],
        200,
        "QueryResponse",
    ),
    Case(
        "no session",
        lambda c, h, f: c.get(f"{DATA}/sobjects/Lead/describe"),
        401,
        "RequestErrors",
        ("INVALID_SESSION_ID",),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_the_answer_matches_the_documented_shape(case: Case) -> None:
    fake = FakeSalesforce()
    fake.add_field(EXT, external_id=True)
    headers = {"Authorization": f"Bearer {fake.issue_session()}"}

    answer = case.ask(fake.app.test_client(), headers, fake)

    assert answer.status_code == case.status, answer.json
    assert problems(SALESFORCE, case.definition, answer.json) == []
    if case.definition.startswith("Collection"):
        assert _record_codes(answer.json) == case.codes
    elif case.definition == "RequestErrors":
        assert _request_codes(answer.json) == case.codes


@pytest.mark.parametrize(
    ("sobject", "expected"),
    [
        (
            "Lead",
            {
                "FirstName": ("string", 40),
                "Email": ("email", 80),
                "Phone": ("phone", 40),
                "Website": ("url", 255),
                "LeadSource": ("picklist", 255),
                "Status": ("picklist", 255),
                "Description": ("textarea", 32000),
                "Latitude": ("double", 0),
                "OwnerId": ("reference", 18),
                "HasOptedOutOfEmail": ("boolean", 0),
            },
        ),
        (
            "Task",
            {
                "WhoId": ("reference", 18),
                "Subject": ("combobox", 255),
                "Description": ("textarea", 32000),
                "Status": ("picklist", 40),
                "ActivityDate": ("date", 0),
            },
        ),
    ],
)
def test_describe_gives_the_objects_real_field_types(
    sobject: str, expected: dict[str, tuple[str, int]]
) -> None:
    fake = FakeSalesforce()
    headers = {"Authorization": f"Bearer {fake.issue_session()}"}

    fields = fake.app.test_client().get(f"{DATA}/sobjects/{sobject}/describe", headers=headers)

    described = {f["name"]: (f["type"], f["length"]) for f in fields.json["fields"]}
    assert {name: described.get(name) for name in expected} == expected


def test_the_schema_refuses_a_record_error_without_fields() -> None:
    # The contract has teeth: every error of a SaveResult names its fields (maybe none).
    result = [{"success": False, "errors": [{"statusCode": "X", "message": "no"}]}]

    assert problems(SALESFORCE, "CollectionResponse", result) == [
        "0/errors/0: 'fields' is a required property"
    ]
