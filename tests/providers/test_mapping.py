"""Field mapping of generic sources: JMESPath from YAML, read under the adapters' policy.

A bad expression is a config error naming its key path; at request time a payload the
mapping cannot read is Unreadable (quarantined, replayable), never an exception.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadrelay.core.app.config import ConfigError, parse_config
from leadrelay.core.ingest.providers import Ignored, Parsed, Unreadable
from leadrelay.core.ingest.providers.base import ParseResult
from leadrelay.core.schema import LeadEvent

RECEIVED_AT = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)

FORM = {
    "event_id": "evt_77",
    "event_type": "form_response",
    "form_response": {
        "submitted_at": "2026-04-30T09:15:00Z",
        "answers": [
            {"type": "text", "text": "Hi"},
            {"type": "email", "email": " ada@example.com "},
            {"type": "number", "number": 42},
        ],
        "hidden": {"first_name": "Ada", "company": "Analytical Engines", "plan": "pro"},
        "tags": ["webinar", 2026, None],
    },
}


def source(**overrides: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "provider": "hmac",
        "signature": {"header": "X-Signature"},
        "event_id": "event_id",
        "event": "event_type",
        "occurred_at": "form_response.submitted_at",
        "types": {"form_response": "lead.created", "form_deleted": None},
        "lead": {
            "email": "form_response.answers[?type=='email'].email | [0]",
            "first_name": "form_response.hidden.first_name",
            "company": "form_response.hidden.company",
            "score": "form_response.answers[?type=='number'].number | [0]",
            "tags": "form_response.tags",
        },
        "extra": {"plan": "form_response.hidden.plan", "missing": "form_response.nothing"},
    }
    options.update(overrides)
    return options


def parse(payload: Any, **overrides: Any) -> ParseResult:
    config = parse_config({"sources": {"forms": source(**overrides)}}, env={})
    return config.sources["forms"].adapter.parse(
        payload, source="forms", received_at=RECEIVED_AT, headers={}
    )


def parse_event(payload: Any, **overrides: Any) -> LeadEvent:
    result = parse(payload, **overrides)
    assert isinstance(result, Parsed), result
    return result.event


def config_error(**overrides: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config({"sources": {"forms": source(**overrides)}}, "forms.yaml", env={})
    return info.value


def with_answers(*answers: dict[str, Any]) -> dict[str, Any]:
    return {**FORM, "form_response": {**FORM["form_response"], "answers": list(answers)}}


def test_a_mapped_event_reads_every_mapped_field() -> None:
    event = parse_event(FORM)
    assert (event.provider, event.provider_event, event.type) == (
        "hmac",
        "form_response",
        "lead.created",
    )
    assert event.idempotency_key == "evt_77"
    assert event.occurred_at == datetime(2026, 4, 30, 9, 15, tzinfo=UTC)
    lead = event.lead
    assert (lead.key, lead.email) == ("email:ada@example.com", "ada@example.com")
    assert (lead.first_name, lead.full_name, lead.company) == (
        "Ada",
        "Ada",
        "Analytical Engines",
    )
    assert lead.score == 42.0
    assert lead.tags == ["webinar", "2026"]
    # Only `extra:` names reach extra, and nothing found is nothing kept.
    assert lead.extra == {"plan": "pro"}
    assert event.raw == FORM


def test_a_jmespath_filter_picks_the_matching_item_wherever_it_is() -> None:
    payload = with_answers(
        {"type": "email", "email": "first@example.com"},
        {"type": "text", "text": "x"},
    )
    assert parse_event(payload).lead.email == "first@example.com"


def test_missing_paths_are_unknown_fields() -> None:
    payload = {"event_id": "e", "event_type": "form_response", "form_response": {}}
    payload["form_response"]["answers"] = [{"type": "email", "email": "ada@example.com"}]
    lead = parse_event(payload).lead
    assert (lead.first_name, lead.company, lead.score, lead.tags) == (None, None, None, [])
    assert parse_event(payload).occurred_at is None


def test_numbers_where_text_belongs_become_text() -> None:
    payload = {**FORM, "form_response": {**FORM["form_response"], "hidden": {"company": 1234}}}
    assert parse_event(payload).lead.company == "1234"


@pytest.mark.parametrize(
    ("payload_change", "words"),
    [
        ({"hidden": {"company": {"name": "Acme"}}}, "lead.company"),
        ({"hidden": {"company": True}}, "lead.company"),
        ({"tags": {"a": 1}}, "lead.tags"),
        ({"answers": [{"type": "number", "number": "many"}]}, "lead.score"),
    ],
)
def test_wrong_types_are_unreadable_naming_the_key(
    payload_change: dict[str, Any], words: str
) -> None:
    payload = {**FORM, "form_response": {**FORM["form_response"], **payload_change}}
    result = parse(payload)
    assert isinstance(result, Unreadable)
    assert words in result.reason
    assert result.provider_event == "form_response"


def test_an_array_where_text_belongs_says_how_to_take_one_item() -> None:
    result = parse(FORM, lead={"email": "form_response.answers[?type=='email'].email"})
    assert isinstance(result, Unreadable)
    assert "lead.email" in result.reason
    assert "| [0]" in result.reason


def test_a_function_applied_to_the_wrong_type_is_unreadable_not_an_error() -> None:
    result = parse(FORM, lead={"email": "event_id", "company": "length(form_response.hidden.x)"})
    assert isinstance(result, Unreadable)
    assert "lead.company" in result.reason


def test_an_event_the_mapping_cannot_find_is_unreadable() -> None:
    result = parse({"something": "else"})
    assert isinstance(result, Unreadable)
    assert "event (event_type): found nothing" in result.reason


def test_nothing_that_identifies_the_lead_is_unreadable() -> None:
    result = parse(with_answers({"type": "text", "text": "no email"}))
    assert isinstance(result, Unreadable)
    assert "no field identifies the lead" in result.reason


def test_types_route_known_events_and_ignore_the_rest() -> None:
    updated = parse_event(FORM, types={"form_response": "lead.updated"})
    assert updated.type == "lead.updated"
    activity = parse_event(FORM, types={"form_response": "lead.activity"})
    assert activity.activity is not None
    assert activity.activity.kind == "form_response"

    deleted = parse({**FORM, "event_type": "form_deleted"})
    assert isinstance(deleted, Ignored)
    assert deleted.reason == "'form_deleted' is not a lead event"
    unknown = parse({**FORM, "event_type": "form_viewed"})
    assert isinstance(unknown, Ignored)
    assert unknown.reason == "unknown event 'form_viewed'"
    assert unknown.idempotency_key == "evt_77"


def test_a_literal_event_name_serves_senders_that_send_none() -> None:
    payload = {"email": "ada@example.com"}
    event = parse_event(
        payload,
        event="'submission'",
        event_id=None,
        occurred_at=None,
        types={"submission": "lead.created"},
        lead={"email": "email"},
        extra={},
    )
    assert event.provider_event == "submission"


def test_without_an_event_id_the_key_is_a_fingerprint_of_the_parsed_body() -> None:
    no_id = {k: v for k, v in FORM.items() if k != "event_id"}
    first = parse_event(no_id)
    reordered = dict(reversed(list(no_id.items())))
    assert first.idempotency_key.startswith("sha256:")
    assert parse_event(reordered).idempotency_key == first.idempotency_key
    changed = {**no_id, "form_response": {**FORM["form_response"], "submitted_at": "later"}}
    assert parse_event(changed).idempotency_key != first.idempotency_key


# -- config errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "key_path", "words"),
    [
        (
            {"lead": {"email": "form_response.answers[?type=='email'"}},
            "sources.forms.lead.email",
            "not a valid JMESPath expression",
        ),
        ({"event": "event_type.."}, "sources.forms.event", "not a valid JMESPath expression"),
        ({"lead": {"email": "lower(email)"}}, "sources.forms.lead.email", "unknown function"),
        ({"lead": {"email": "length(a, b)"}}, "sources.forms.lead.email", "takes 1 argument"),
        ({"extra": {"plan": ""}}, "sources.forms.extra.plan", "expected a JMESPath"),
        ({"lead": {"emial": "email"}}, "sources.forms.lead.emial", "unknown key"),
        ({"lead": {"first_name": "name"}}, "sources.forms.lead", "map at least one of email"),
        ({"types": {"form_response": "lead.made"}}, "sources.forms.types.form_response", "lead."),
        ({"types": {}}, "sources.forms.types", "at least 1"),
        ({"signature": {"header": "X Sig"}}, "sources.forms.signature.header", "pattern"),
        (
            {"signature": {"header": "X-S", "algorithm": "md5"}},
            "sources.forms.signature.algorithm",
            "sha1",
        ),
        (
            {"signature": {"header": "X-S", "tolerance": "5m"}},
            "sources.forms.signature",
            "timestamp_header",
        ),
        ({"signatures": {}}, "sources.forms.signatures", "unknown key"),
    ],
)
def test_config_errors_name_the_key_path(
    overrides: dict[str, Any], key_path: str, words: str
) -> None:
    error = config_error(**overrides)
    assert error.file == "forms.yaml"
    assert error.key_path == key_path
    assert words in error.problem


def test_required_keys_are_named() -> None:
    options = source()
    del options["signature"]
    with pytest.raises(ConfigError) as info:
        parse_config({"sources": {"forms": options}}, "forms.yaml", env={})
    assert (info.value.key_path, info.value.problem) == (
        "sources.forms.signature",
        "required key is missing",
    )


def test_providers_without_options_refuse_mapping_keys() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(
            {"sources": {"gl": {"provider": "gitleads", "lead": {"email": "x"}}}}, "c.yaml", env={}
        )
    assert info.value.key_path == "sources.gl.lead"
    assert "unknown key" in info.value.problem


# -- any payload ----------------------------------------------------------------------------

form_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["form_response", "form_deleted", "email", "ada@example.com", "  "]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["type", "email", "answers", "hidden", "company", "tags"])
            | st.text(max_size=6),
            children,
            max_size=5,
        )
    ),
    max_leaves=30,
)


FORMS = parse_config({"sources": {"forms": source()}}, env={}).sources["forms"].adapter


@settings(max_examples=100, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={"event_id": form_values, "event_type": form_values, "form_response": form_values},
    )
)
def test_any_payload_reads_as_a_typed_result_never_an_adapter_error(
    payload: dict[str, Any],
) -> None:
    result = FORMS.parse(payload, source="forms", received_at=RECEIVED_AT, headers={})
    assert isinstance(result, Parsed | Ignored | Unreadable)
    if isinstance(result, Unreadable):
        assert not result.reason.startswith("adapter error"), result.reason


def test_options_is_not_a_yaml_key() -> None:
    assert config_error(options={"event": "type"}).key_path == "sources.forms.options"
