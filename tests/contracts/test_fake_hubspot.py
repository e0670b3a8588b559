"""The fake HubSpot's answers, held to HubSpot's OpenAPI response schemas (CRM v3).

Each case drives the fake into one kind of answer and validates the body against the
model the SDK deserializes that status into (tests/vendor_specs/hubspot-crm-v3.schema.json).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.fakes.hubspot import READ_SCOPE, FakeHubSpot
from tests.vendor_specs import HUBSPOT, problems

UPSERT = "/crm/v3/objects/contacts/batch/upsert"
READ = "/crm/v3/objects/contacts/batch/read"
NOTES = "/crm/v3/objects/notes"
AUTH = {"Authorization": "Bearer test-token"}


def _contact(email: str, trace: str | None = None, **properties: str) -> dict[str, Any]:
    item: dict[str, Any] = {"id": email, "idProperty": "email", "properties": properties}
    if trace is not None:
        item["objectWriteTraceId"] = trace
    return item


def _seed(client: FlaskClient) -> str:
    """A stored contact; its id."""
    answer = client.post(UPSERT, json={"inputs": [_contact("seed@example.com")]}, headers=AUTH)
    assert answer.status_code == 200, answer.json
    return str(answer.json["results"][0]["id"])


def _note(contact_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "properties": {"hs_note_body": "<p>Starred</p>", "hs_timestamp": "2026-04-24T10:31:00Z"},
        "associations": [
            {
                "to": {"id": contact_id},
                "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 202}],
            }
        ],
        **extra,
    }


@dataclass(frozen=True)
class Case:
    name: str
    ask: Callable[[FlaskClient], Any]
    status: int
    definition: str


CASES = [
    Case(
        "upsert, all accepted",
        lambda c: c.post(
            UPSERT,
            json={"inputs": [_contact("a@example.com", firstname="A"), _contact("b@example.com")]},
            headers=AUTH,
        ),
        200,
        "BatchResponseSimplePublicUpsertObject",
    ),
    Case(
        "upsert, one malformed email among traced inputs (multi-status)",
        lambda c: c.post(
            UPSERT,
            json={
                "inputs": [
                    _contact("ok@example.com", "0"),
                    _contact("dotty..dots@example..com", "1"),
                    _contact("long@example.com", "2", message="x" * 65_537),
                ]
            },
            headers=AUTH,
        ),
        207,
        "BatchResponseSimplePublicUpsertObjectWithErrors",
    ),
    Case(
        "upsert, a property HubSpot does not have, untraced (whole batch refused)",
        lambda c: c.post(
            UPSERT, json={"inputs": [_contact("a@example.com", nosuch="x")]}, headers=AUTH
        ),
        400,
        "Error",
    ),
    Case(
        "upsert, over 100 inputs",
        lambda c: c.post(
            UPSERT,
            json={"inputs": [_contact(f"n{i}@example.com") for i in range(101)]},
            headers=AUTH,
        ),
        400,
        "Error",
    ),
    Case(
        "batch read, one found and one missing",
        lambda c: (
            _seed(c),
            c.post(
                READ,
                json={
                    "idProperty": "email",
                    "inputs": [{"id": "seed@example.com"}, {"id": "gone@example.com"}],
                    "properties": ["email"],
                    "propertiesWithHistory": [],
                },
                headers=AUTH,
            ),
        )[1],
        207,
        "BatchResponseSimplePublicObjectWithErrors",
    ),
    Case(
        "list one contact page",
        lambda c: (_seed(c), c.get("/crm/v3/objects/contacts?limit=1", headers=AUTH))[1],
        200,
        "CollectionResponseSimplePublicObjectWithAssociationsForwardPaging",
    ),
    Case(
        "create one note on a contact",
        lambda c: c.post(NOTES, json=_note(_seed(c)), headers=AUTH),
        201,
        "SimplePublicObject",
    ),
    Case(
        "create notes in a batch",
        lambda c: c.post(f"{NOTES}/batch/create", json={"inputs": [_note(_seed(c))]}, headers=AUTH),
        201,
        "BatchResponseSimplePublicObject",
    ),
    Case(
        "create notes, one on a missing contact (multi-status)",
        lambda c: c.post(
            f"{NOTES}/batch/create",
            json={
                "inputs": [
                    _note(_seed(c), objectWriteTraceId="0"),
                    _note("999999", objectWriteTraceId="1"),
                ]
            },
            headers=AUTH,
        ),
        207,
        "BatchResponseSimplePublicObjectWithErrors",
    ),
    Case(
        "no token",
        lambda c: c.post(UPSERT, json={"inputs": []}),
        401,
        "Error",
    ),
]


@pytest.fixture(scope="module")
def fake() -> FakeHubSpot:
    return FakeHubSpot()


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_the_answer_matches_hubspots_schema(fake: FakeHubSpot, case: Case) -> None:
    fake.reset()
    answer = case.ask(fake.app.test_client())

    assert answer.status_code == case.status, answer.json
    assert problems(HUBSPOT, case.definition, answer.json) == []


def test_a_missing_scope_answer_matches_hubspots_schema(fake: FakeHubSpot) -> None:
    fake.reset(tokens={"test-token": {READ_SCOPE}})
    answer = fake.app.test_client().post(UPSERT, json={"inputs": []}, headers=AUTH)

    assert answer.status_code == 403
    assert problems(HUBSPOT, "Error", answer.json) == []


def test_the_schema_refuses_an_error_entry_without_links() -> None:
    # The contract has teeth: the spec's StandardError requires `links` (and `errors`).
    entry = {
        "status": "error",
        "category": "VALIDATION_ERROR",
        "message": "Property values were not valid",
        "errors": [],
        "context": {"objectWriteTraceId": ["0"]},
    }
    answer = {
        "status": "COMPLETE",
        "results": [],
        "errors": [entry],
        "numErrors": 1,
        "startedAt": "2026-04-24T10:31:00.000Z",
        "completedAt": "2026-04-24T10:31:00.100Z",
    }

    found = problems(HUBSPOT, "BatchResponseSimplePublicUpsertObjectWithErrors", answer)

    assert found == ["errors/0: 'links' is a required property"]
