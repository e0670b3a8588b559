"""LeadShark: both docs' events, the event header, and JSON.stringify signatures."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from leadrelay.core.ingest.providers import Ignored, SignatureError, Unreadable, jsjson
from leadrelay.core.ingest.providers.leadshark import linkedin_username_from_url
from leadrelay.core.schema import event_id_for
from tests.providers.common import PROVIDERS, fixture, fixture_text, parse, parse_event
from tests.signing import (
    NODE,
    NODE_MISSING_REASON,
    encode,
    hmac_hex,
    js_stringify_many,
    leadshark_headers,
    node_stringify_many,
)

PROVIDER = "leadshark"
SECRET = "leadshark-secret"
VERIFIER = PROVIDERS[PROVIDER]


def event_headers(name: str) -> dict[str, str]:
    return {"X-Webhook-Event": name}


# -- the documented events --------------------------------------------------------------


def test_email_captured_is_lead_created() -> None:
    event = parse_event(
        PROVIDER, fixture(PROVIDER, "email.captured"), headers=event_headers("email.captured")
    )
    assert event.type == "lead.created"
    assert event.provider_event == "email.captured"
    assert event.occurred_at == datetime(2025, 9, 15, 11, 43, 42, 659000, tzinfo=UTC)
    assert event.event_id == event_id_for("leadshark", event.idempotency_key)
    lead = event.lead
    assert lead.key == "email:john.doe@example.com"
    assert lead.email == "john.doe@example.com"
    assert (lead.first_name, lead.last_name, lead.full_name) == ("John", "Doe", "John Doe")
    assert lead.title == "Senior Marketing Manager"
    assert lead.linkedin_username == "john-doe-12345"
    assert lead.linkedin_url is None
    assert event.activity is not None
    assert event.activity.kind == "email_captured"
    assert event.activity.campaign == "Q4 Marketing Guide"
    assert event.activity.context == {"automation_id": "58c132e6-648c-4079-8815-77a3b2ec1adc"}


def test_profile_visit_reads_the_visitor() -> None:
    event = parse_event(PROVIDER, fixture(PROVIDER, "new.profile.visit"))
    assert event.type == "lead.activity"
    assert event.occurred_at == datetime(2025, 9, 15, 11, 37, 21, 709000, tzinfo=UTC)
    lead = event.lead
    assert lead.key == "linkedin:jane-smith"
    assert lead.provider_lead_id == "ACoAAEXAMPLE987654321"
    assert (lead.first_name, lead.last_name) == ("Jane", "Smith")
    assert lead.title == "Product Manager at Innovation Labs"
    assert lead.linkedin_url == "https://linkedin.com/in/jane-smith"
    assert lead.linkedin_username == "jane-smith"
    assert event.activity is not None
    assert event.activity.kind == "profile_visit"
    assert event.activity.campaign is None
    assert event.activity.context == {
        "profile_owner": {"id": "ACoAAEXAMPLE123456789", "name": "Your Name"}
    }


def test_like_links_the_post() -> None:
    event = parse_event(PROVIDER, fixture(PROVIDER, "new.like"))
    assert event.type == "lead.activity"
    assert event.lead.key == "linkedin:michael-johnson"
    assert event.lead.extra == {"connection_status": "Connected"}
    activity = event.activity
    assert activity is not None
    assert activity.kind == "like"
    assert activity.campaign == "Engagement Campaign"
    assert (
        activity.url == "https://www.linkedin.com/feed/update/urn:li:activity:7372270383585984512/"
    )
    assert activity.context == {
        "post_id": "urn:li:activity:7372270383585984512",
        "automation_id": "uuid",
    }


def test_comment_carries_its_text() -> None:
    event = parse_event(PROVIDER, fixture(PROVIDER, "new.comment"))
    assert event.type == "lead.activity"
    assert event.lead.key == "linkedin:sarah-wilson"
    assert (event.lead.first_name, event.lead.last_name) == ("Sarah", "Wilson")
    assert event.lead.extra == {"connection_status": "2nd Connection"}
    activity = event.activity
    assert activity is not None
    assert activity.kind == "comment"
    assert activity.text == "Great insights! Thanks for sharing."
    assert activity.campaign == "Content Engagement"
    assert activity.url is None
    assert activity.context == {
        "automation_id": "uuid",
        "comment_id": "7371940875070795776",
        "comment_created_at": "2025-09-11T16:21:08.656Z",
    }


def test_dm_sent_carries_the_message() -> None:
    event = parse_event(PROVIDER, fixture(PROVIDER, "dm.sent"), headers=event_headers("dm.sent"))
    assert event.type == "lead.activity"
    assert event.occurred_at == datetime(2024, 3, 21, 15, 30, tzinfo=UTC)
    lead = event.lead
    assert lead.key == "linkedin:johndoe"
    assert (lead.first_name, lead.last_name, lead.full_name) == ("John", "Doe", "John Doe")
    assert lead.title == "Software Engineer"
    assert lead.extra == {"connection_status": "Connected", "commenter_id": "abc123"}
    activity = event.activity
    assert activity is not None
    assert activity.kind == "dm"
    assert activity.text == "Hello John, thanks for your comment..."
    assert activity.campaign == "Product Launch Campaign"
    assert activity.url is None  # "post_123" is not a LinkedIn URN
    assert activity.context == {"post_id": "post_123", "automation_id": "automation_123"}


def test_idempotency_keys_are_stable_and_distinct_across_samples() -> None:
    names = ["email.captured", "new.profile.visit", "new.like", "new.comment", "dm.sent"]
    keys = [parse_event(PROVIDER, fixture(PROVIDER, name)).idempotency_key for name in names]
    assert len(set(keys)) == len(names)
    pretty = json.loads(json.dumps(fixture(PROVIDER, "new.comment"), indent=3, sort_keys=True))
    assert parse_event(PROVIDER, pretty).idempotency_key == keys[3]
    later = fixture(PROVIDER, "new.comment")
    later["data"]["comment"]["id"] = "7371940875070795777"
    assert parse_event(PROVIDER, later).idempotency_key != keys[3]


# -- event name: body and header ---------------------------------------------------------


def test_header_alone_names_the_event() -> None:
    payload = fixture(PROVIDER, "new.comment")
    del payload["event"]
    event = parse_event(PROVIDER, payload, headers={"x-webhook-event": "new.comment"})
    assert event.provider_event == "new.comment"
    assert event.activity is not None
    assert event.activity.kind == "comment"


def test_the_signed_body_event_wins_over_a_contradicting_header() -> None:
    plain = parse_event(PROVIDER, fixture(PROVIDER, "new.like"))
    contradicted = parse_event(
        PROVIDER, fixture(PROVIDER, "new.like"), headers=event_headers("dm.sent")
    )
    assert contradicted.provider_event == "new.like"
    assert contradicted.idempotency_key == plain.idempotency_key


def test_the_unsigned_header_does_not_change_the_idempotency_key() -> None:
    payload = fixture(PROVIDER, "new.comment")
    del payload["event"]
    keys = {
        parse_event(PROVIDER, payload, headers=event_headers(name)).idempotency_key
        for name in ("new.comment", "new.like")
    }
    assert len(keys) == 1


def test_no_event_name_anywhere_is_unreadable() -> None:
    payload = fixture(PROVIDER, "new.like")
    del payload["event"]
    result = parse(PROVIDER, payload)
    assert isinstance(result, Unreadable)
    assert "no event name" in result.reason


def test_unknown_event_is_ignored() -> None:
    payload = fixture(PROVIDER, "new.like")
    payload["event"] = "new.repost"
    result = parse(PROVIDER, payload, headers=event_headers("new.repost"))
    assert isinstance(result, Ignored)
    assert result.reason == "unknown event 'new.repost'"


def test_person_without_any_identity_is_unreadable() -> None:
    payload = fixture(PROVIDER, "new.like")
    payload["data"]["lead"] = {"name": "Anonymous Viewer"}
    result = parse(PROVIDER, payload)
    assert isinstance(result, Unreadable)
    assert "identifies the lead" in result.reason


@pytest.mark.parametrize(
    ("url", "username"),
    [
        ("https://linkedin.com/in/jane-smith", "jane-smith"),
        ("https://www.linkedin.com/in/jane-smith/?trk=x", "jane-smith"),
        ("linkedin.com/in/jane-smith", "jane-smith"),
        ("https://linkedin.com/company/acme", None),
        ("https://evil.example/in/jane-smith", None),
        ("https://notlinkedin.com/in/jane", None),
        ("http://[::1", None),
    ],
)
def test_linkedin_username_from_url(url: str, username: str | None) -> None:
    assert linkedin_username_from_url(url) == username


# -- JSON.stringify signatures ------------------------------------------------------------

UNICODE_PAYLOADS: list[dict[str, Any]] = [
    {
        "event": "email.captured",
        "data": {"lead": {"name": "José Núñez", "email": "jose@example.es"}},
    },
    {"event": "new.comment", "data": {"comment": {"text": "Great post 🚀🔥 👩‍💻"}}},
    {"event": "dm.sent", "data": {"message": "</script><script>alert(1)</script>"}},
    {"event": "dm.sent", "data": {"message": "line\u2028separator\u2029paragraph"}},
    {"event": "dm.sent", "data": {"message": "tab\tnl\ncr\rnul\u0000bell\u0007del\u007f"}},
    {"event": "dm.sent", "data": {"message": 'quote " backslash \\ slash /'}},
    {"event": "dm.sent", "data": {"message": "王小明 Ελληνικά العربية"}},
    {"event": "dm.sent", "data": {"lone": "\ud83d", "low": "x\udc00y"}},
    {"event": "new.like", "data": {"b": 1, "2": "two", "1": "one", "a": 0, "01": "zero-one"}},
    {"event": "new.like", "data": {"n": [1e21, 1e-7, 0.000001, 0.1, 1e300, -2.5, 2**53]}},
]


def wire_bodies(payload: dict[str, Any]) -> list[bytes]:
    """Ways a body can reach us: compact UTF-8, ASCII-escaped (Python's default), pretty."""
    ascii_safe = any(
        0xD800 <= ord(char) <= 0xDFFF for char in json.dumps(payload, ensure_ascii=False)
    )
    bodies = [
        encode(payload, ascii_only=True),
        json.dumps(payload, indent=2).encode("utf-8"),
    ]
    if not ascii_safe:
        bodies.append(encode(payload))
    return bodies


ALL_WIRE_BODIES = [body for payload in UNICODE_PAYLOADS for body in wire_bodies(payload)]


@pytest.fixture(scope="module")
def js_signed_texts() -> dict[bytes, str]:
    """JSON.stringify(JSON.parse(body)) per wire body, one Node run for the whole batch."""
    texts = js_stringify_many([body.decode("utf-8") for body in ALL_WIRE_BODIES])
    return dict(zip(ALL_WIRE_BODIES, texts, strict=True))


@pytest.mark.skipif(NODE is None, reason=NODE_MISSING_REASON)
def test_jsjson_matches_node_on_unicode_payloads() -> None:
    texts = [body.decode("utf-8") for body in ALL_WIRE_BODIES]
    expected = node_stringify_many(texts)
    ours = [jsjson.stringify(jsjson.parse(text)) for text in texts]
    assert ours == expected


@pytest.mark.parametrize("body", ALL_WIRE_BODIES, ids=range(len(ALL_WIRE_BODIES)))
def test_signature_over_json_stringify_is_accepted(
    body: bytes, js_signed_texts: dict[bytes, str]
) -> None:
    headers = leadshark_headers(js_signed_texts[body], SECRET)
    assert VERIFIER.verify(headers, body, ["other-secret", SECRET]) is None
    with pytest.raises(SignatureError) as caught:
        VERIFIER.verify(headers, body, ["other-secret"])
    assert caught.value.reason == "mismatch"


NOT_BINDING_NUMBERS = ["1.0", "-0.0", "1E5", "18446744073709551616", "9007199254740993", "1e400"]


@pytest.mark.parametrize("number", [*NOT_BINDING_NUMBERS, "9" * 310])
def test_numbers_javascript_prints_differently_cannot_be_bound(number: str) -> None:
    body = ('{"event":"new.like","data":{"lead":{"id":' + number + "}}}").encode()
    signed_text = jsjson.stringify(jsjson.parse(body))
    with pytest.raises(SignatureError) as caught:
        VERIFIER.verify(leadshark_headers(signed_text, SECRET), body, [SECRET])
    assert caught.value.reason == "not_binding"
    # Sent as signed (the raw bytes themselves), the body is bound and accepted.
    raw_headers = leadshark_headers(body.decode(), SECRET)
    assert VERIFIER.verify(raw_headers, body, [SECRET]) is None


def test_non_ascii_is_not_escaped_in_the_signed_text(js_signed_texts: dict[bytes, str]) -> None:
    body = encode(UNICODE_PAYLOADS[0], ascii_only=True)
    assert b"\\u00e9" in body
    assert "José Núñez" in js_signed_texts[body]
    assert "\u2028" in js_signed_texts[encode(UNICODE_PAYLOADS[3], ascii_only=True)]
    assert "</script>" in js_signed_texts[encode(UNICODE_PAYLOADS[2], ascii_only=True)]


def test_leadsharks_python_sample_would_reject_jose_but_we_accept() -> None:
    payload = UNICODE_PAYLOADS[0]
    body = encode(payload)  # what a JavaScript sender puts on the wire
    python_sample_text = json.dumps(payload, separators=(",", ":"))  # escapes é as \u00e9
    js_text = jsjson.stringify(payload)
    assert python_sample_text != js_text
    signature = hmac_hex(SECRET, js_text.encode("utf-8"))
    python_expected = hmac.new(
        SECRET.encode(), python_sample_text.encode(), hashlib.sha256
    ).hexdigest()
    assert not hmac.compare_digest(signature, python_expected)
    assert VERIFIER.verify({"X-Webhook-Signature": signature}, body, [SECRET]) is None


def test_raw_body_signature_is_accepted_too() -> None:
    body = fixture_text(PROVIDER, "new.comment").encode("utf-8")
    headers = {"X-Webhook-Signature": hmac_hex(SECRET, body)}
    assert VERIFIER.verify(headers, body, [SECRET]) is None


def test_whitespace_only_changes_still_verify_but_value_changes_do_not() -> None:
    payload = fixture(PROVIDER, "new.comment")
    headers = leadshark_headers(jsjson.stringify(payload), SECRET)
    reformatted = json.dumps(payload, indent=8).encode("utf-8")
    assert VERIFIER.verify(headers, reformatted, [SECRET]) is None
    payload["data"]["comment"]["text"] = "Changed"
    with pytest.raises(SignatureError):
        VERIFIER.verify(headers, json.dumps(payload).encode("utf-8"), [SECRET])


@pytest.mark.parametrize(
    "body",
    [b"not json", b"\xff\xfe", b'{"a": NaN}', b"[1, 2", b""],
    ids=["text", "bad-utf8", "nan", "truncated", "empty"],
)
def test_non_json_bodies_only_match_as_raw_bytes(body: bytes) -> None:
    assert VERIFIER.signed_messages(body) == [body]
    headers = {"X-Webhook-Signature": hmac_hex(SECRET, body)}
    assert VERIFIER.verify(headers, body, [SECRET]) is None


def test_signed_messages_has_one_candidate_when_body_is_already_canonical() -> None:
    body = jsjson.stringify(fixture(PROVIDER, "dm.sent")).encode("utf-8")
    assert VERIFIER.signed_messages(body) == [body]


def test_signature_has_no_prefix() -> None:
    body = fixture_text(PROVIDER, "dm.sent").encode("utf-8")
    digest = hmac_hex(SECRET, jsjson.stringify(json.loads(body)).encode("utf-8"))
    with pytest.raises(SignatureError) as caught:
        VERIFIER.verify({"X-Webhook-Signature": f"sha256={digest}"}, body, [SECRET])
    assert caught.value.reason == "malformed"


def test_unicode_payloads_parse_to_typed_results() -> None:
    jose = parse_event(PROVIDER, json.loads(encode(UNICODE_PAYLOADS[0], ascii_only=True)))
    assert (jose.lead.first_name, jose.lead.last_name) == ("José", "Núñez")
    assert jose.lead.key == "email:jose@example.es"
    # The others carry no `data.lead`: quarantined with a reason, never an exception.
    for payload in UNICODE_PAYLOADS[1:]:
        result = parse(PROVIDER, json.loads(encode(payload, ascii_only=True)))
        assert isinstance(result, Unreadable)
        assert result.reason == "data.lead: expected an object, got null"


def test_emoji_script_and_line_separators_survive_parsing() -> None:
    payload = fixture(PROVIDER, "new.comment")
    text = "Love it 🚀 </script>\u2028next\u2029end"
    payload["data"]["comment"]["text"] = text
    payload["data"]["lead"]["name"] = "José 👩‍💻 Núñez"
    event = parse_event(PROVIDER, payload)
    assert event.activity is not None
    assert event.activity.text == text
    assert event.lead.full_name == "José 👩‍💻 Núñez"
