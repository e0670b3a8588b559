"""GitLeads: the doc sample and every documented event, normalized values asserted."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime

import pytest

from leadrelay.core.ingest.providers import Ignored, Unreadable
from leadrelay.core.schema import event_id_for
from tests.providers.common import fixture, parse, parse_event

PROVIDER = "gitleads"


def doc_sample() -> dict:
    return fixture(PROVIDER, "lead.created")


def test_doc_sample_normalizes_to_expected_lead() -> None:
    event = parse_event(PROVIDER, doc_sample())
    assert event.type == "lead.created"
    assert event.provider_event == "lead.created"
    assert event.provider == "gitleads"
    assert event.source == "gitleads"
    assert event.occurred_at == datetime(2026, 4, 24, 10, 31, tzinfo=UTC)
    assert event.event_id == event_id_for("gitleads", event.idempotency_key)
    assert event.idempotency_key.startswith("sha256:")
    lead = event.lead
    assert lead.key == "email:jane@example.com"
    assert lead.provider_lead_id == "lead_abc123"
    assert lead.email == "jane@example.com"
    assert (lead.first_name, lead.last_name, lead.full_name) == ("Jane", "Doe", "Jane Doe")
    assert lead.github_username == "jdoe"
    assert lead.github_url == "https://github.com/jdoe"
    assert lead.bio == "Staff engineer @ Vercel. Loves Rust."
    assert lead.company == "Vercel"
    assert lead.location == "San Francisco, CA"
    assert lead.extra == {
        "followers": 1842,
        "public_repos": 47,
        "account_created_at": "2019-03-12",
        "top_languages": ["TypeScript", "Rust", "Go"],
        "captured_at": "2026-04-24T10:31:00Z",
    }
    assert event.activity is not None
    assert event.activity.kind == "star"
    assert event.activity.text == "Starred on 2026-04-24"
    assert event.activity.context == {
        "signal_source": "competitor/their-sdk",
        "signal_context": "Starred on 2026-04-24",
    }
    assert event.raw == doc_sample()


@pytest.mark.parametrize(
    ("signal_type", "kind"),
    [
        ("stargazer", "star"),
        ("keyword_issue", "issue"),
        ("keyword_pr", "pull_request"),
        ("keyword_code", "code"),
        ("keyword_discussion", "keyword_discussion"),  # undocumented: passed through
    ],
)
def test_signal_type_becomes_activity_kind(signal_type: str, kind: str) -> None:
    payload = doc_sample()
    payload["data"]["signal_type"] = signal_type
    event = parse_event(PROVIDER, payload)
    assert event.activity is not None
    assert event.activity.kind == kind


@pytest.mark.parametrize("name", ["lead.enriched", "lead.updated"])
def test_enriched_and_updated_keep_their_type_without_activity(name: str) -> None:
    payload = doc_sample()
    payload["event"] = name
    event = parse_event(PROVIDER, payload)
    assert event.type == name
    assert event.provider_event == name
    assert event.activity is None
    assert event.lead.key == "email:jane@example.com"
    # Without an activity the signal fields are still kept with the lead.
    assert event.lead.extra["signal_type"] == "stargazer"


def test_idempotency_key_is_stable_across_reserialization_and_distinct_per_event() -> None:
    payload = doc_sample()
    first = parse_event(PROVIDER, payload)
    reordered = json.loads(json.dumps(payload, sort_keys=True, indent=4))
    again = parse_event(PROVIDER, reordered)
    assert again.idempotency_key == first.idempotency_key
    assert again.event_id == first.event_id

    enriched = copy.deepcopy(payload)
    enriched["event"] = "lead.enriched"
    later = copy.deepcopy(payload)
    later["timestamp"] = "2026-04-24T10:32:00Z"
    changed_same_second = copy.deepcopy(payload)
    changed_same_second["event"] = "lead.updated"
    changed_same_second_2 = copy.deepcopy(changed_same_second)
    changed_same_second_2["data"]["company"] = "Acme"
    keys = {
        parse_event(PROVIDER, variant).idempotency_key
        for variant in (payload, enriched, later, changed_same_second, changed_same_second_2)
    }
    assert len(keys) == 5


def test_event_id_depends_on_the_source() -> None:
    eu = parse_event(PROVIDER, doc_sample(), source="gitleads-eu")
    us = parse_event(PROVIDER, doc_sample(), source="gitleads")
    assert eu.idempotency_key == us.idempotency_key
    assert eu.event_id == event_id_for("gitleads-eu", eu.idempotency_key)
    assert eu.event_id != us.event_id
    assert eu.source == "gitleads-eu"
    assert eu.provider == "gitleads"


def test_null_email_falls_back_to_github_then_lead_id() -> None:
    payload = doc_sample()
    payload["data"]["email"] = None
    assert parse_event(PROVIDER, payload).lead.key == "github:jdoe"
    payload["data"]["github_username"] = None
    assert parse_event(PROVIDER, payload).lead.key == "gitleads:lead_abc123"
    del payload["data"]["id"]
    result = parse(PROVIDER, payload)
    assert isinstance(result, Unreadable)
    assert "identifies the lead" in result.reason
    assert result.provider_event == "lead.created"


def test_invalid_email_is_kept_in_extra_not_used() -> None:
    payload = doc_sample()
    payload["data"]["email"] = "jane at example dot com"
    lead = parse_event(PROVIDER, payload).lead
    assert lead.email is None
    assert lead.extra["invalid_email"] == "jane at example dot com"
    assert lead.key == "github:jdoe"


@pytest.mark.parametrize("email", ["dotty..dots@example..com", "a" * 70 + "@example.com"])
def test_malformed_email_is_no_identity(email: str) -> None:
    payload = doc_sample()
    payload["data"]["email"] = email
    lead = parse_event(PROVIDER, payload).lead
    assert (lead.email, lead.extra["invalid_email"]) == (None, email)
    assert lead.key == "github:jdoe"


def test_email_key_is_lower_cased_but_email_kept_as_sent() -> None:
    payload = doc_sample()
    payload["data"]["email"] = "  Jane.Doe@Example.COM "
    lead = parse_event(PROVIDER, payload).lead
    assert lead.email == "Jane.Doe@Example.COM"
    assert lead.key == "email:jane.doe@example.com"


def test_unknown_event_is_ignored_with_reason() -> None:
    payload = doc_sample()
    payload["event"] = "lead.exploded"
    result = parse(PROVIDER, payload)
    assert isinstance(result, Ignored)
    assert result.provider_event == "lead.exploded"
    assert result.reason == "unknown event 'lead.exploded'"
    assert result.idempotency_key.startswith("sha256:")
    assert parse(PROVIDER, payload) == result


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda p: p.pop("event"), "event: missing (required)"),
        (lambda p: p.update(event=["lead.created"]), "event: expected a string, got array"),
        (lambda p: p.update(data="lead_abc123"), "data: expected an object, got string"),
        (lambda p: p.pop("data"), "data: expected an object, got null"),
        (lambda p: p["data"].update(name={"first": "Jane"}), "data.name: expected a string"),
        (lambda p: p["data"].update(email=True), "data.email: expected a string, got boolean"),
    ],
)
def test_unreadable_shapes_name_the_field(mutate, reason: str) -> None:  # type: ignore[no-untyped-def]
    payload = doc_sample()
    mutate(payload)
    result = parse(PROVIDER, payload)
    assert isinstance(result, Unreadable)
    assert result.reason.startswith(reason)


def test_minimal_payload_with_missing_optional_fields() -> None:
    event = parse_event(
        PROVIDER, {"event": "lead.created", "data": {"id": "lead_1", "github_username": "octo"}}
    )
    assert event.lead.key == "github:octo"
    assert event.occurred_at is None
    assert event.activity is None
    assert event.lead.first_name is None
    assert event.lead.extra == {}


def test_unparseable_timestamp_falls_back_to_captured_at_then_none() -> None:
    payload = doc_sample()
    payload["timestamp"] = "yesterday-ish"
    payload["data"]["captured_at"] = "2026-04-24T09:00:00+02:00"
    event = parse_event(PROVIDER, payload)
    assert event.occurred_at == datetime(2026, 4, 24, 7, 0, tzinfo=UTC)
    payload["data"]["captured_at"] = "not a date"
    event = parse_event(PROVIDER, payload)
    assert event.occurred_at is None
    assert event.raw["timestamp"] == "yesterday-ish"


def test_numbers_as_strings_and_numbers_as_text() -> None:
    payload = doc_sample()
    payload["data"].update(followers="1842", id=98765, github_username=12345)
    lead = parse_event(PROVIDER, payload).lead
    assert lead.extra["followers"] == "1842"
    assert lead.provider_lead_id == "98765"
    assert lead.github_username == "12345"
