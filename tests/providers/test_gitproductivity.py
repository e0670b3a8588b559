"""GitProductivity: developer events become leads, the rest is ignored."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from leadrelay.core.ingest.providers import Ignored, Unreadable
from leadrelay.core.schema import event_id_for
from tests.providers.common import fixture, parse, parse_event

PROVIDER = "gitproductivity"


def doc_sample() -> dict:
    return fixture(PROVIDER, "developer.added")


def test_doc_sample_developer_added_is_lead_created() -> None:
    event = parse_event(PROVIDER, doc_sample())
    assert event.type == "lead.created"
    assert event.provider_event == "developer.added"
    assert event.idempotency_key == "evt_123abc"
    assert event.event_id == event_id_for("gitproductivity", "evt_123abc")
    assert event.occurred_at == datetime(2026, 3, 19, 10, 30, tzinfo=UTC)
    assert event.activity is None
    lead = event.lead
    assert lead.key == "email:jane@example.com"
    assert lead.provider_lead_id == "dev_456"
    assert lead.email == "jane@example.com"
    assert (lead.first_name, lead.last_name, lead.full_name) == ("Jane", "Doe", "Jane Doe")
    assert lead.status is None
    assert lead.extra == {}


def test_developer_removed_is_update_with_status_removed() -> None:
    payload = doc_sample()
    payload.update(id="evt_789def", type="developer.removed")
    event = parse_event(PROVIDER, payload)
    assert event.type == "lead.updated"
    assert event.provider_event == "developer.removed"
    assert event.lead.status == "removed"
    assert event.lead.key == "email:jane@example.com"
    assert event.idempotency_key == "evt_789def"


@pytest.mark.parametrize(
    "name",
    ["repository.connected", "repository.disconnected", "analysis.complete", "metrics.updated"],
)
def test_non_lead_events_are_ignored_with_their_event_id(name: str) -> None:
    payload = {"id": "evt_9", "type": name, "created_at": "2026-03-19T10:32:00Z", "data": {}}
    result = parse(PROVIDER, payload)
    assert result == Ignored(name, "evt_9", f"{name!r} is not a lead event")


def test_unknown_event_is_ignored_as_unknown() -> None:
    payload = doc_sample()
    payload["type"] = "developer.promoted"
    result = parse(PROVIDER, payload)
    assert isinstance(result, Ignored)
    assert result.reason == "unknown event 'developer.promoted'"
    assert result.idempotency_key == "evt_123abc"


def test_idempotency_key_is_the_event_id_and_survives_reserialization() -> None:
    compact = json.loads(json.dumps(doc_sample(), separators=(",", ":"), sort_keys=True))
    assert parse_event(PROVIDER, compact).idempotency_key == "evt_123abc"


def test_missing_event_id_falls_back_to_a_stable_fingerprint() -> None:
    payload = doc_sample()
    del payload["id"]
    first = parse_event(PROVIDER, payload)
    assert first.idempotency_key.startswith("sha256:")
    assert parse_event(PROVIDER, json.loads(json.dumps(payload))).idempotency_key == (
        first.idempotency_key
    )
    payload["created_at"] = "2026-03-19T10:31:00Z"
    assert parse_event(PROVIDER, payload).idempotency_key != first.idempotency_key


def test_numeric_event_and_developer_ids() -> None:
    payload = doc_sample()
    payload["id"] = 1001
    payload["data"].update(developer_id=456, email=None)
    event = parse_event(PROVIDER, payload)
    assert event.idempotency_key == "1001"
    assert event.lead.key == "gitproductivity:456"


def test_one_word_name_and_extra_fields() -> None:
    payload = doc_sample()
    payload["data"].update(name="jdoe", github_login="jdoe", team="Platform")
    lead = parse_event(PROVIDER, payload).lead
    assert (lead.first_name, lead.last_name, lead.full_name) == ("jdoe", None, "jdoe")
    assert lead.extra == {"github_login": "jdoe", "team": "Platform"}


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"id": "evt_1", "data": {}}, "type: missing (required)"),
        ({"id": "evt_1", "type": "developer.added"}, "data: expected an object, got null"),
        ({"id": {"v": 1}, "type": "developer.added", "data": {}}, "id: expected a string"),
        (
            {"id": "evt_1", "type": "developer.added", "data": {"name": "No Identity"}},
            "no field identifies the lead",
        ),
    ],
)
def test_unreadable_shapes(payload: dict, reason: str) -> None:
    result = parse(PROVIDER, payload)
    assert isinstance(result, Unreadable)
    assert result.reason.startswith(reason)
