"""LeadHub: lead lifecycle, pipeline and form events, normalized values asserted."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime

import pytest

from leadrelay.core.ingest.providers import Ignored, Unreadable
from leadrelay.core.schema import event_id_for
from tests.providers.common import fixture, fixture_text, parse, parse_event

PROVIDER = "leadhub"
# The doc page was saved through an e-mail obfuscator: the sample's addresses literally
# read "[email protected]" (with a no-break space), kept verbatim in the fixture.
OBFUSCATED = "[email\u00a0protected]"


def doc_sample() -> dict:
    return fixture(PROVIDER, "lead.created")


def valid_sample() -> dict:
    payload = doc_sample()
    payload["lead"].update(email="jane.smith@example.com", assigned_to="sam@example.com")
    return payload


def test_fixture_keeps_the_obfuscated_addresses_verbatim() -> None:
    assert fixture_text(PROVIDER, "lead.created").count(OBFUSCATED) == 2


def test_doc_sample_normalizes_with_invalid_email_moved_to_extra() -> None:
    event = parse_event(PROVIDER, doc_sample())
    assert event.type == "lead.created"
    assert event.provider_event == "lead.created"
    assert event.occurred_at == datetime(2026, 4, 29, 10, 30, tzinfo=UTC)
    assert event.event_id == event_id_for("leadhub", event.idempotency_key)
    assert event.activity is None
    lead = event.lead
    assert lead.email is None
    assert lead.key == "leadhub:123"
    assert lead.provider_lead_id == "123"
    assert (lead.first_name, lead.last_name, lead.full_name) == ("Jane", "Smith", "Jane Smith")
    assert lead.phone == "+1-555-000-0000"
    assert lead.lead_source == "web_form"
    assert lead.status == "new"
    assert lead.score == 45
    assert lead.stage == "New Lead"
    assert lead.owner == OBFUSCATED  # an owner is a label, not a contact address
    assert lead.tags == ["vip", "from-webinar"]
    assert lead.extra == {
        "pipeline": "Sales Pipeline",
        "created_at": "2026-04-29T10:30:00Z",
        "invalid_email": OBFUSCATED,
    }


def test_valid_email_is_the_key() -> None:
    lead = parse_event(PROVIDER, valid_sample()).lead
    assert lead.email == "jane.smith@example.com"
    assert lead.key == "email:jane.smith@example.com"
    assert "invalid_email" not in lead.extra


@pytest.mark.parametrize(
    ("name", "event_type", "kind", "text"),
    [
        ("lead.created", "lead.created", None, None),
        ("lead.updated", "lead.updated", None, None),
        ("lead.deleted", "lead.deleted", None, None),
        ("lead.stage_changed", "lead.updated", "stage_changed", "New Lead"),
        ("lead.assigned", "lead.updated", "assigned", "sam@example.com"),
        ("form.submitted", "lead.activity", "form_submitted", None),
    ],
)
def test_every_documented_event(
    name: str, event_type: str, kind: str | None, text: str | None
) -> None:
    payload = valid_sample()
    payload["event"] = name
    event = parse_event(PROVIDER, payload)
    assert event.type == event_type
    assert event.provider_event == name
    assert event.lead.key == "email:jane.smith@example.com"
    if kind is None:
        assert event.activity is None
    else:
        assert event.activity is not None
        assert event.activity.kind == kind
        assert event.activity.text == text


def test_stage_change_keeps_previous_stage_in_context() -> None:
    payload = valid_sample()
    payload.update(event="lead.stage_changed", previous_stage="Contacted")
    payload["lead"]["stage"] = "Qualified"
    event = parse_event(PROVIDER, payload)
    assert event.lead.stage == "Qualified"
    assert event.activity is not None
    assert event.activity.text == "Qualified"
    assert event.activity.context == {"previous_stage": "Contacted"}


def test_form_submission_names_the_form() -> None:
    payload = valid_sample()
    payload.update(event="form.submitted", form={"id": 7, "name": "Webinar signup"})
    event = parse_event(PROVIDER, payload)
    assert event.type == "lead.activity"
    assert event.activity is not None
    assert event.activity.kind == "form_submitted"
    assert event.activity.text == "Webinar signup"
    assert event.activity.context == {"form": {"id": 7, "name": "Webinar signup"}}


def test_unknown_event_is_ignored() -> None:
    payload = valid_sample()
    payload["event"] = "lead.merged"
    result = parse(PROVIDER, payload)
    assert isinstance(result, Ignored)
    assert result.reason == "unknown event 'lead.merged'"


def test_idempotency_key_stable_and_distinct() -> None:
    payload = valid_sample()
    first = parse_event(PROVIDER, payload).idempotency_key
    assert parse_event(PROVIDER, json.loads(json.dumps(payload, indent=1))).idempotency_key == (
        first
    )
    other_lead = copy.deepcopy(payload)
    other_lead["lead"]["id"] = 124
    other_event = copy.deepcopy(payload)
    other_event["event"] = "lead.updated"
    same_second_other_change = copy.deepcopy(other_event)
    same_second_other_change["lead"]["stage"] = "Won"
    keys = {
        parse_event(PROVIDER, variant).idempotency_key
        for variant in (other_lead, other_event, same_second_other_change)
    }
    assert first not in keys
    assert len(keys) == 3


@pytest.mark.parametrize(
    ("score", "expected"), [("45", 45.0), (" 4.5 ", 4.5), (0, 0.0), (None, None), ("", None)]
)
def test_score_accepts_numbers_as_strings(score: object, expected: float | None) -> None:
    payload = valid_sample()
    payload["lead"]["lead_score"] = score
    assert parse_event(PROVIDER, payload).lead.score == expected


@pytest.mark.parametrize("score", ["high", "NaN", "1e999", True, [45]])
def test_score_that_is_not_a_number_is_unreadable(score: object) -> None:
    payload = valid_sample()
    payload["lead"]["lead_score"] = score
    result = parse(PROVIDER, payload)
    assert isinstance(result, Unreadable)
    assert result.reason.startswith("lead.lead_score: expected a")


def test_tags_as_comma_separated_text_and_with_nulls() -> None:
    payload = valid_sample()
    payload["lead"]["tags"] = "vip, from-webinar,,"
    assert parse_event(PROVIDER, payload).lead.tags == ["vip", "from-webinar"]
    payload["lead"]["tags"] = ["vip", None, 7]
    assert parse_event(PROVIDER, payload).lead.tags == ["vip", "7"]


def test_a_single_name_field_is_split() -> None:
    payload = valid_sample()
    for field in ("first_name", "last_name"):
        del payload["lead"][field]
    payload["lead"]["name"] = "Ana de la Cruz"
    lead = parse_event(PROVIDER, payload).lead
    assert (lead.first_name, lead.last_name, lead.full_name) == (
        "Ana",
        "de la Cruz",
        "Ana de la Cruz",
    )


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"lead": {"id": 1}}, "event: missing (required)"),
        ({"event": "lead.created", "lead": [1]}, "lead: expected an object, got array"),
        ({"event": "lead.created", "lead": {}}, "no field identifies the lead"),
        ({"event": "form.submitted", "lead": {"id": 1}, "form": "x"}, "form: expected an object"),
    ],
)
def test_unreadable_shapes(payload: dict, reason: str) -> None:
    result = parse(PROVIDER, payload)
    assert isinstance(result, Unreadable)
    assert result.reason.startswith(reason)
