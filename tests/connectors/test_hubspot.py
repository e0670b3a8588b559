"""HubSpot connector through the real hubspot-api-client SDK against the local fake HubSpot."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from pydantic import SecretStr, ValidationError

from leadrelay.connectors.hubspot.client import NOTES_PATH, UPSERT_PATH, Reply, rate_limit_wait
from leadrelay.connectors.hubspot.connector import HubSpotConnector
from leadrelay.connectors.hubspot.options import HubSpotOptions
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
from tests.fakes.hubspot import READ_SCOPE, WRITE_SCOPE, FakeHubSpot, RateLimit
from tests.fakes.server import RunningServer, serve

TOKEN = "pat-na1-11111111-2222-3333-4444-555555555555"
ARCHIVE_PATH = "/crm/v3/objects/contacts/batch/archive"
STAR = Activity(
    kind="star",
    text='Starred <b>their-sdk</b> & said "hi" <script>alert(1)</script>',
    url="https://github.com/competitor/their-sdk",
    campaign="Q2 competitors",
)


@pytest.fixture(scope="module")
def _served() -> Iterator[tuple[FakeHubSpot, RunningServer]]:
    # One server for the module (stopping one costs half a second); state resets per test.
    shared = FakeHubSpot()
    with serve(shared.app) as running:
        yield shared, running
    shared.close()


@pytest.fixture
def fake(_served: tuple[FakeHubSpot, RunningServer]) -> Iterator[FakeHubSpot]:
    shared = _served[0]
    shared.reset(tokens={TOKEN: {READ_SCOPE, WRITE_SCOPE}}, unique_properties=["leadrelay_key"])
    yield shared
    shared.close()


@pytest.fixture
def server(_served: tuple[FakeHubSpot, RunningServer], fake: FakeHubSpot) -> RunningServer:
    return _served[1]


def connector(base_url: str, **overrides: Any) -> HubSpotConnector:
    options: dict[str, Any] = {
        "type": "hubspot",
        "access_token": TOKEN,
        "base_url": base_url,
        "timeout": 2,
    }
    options.update(overrides)
    return HubSpotConnector("crm", HubSpotOptions.model_validate(options))


@pytest.fixture
def crm(server: RunningServer) -> Iterator[HubSpotConnector]:
    hubspot = connector(server.base_url)
    hubspot.pacer.sleep = lambda _seconds: None  # the pacing tests record the pauses instead
    yield hubspot
    hubspot.close()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# -- contacts ----------------------------------------------------------------------------------


def test_registry_names_this_class() -> None:
    assert connector_class("hubspot") is HubSpotConnector
    assert HubSpotConnector.batch_size == 100
    assert HubSpotConnector.delivery_guarantee == "once"


def test_creates_a_contact_with_the_mapped_properties(
    crm: HubSpotConnector, fake: FakeHubSpot
) -> None:
    event = make_event(
        email="Jane@Example.com",
        phone="+1 555 0100",
        website="https://jane.dev",
        linkedin_url="https://www.linkedin.com/in/janedoe",
        location="Berlin",
    )

    [outcome] = crm.send([event])

    contact = fake.contact_by("email", "jane@example.com")
    assert contact is not None
    assert outcome == Delivered(f"created contact {contact['id']}")
    properties = contact["properties"]
    assert properties["email"] == "jane@example.com"
    assert properties["firstname"] == "Jane"
    assert properties["lastname"] == "Doe"
    assert properties["jobtitle"] == "Staff Engineer"
    assert properties["company"] == "Vercel"
    assert properties["phone"] == "+1 555 0100"
    assert properties["website"] == "https://jane.dev"
    assert properties["hs_linkedin_url"] == "https://www.linkedin.com/in/janedoe"
    assert "city" not in properties  # free-text location is not mapped by default
    [sent] = fake.requests
    assert sent.body["inputs"][0]["idProperty"] == "email"
    assert sent.body["inputs"][0]["id"] == "Jane@Example.com"


def test_upsert_updates_the_existing_contact_without_a_duplicate(
    crm: HubSpotConnector, fake: FakeHubSpot
) -> None:
    [first] = crm.send([make_event(title="Engineer")])
    [second] = crm.send([make_event(email="JANE@example.com", title="CTO", company=None)])

    assert len(fake.contacts) == 1
    contact = fake.contact_by("email", "jane@example.com")
    assert contact is not None
    assert first == Delivered(f"created contact {contact['id']}")
    assert second == Delivered(f"updated contact {contact['id']}")
    assert contact["properties"]["jobtitle"] == "CTO"
    assert contact["properties"]["company"] == "Vercel"  # a missing field never blanks one


def test_150_events_go_in_two_batch_calls(crm: HubSpotConnector, fake: FakeHubSpot) -> None:
    events = [make_event(email=f"dev{n}@example.com") for n in range(150)]

    outcomes = crm.send(events)

    assert all(isinstance(o, Delivered) for o in outcomes)
    assert fake.calls_to("POST", UPSERT_PATH) == 2
    assert [len(r.body["inputs"]) for r in fake.requests] == [100, 50]
    assert len(fake.contacts) == 150


def test_duplicate_emails_in_one_batch_become_one_input(
    crm: HubSpotConnector, fake: FakeHubSpot
) -> None:
    events = [
        make_event(email="sam@example.com", title="Engineer"),
        make_event(email="other@example.com"),
        make_event(email="SAM@example.com", title="Lead Engineer", phone="+44 20 7946 0000"),
    ]

    outcomes = crm.send(events)

    [request] = fake.requests
    assert len(request.body["inputs"]) == 2
    sam = fake.contact_by("email", "sam@example.com")
    assert sam is not None
    assert outcomes[0] == outcomes[2] == Delivered(f"created contact {sam['id']}")
    assert isinstance(outcomes[1], Delivered)
    assert sam["properties"]["jobtitle"] == "Lead Engineer"  # the later event wins
    assert sam["properties"]["phone"] == "+44 20 7946 0000"


def test_full_name_and_linkedin_username_fill_derived_properties(
    crm: HubSpotConnector, fake: FakeHubSpot
) -> None:
    event = make_event(
        first_name=None, last_name=None, full_name="Ada King Lovelace", linkedin_username="ada"
    )

    [outcome] = crm.send([event])

    assert isinstance(outcome, Delivered)
    contact = fake.contact_by("email", "jane@example.com")
    assert contact is not None
    assert contact["properties"]["firstname"] == "Ada"
    assert contact["properties"]["lastname"] == "King Lovelace"
    assert contact["properties"]["hs_linkedin_url"] == "https://www.linkedin.com/in/ada"


def test_properties_option_adds_overrides_and_drops_mappings(
    server: RunningServer, fake: FakeHubSpot
) -> None:
    fake.reset(tokens={TOKEN: {READ_SCOPE, WRITE_SCOPE}}, extra_properties=["github_login"])
    hubspot = connector(
        server.base_url,
        properties={
            "location": "city",
            "github_username": "github_login",
            "extra.signal": "hs_lead_status",
            "company": None,
            "tags": "state",
        },
    )
    event = make_event(location="Berlin", tags=["a", "b"], extra={"signal": "stargazer"})

    [outcome] = hubspot.send([event])

    assert isinstance(outcome, Delivered)
    contact = fake.contact_by("email", "jane@example.com")
    assert contact is not None
    assert contact["properties"]["city"] == "Berlin"
    assert contact["properties"]["github_login"] == "jdoe"
    assert contact["properties"]["hs_lead_status"] == "stargazer"
    assert contact["properties"]["state"] == "a;b"
    assert "company" not in contact["properties"]
    hubspot.close()


# -- per-record and whole-batch refusals --------------------------------------------------------


def test_207_partial_result_is_split_per_event(crm: HubSpotConnector, fake: FakeHubSpot) -> None:
    events = [
        make_event(email="good@example.com"),
        make_event(email="not-an-email"),
        make_event(email="fine@example.com"),
    ]

    outcomes = crm.send(events)

    assert isinstance(outcomes[0], Delivered)
    assert isinstance(outcomes[2], Delivered)
    assert isinstance(outcomes[1], Permanent)
    assert "Email address not-an-email is invalid" in outcomes[1].message
    assert "VALIDATION_ERROR" in outcomes[1].message
    assert fake.calls_to("POST", UPSERT_PATH) == 1
    assert fake.contact_by("email", "good@example.com") is not None


def test_whole_batch_400_is_halved_until_the_bad_contact_is_found(
    crm: HubSpotConnector, fake: FakeHubSpot
) -> None:
    fake.multi_status = False  # HubSpot refuses the whole batch for one bad input
    events = [make_event(email=f"dev{n}@example.com") for n in range(8)]
    events[5] = make_event(email="broken@")

    outcomes = crm.send(events)

    assert [type(o) for o in outcomes] == [Delivered] * 5 + [Permanent] + [Delivered] * 2
    assert "Email address broken@ is invalid" in outcomes[5].message
    assert len(fake.contacts) == 7
    # 1 refused call of 8, then halves: 4 ok + 4 refused, 2 ok + 2 refused, 1 ok + 1 refused
    assert fake.calls_to("POST", UPSERT_PATH) == 7


def test_a_refusal_about_the_whole_request_stops_halving(
    server: RunningServer, fake: FakeHubSpot
) -> None:
    hubspot = connector(server.base_url, properties={"bio": "no_such_property"})
    fake.multi_status = False
    events = [make_event(email=f"dev{n}@example.com", bio="Builds SDKs") for n in range(10)]

    outcomes = hubspot.send(events)

    assert all(isinstance(o, Permanent) for o in outcomes)
    assert 'Property \\"no_such_property\\" does not exist' in outcomes[0].message
    assert fake.calls_to("POST", UPSERT_PATH) == 3  # the batch, then both halves, same words
    hubspot.close()


def test_validation_error_is_permanent_with_hubspots_message(
    crm: HubSpotConnector, fake: FakeHubSpot
) -> None:
    fake.fail_next(
        status=400,
        body={
            "status": "error",
            "message": "Invalid input JSON on line 1, column 15: Cannot build BatchInput",
            "correlationId": "aa11",
            "category": "VALIDATION_ERROR",
        },
    )

    [outcome] = crm.send([make_event()])

    assert outcome == Permanent(
        "HubSpot answered 400: Invalid input JSON on line 1, column 15: Cannot build BatchInput "
        "(VALIDATION_ERROR)"
    )


# -- rate limits, auth, outages ---------------------------------------------------------------


def test_429_waits_as_the_rate_limit_headers_say(crm: HubSpotConnector, fake: FakeHubSpot) -> None:
    fake.rate_limit = RateLimit(max_requests=1, window_ms=60_000)
    [first] = crm.send([make_event(email="a@example.com")])
    outcomes = crm.send([make_event(email="b@example.com"), make_event(email="c@example.com")])

    assert isinstance(first, Delivered)
    assert all(isinstance(o, RateLimited) for o in outcomes)
    # A tenth of the rolling window: capacity comes back as old calls age out.
    assert outcomes[0].retry_after == 6.0  # type: ignore[union-attr]
    assert "TEN_SECONDLY_ROLLING" in outcomes[0].message
    assert "You have reached your ten_secondly_rolling limit." in outcomes[0].message


def test_429_prefers_retry_after(crm: HubSpotConnector, fake: FakeHubSpot) -> None:
    fake.rate_limit_next(retry_after=7)

    [outcome] = crm.send([make_event()])

    assert isinstance(outcome, RateLimited)
    assert outcome.retry_after == 7.0


def test_daily_limit_waits_an_hour(crm: HubSpotConnector, fake: FakeHubSpot) -> None:
    fake.rate_limit_next(policy="DAILY")

    [outcome] = crm.send([make_event()])

    assert isinstance(outcome, RateLimited)
    assert outcome.retry_after == 3600.0
    assert "daily" in outcome.message


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        ({}, {}, 10.0),
        ({"retry-after": "3"}, {}, 3.0),
        (
            {
                "x-hubspot-ratelimit-interval-milliseconds": "10000",
                "x-hubspot-ratelimit-remaining": "0",
            },
            {},
            1.0,
        ),
        ({"x-hubspot-ratelimit-interval-milliseconds": "1000"}, {}, 0.1),
        ({}, {"policyName": "SECONDLY"}, 1.0),
        ({"x-hubspot-ratelimit-daily-remaining": "0"}, {}, 3600.0),
    ],
)
def test_rate_limit_wait_reads_each_header(
    headers: dict[str, str], body: dict[str, Any], expected: float
) -> None:
    delay, _ = rate_limit_wait(Reply(429, body, headers))
    assert delay == expected


def test_calls_are_spaced_out_once_the_window_runs_low(
    crm: HubSpotConnector, fake: FakeHubSpot
) -> None:
    # 40 per 10 s, a reserve of 2 calls: the 38th answer leaves 2, so the 39th and 40th
    # calls wait the limit's average gap (10 s / 40) first, and none is refused.
    fake.rate_limit = RateLimit(max_requests=40, window_ms=10_000)
    pauses: list[float] = []
    crm.pacer.sleep = pauses.append
    outcomes = [crm.send([make_event(email=f"lead{n}@example.com")])[0] for n in range(40)]

    assert all(isinstance(o, Delivered) for o in outcomes)
    assert pauses == [0.25, 0.25]


def test_pacing_stops_once_the_window_has_room_again(crm: HubSpotConnector) -> None:
    pauses: list[float] = []
    crm.pacer.sleep = pauses.append
    crm.pacer.note(remaining=1, maximum=100, window_s=10.0)
    crm.pacer.wait()
    crm.pacer.note(remaining=50, maximum=100, window_s=10.0)
    crm.pacer.wait()

    assert pauses == [0.1]


def test_a_long_gap_is_capped(crm: HubSpotConnector) -> None:
    pauses: list[float] = []
    crm.pacer.sleep = pauses.append
    crm.pacer.note(remaining=0, maximum=1, window_s=60.0)
    crm.pacer.wait()

    assert pauses == [1.0]


def test_a_429_stops_the_rest_of_the_batch_including_notes(
    crm: HubSpotConnector, fake: FakeHubSpot
) -> None:
    fake.rate_limit = RateLimit(max_requests=1, window_ms=60_000)
    events = [make_event(type="lead.activity", activity=STAR)]

    [outcome] = crm.send(events)

    assert isinstance(outcome, RateLimited)
    assert fake.calls_to("POST", UPSERT_PATH) == 1
    assert fake.calls_to("POST", NOTES_PATH) == 1  # refused by the limiter, nothing created
    assert fake.notes == {}


def test_401_is_permanent_and_says_the_token_is_wrong(server: RunningServer) -> None:
    hubspot = connector(server.base_url, access_token="pat-na1-revoked-0000")

    outcomes = hubspot.send([make_event(), make_event(email="x@example.com")])

    assert all(isinstance(o, Permanent) for o in outcomes)
    error = outcomes[0].message
    assert "token invalid or expired" in error
    assert "INVALID_AUTHENTICATION" in error
    assert "pat-na1-revoked-0000" not in error
    hubspot.close()


def test_expired_token_says_so(server: RunningServer, fake: FakeHubSpot) -> None:
    fake.expired_tokens.add(TOKEN)

    [outcome] = connector(server.base_url).send([make_event()])

    assert isinstance(outcome, Permanent)
    assert "expired 7 second(s) ago" in outcome.message
    assert "EXPIRED_AUTHENTICATION" in outcome.message


def test_403_names_the_missing_scope(server: RunningServer, fake: FakeHubSpot) -> None:
    fake.reset(tokens={TOKEN: {READ_SCOPE}})

    [outcome] = connector(server.base_url).send([make_event()])

    assert isinstance(outcome, Permanent)
    assert "missing a scope this call needs (one of: crm.objects.contacts.write)" in outcome.message
    assert "MISSING_SCOPES" in outcome.message


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_5xx_and_408_are_retryable_and_the_sdk_does_not_retry_on_its_own(
    crm: HubSpotConnector, fake: FakeHubSpot, status: int
) -> None:
    fake.fail_next(status=status)

    [outcome] = crm.send([make_event()])
    [again] = crm.send([make_event()])

    assert isinstance(outcome, Retryable)
    assert f"HubSpot answered {status}" in outcome.message
    assert isinstance(again, Delivered)
    assert fake.calls_to("POST", UPSERT_PATH) == 2  # one each: no hidden urllib3 retries


def test_locked_records_are_a_short_wait(crm: HubSpotConnector, fake: FakeHubSpot) -> None:
    fake.fail_next(
        status=423, body={"status": "error", "message": "Resource is locked", "category": "LOCKED"}
    )

    [outcome] = crm.send([make_event()])

    assert outcome == RateLimited("HubSpot answered 423: Resource is locked (LOCKED)", 2.0)


def test_connection_refused_is_retryable() -> None:
    hubspot = connector(closed_port_url())

    outcomes = hubspot.send([make_event(), make_event(email="b@example.com")])

    assert all(isinstance(o, Retryable) for o in outcomes)
    assert "cannot connect to HubSpot" in outcomes[0].message
    assert "Connection refused" in outcomes[0].message


def test_timeout_is_retryable(server: RunningServer, fake: FakeHubSpot) -> None:
    hubspot = connector(server.base_url, timeout=0.2)
    fake.slow_next(delay_ms=5_000)

    [outcome] = hubspot.send([make_event()])

    assert isinstance(outcome, Retryable)
    assert "did not answer within 0.2s" in outcome.message
    hubspot.close()


def test_an_unexpected_2xx_is_not_lost_to_the_sdk(crm: HubSpotConnector, fake: FakeHubSpot) -> None:
    # The SDK maps only 200/207 for upserts and returns None for any other 2xx.
    fake.fail_next(
        status=201,
        body={
            "status": "COMPLETE",
            "results": [{"id": "777", "properties": {"email": "jane@example.com"}, "new": True}],
        },
    )

    [outcome] = crm.send([make_event()])

    assert outcome == Delivered("created contact 777")


def test_a_2xx_without_a_body_counts_as_accepted(crm: HubSpotConnector, fake: FakeHubSpot) -> None:
    fake.fail_next(status=202, body="")

    [outcome] = crm.send([make_event()])

    assert outcome == Delivered("HubSpot accepted it (HTTP 202)")


# -- leads without email, deletions ------------------------------------------------------------


def test_lead_without_email_is_skipped_without_key_property(
    crm: HubSpotConnector, fake: FakeHubSpot
) -> None:
    [outcome] = crm.send([make_event(email=None)])

    assert isinstance(outcome, Skipped)
    assert "no email" in outcome.message
    assert "key_property" in outcome.message
    assert fake.requests == []


def test_lead_without_email_is_upserted_by_key_property(
    server: RunningServer, fake: FakeHubSpot
) -> None:
    hubspot = connector(server.base_url, key_property="leadrelay_key")
    first = make_event(email=None, title="Engineer")
    second = make_event(email=None, title="Principal Engineer")

    [created] = hubspot.send([first])
    [updated] = hubspot.send([second])
    [with_email] = hubspot.send([make_event(email="dev@example.com")])

    contact = fake.contact_by("leadrelay_key", "github:jdoe")
    assert contact is not None
    assert created == Delivered(f"created contact {contact['id']}")
    assert updated == Delivered(f"updated contact {contact['id']}")
    assert contact["properties"]["jobtitle"] == "Principal Engineer"
    assert fake.requests[0].body["inputs"][0]["idProperty"] == "leadrelay_key"
    assert isinstance(with_email, Delivered)
    email_contact = fake.contact_by("email", "dev@example.com")
    assert email_contact is not None
    assert email_contact["properties"]["leadrelay_key"] == "email:dev@example.com"
    hubspot.close()


def test_lead_deleted_is_skipped_by_default(crm: HubSpotConnector, fake: FakeHubSpot) -> None:
    [outcome] = crm.send([make_event(type="lead.deleted")])

    assert isinstance(outcome, Skipped)
    assert "on_delete: archive" in outcome.message
    assert fake.requests == []


def test_lead_deleted_archives_with_on_delete_archive(
    server: RunningServer, fake: FakeHubSpot
) -> None:
    hubspot = connector(server.base_url, on_delete="archive")
    hubspot.send([make_event(email="gone@example.com")])

    outcomes = hubspot.send(
        [
            make_event(type="lead.deleted", email="GONE@example.com"),
            make_event(type="lead.deleted", email="never-seen@example.com"),
        ]
    )

    contact = fake.contact_by("email", "gone@example.com")
    assert contact is not None
    assert contact["archived"] is True
    assert outcomes[0] == Delivered(f"archived contact {contact['id']}")
    assert outcomes[1] == Delivered(
        "no HubSpot contact with email never-seen@example.com: nothing to archive"
    )
    assert fake.calls_to("POST", ARCHIVE_PATH) == 1
    hubspot.close()


def test_delete_then_recreate_in_one_batch_keeps_their_order(
    server: RunningServer, fake: FakeHubSpot
) -> None:
    hubspot = connector(server.base_url, on_delete="archive")

    outcomes = hubspot.send(
        [
            make_event(email="a@example.com"),
            make_event(type="lead.deleted", email="a@example.com"),
            make_event(email="a@example.com", title="Back again"),
        ]
    )

    assert all(isinstance(o, Delivered) for o in outcomes)
    live = [c for c in fake.contacts.values() if not c["archived"]]
    assert [c["properties"]["jobtitle"] for c in live] == ["Back again"]
    hubspot.close()


# -- activity notes ----------------------------------------------------------------------------


def test_activity_adds_an_escaped_note_on_the_contact(
    crm: HubSpotConnector, fake: FakeHubSpot
) -> None:
    [outcome] = crm.send([make_event(type="lead.activity", activity=STAR)])

    contact = fake.contact_by("email", "jane@example.com")
    assert contact is not None
    [note] = fake.notes_for(contact["id"])
    assert outcome == Delivered(f"created contact {contact['id']}; added note {note['id']}")
    body = note["properties"]["hs_note_body"]
    assert "<script>" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "&lt;b&gt;their-sdk&lt;/b&gt; &amp; said &quot;hi&quot;" in body
    assert '<a href="https://github.com/competitor/their-sdk">' in body
    assert "Starred a repository" in body
    assert "Campaign: Q2 competitors" in body
    assert note["properties"]["hs_timestamp"] == "2026-04-24T10:31:00.000Z"
    [association] = fake.associations
    assert association == {
        "from": note["id"],
        "to": contact["id"],
        "category": "HUBSPOT_DEFINED",
        "typeId": 202,
    }


def test_events_without_activity_add_no_note(crm: HubSpotConnector, fake: FakeHubSpot) -> None:
    crm.send([make_event()])

    assert fake.calls_to("POST", NOTES_PATH) == 0
    assert fake.notes == {}


def test_a_refused_note_is_permanent_and_says_the_contact_landed(
    crm: HubSpotConnector, fake: FakeHubSpot
) -> None:
    fake.fail_next(
        status=400,
        path=NOTES_PATH,
        body={
            "status": "error",
            "message": "Property values were not valid",
            "category": "VALIDATION_ERROR",
        },
    )

    [outcome] = crm.send([make_event(type="lead.activity", activity=STAR)])

    contact = fake.contact_by("email", "jane@example.com")
    assert contact is not None
    assert outcome == Permanent(
        f"created contact {contact['id']}, but HubSpot refused the activity note: "
        "HubSpot answered 400: Property values were not valid (VALIDATION_ERROR)"
    )


def test_a_failed_note_is_retried_with_its_contact_and_lands_once(
    crm: HubSpotConnector, fake: FakeHubSpot
) -> None:
    event = make_event(type="lead.activity", activity=STAR)
    fake.fail_next(status=503, path=NOTES_PATH)

    [first] = crm.send([event])
    [retried] = crm.send([event])

    assert isinstance(first, Retryable)
    assert "HubSpot answered 503" in first.message
    assert isinstance(retried, Delivered)
    assert len(fake.contacts) == 1
    contact = fake.contact_by("email", "jane@example.com")
    assert contact is not None
    assert len(fake.notes_for(contact["id"])) == 1


def test_two_activities_of_one_lead_in_a_batch_add_two_notes(
    crm: HubSpotConnector, fake: FakeHubSpot
) -> None:
    comment = Activity(kind="comment", text="Nice post")
    outcomes = crm.send(
        [
            make_event(type="lead.activity", activity=STAR),
            make_event(type="lead.activity", activity=comment),
        ]
    )

    assert all(isinstance(o, Delivered) for o in outcomes)
    contact = fake.contact_by("email", "jane@example.com")
    assert contact is not None
    assert len(fake.notes_for(contact["id"])) == 2
    assert fake.calls_to("POST", UPSERT_PATH) == 1
    assert fake.calls_to("POST", NOTES_PATH) == 1


# -- one contact per person (lead.key and lead.identities) -------------------------------------


def test_with_key_property_a_person_is_one_contact_as_their_email_changes(
    server: RunningServer, fake: FakeHubSpot
) -> None:
    hubspot = connector(server.base_url, key_property="leadrelay_key")
    key = "github:ghuser31"
    outcomes = [
        *hubspot.send([make_event(key=key, email=None, github_username="ghuser31")]),
        *hubspot.send([make_event(key=key, email="gl31@example.com")]),
        *hubspot.send([make_event(key=key, email="gl31.new@example.com")]),
    ]
    hubspot.close()

    assert all(isinstance(o, Delivered) for o in outcomes)
    [contact] = fake.contacts.values()
    assert contact["properties"]["leadrelay_key"] == key
    assert contact["properties"]["email"] == "gl31.new@example.com"


def test_an_email_change_updates_the_contact_of_the_earlier_email(
    crm: HubSpotConnector, fake: FakeHubSpot
) -> None:
    crm.send([make_event(email="ed.old@example.com")])
    identities = ["email:ed.old@example.com", "leadhub:4242@leadhub", "email:ed.new@example.com"]

    [outcome] = crm.send([make_event(email="ed.new@example.com", identities=identities)])

    assert isinstance(outcome, Delivered), outcome
    [contact] = fake.contacts.values()
    assert contact["properties"]["email"] == "ed.new@example.com"
    assert fake.calls_to("POST", "/crm/v3/objects/contacts/batch/update") == 1
    # The next event finds the contact by its current email and upserts as usual.
    [outcome] = crm.send([make_event(email="ed.new@example.com", identities=identities)])
    assert isinstance(outcome, Delivered)
    assert len(fake.contacts) == 1
    assert fake.calls_to("POST", "/crm/v3/objects/contacts/batch/update") == 1


def test_an_email_change_with_no_earlier_contact_creates_one(
    crm: HubSpotConnector, fake: FakeHubSpot
) -> None:
    identities = ["email:ed.old@example.com", "email:ed.new@example.com"]

    [outcome] = crm.send([make_event(email="ed.new@example.com", identities=identities)])

    assert isinstance(outcome, Delivered)
    [contact] = fake.contacts.values()
    assert contact["properties"]["email"] == "ed.new@example.com"
    assert fake.calls_to("POST", "/crm/v3/objects/contacts/batch/update") == 0


# -- preview, connection check, secrets, options -----------------------------------------------


def test_preview_is_the_exact_requests_without_network() -> None:
    hubspot = connector(closed_port_url(), key_property="leadrelay_key")
    event = make_event(type="lead.activity", activity=STAR)

    preview = hubspot.preview(event)

    upsert, note = preview["requests"]
    assert upsert["method"] == "POST"
    assert upsert["path"] == UPSERT_PATH
    assert upsert["body"] == {
        "inputs": [
            {
                "idProperty": "leadrelay_key",
                "objectWriteTraceId": "0",
                "id": "email:jane@example.com",
                "properties": {
                    "email": "jane@example.com",
                    "firstname": "Jane",
                    "lastname": "Doe",
                    "jobtitle": "Staff Engineer",
                    "company": "Vercel",
                    "leadrelay_key": "email:jane@example.com",
                },
            }
        ]
    }
    assert note["path"] == NOTES_PATH
    [note_input] = note["body"]["inputs"]
    assert note_input["associations"] == [
        {
            "to": {"id": "<id of the contact returned by the upsert>"},
            "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 202}],
        }
    ]
    assert note_input["properties"]["hs_timestamp"] == "2026-04-24T10:31:00.000Z"
    assert TOKEN not in repr(preview)


def test_preview_of_a_skipped_event_sends_nothing() -> None:
    preview = connector(closed_port_url()).preview(make_event(type="lead.deleted"))

    assert preview["requests"] == []
    assert "on_delete: archive" in preview["skipped"]


def test_check_connection_passes_with_a_good_token(
    crm: HubSpotConnector, fake: FakeHubSpot
) -> None:
    crm.check_connection()

    assert fake.calls_to("GET", "/crm/v3/objects/contacts") == 1
    assert fake.calls_to("POST", UPSERT_PATH) == 1
    assert fake.contacts == {}


def test_check_connection_names_a_bad_token(server: RunningServer) -> None:
    with pytest.raises(ConnectionCheckFailed, match="token invalid or expired") as failure:
        connector(server.base_url, access_token="pat-wrong").check_connection()
    assert "pat-wrong" not in str(failure.value)


def test_check_connection_names_the_missing_write_scope(
    server: RunningServer, fake: FakeHubSpot
) -> None:
    fake.reset(tokens={TOKEN: {READ_SCOPE}})

    with pytest.raises(ConnectionCheckFailed, match=r"crm\.objects\.contacts\.write"):
        connector(server.base_url).check_connection()


def test_check_connection_says_when_hubspot_is_unreachable() -> None:
    with pytest.raises(ConnectionCheckFailed, match="cannot connect to HubSpot"):
        connector(closed_port_url()).check_connection()


def test_the_token_is_in_no_repr_and_no_error(crm: HubSpotConnector, fake: FakeHubSpot) -> None:
    fake.fail_next(
        status=400,
        body={
            "status": "error",
            "message": f"bad request for token {TOKEN}",
            "category": "VALIDATION_ERROR",
        },
    )

    [outcome] = crm.send([make_event()])

    assert isinstance(outcome, Permanent)
    assert TOKEN not in outcome.message
    assert "**********" in outcome.message
    assert TOKEN not in repr(crm)
    assert TOKEN not in repr(crm.options)
    assert TOKEN not in str(crm.options.model_dump())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"properties": {"nickname": "nickname"}}, "not a lead field"),
        ({"properties": {"title": "Job Title"}}, "not a HubSpot internal property name"),
        ({"properties": {"title": "company", "bio": "company"}}, "both map to 'company'"),
        ({"id_property": "github_login"}, "not filled by any lead field"),
        ({"base_url": "api.hubapi.com"}, "must start with https://"),
        ({"timeout": 0}, "greater than 0"),
    ],
)
def test_options_refuse_mistakes(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        HubSpotOptions.model_validate({"type": "hubspot", "access_token": TOKEN, **options})


def test_options_accept_a_custom_id_property() -> None:
    options = HubSpotOptions.model_validate(
        {
            "type": "hubspot",
            "access_token": SecretStr(TOKEN),
            "id_property": "github_login",
            "properties": {"github_username": "github_login"},
        }
    )

    assert options.property_map()["github_login"] == "github_username"
    assert options.base_url == "https://api.hubapi.com"


# -- more batch shapes -------------------------------------------------------------------------


def test_a_stop_midway_keeps_what_was_already_delivered(
    crm: HubSpotConnector, fake: FakeHubSpot
) -> None:
    fake.rate_limit = RateLimit(max_requests=1, window_ms=60_000)
    events = [make_event(email=f"dev{n}@example.com") for n in range(150)]

    outcomes = crm.send(events)

    assert all(isinstance(o, Delivered) for o in outcomes[:100])
    assert all(isinstance(o, RateLimited) for o in outcomes[100:])
    assert len(fake.contacts) == 100


def test_errors_tied_by_ids_and_untied_errors(crm: HubSpotConnector, fake: FakeHubSpot) -> None:
    fake.fail_next(
        status=207,
        body={
            "status": "COMPLETE",
            "results": [{"id": "1", "properties": {"email": "ok@example.com"}, "new": False}],
            "numErrors": 1,
            "errors": [
                {
                    "status": "error",
                    "category": "VALIDATION_ERROR",
                    "message": "Property values were not valid",
                    "context": {"ids": ["BAD@example.com"]},
                }
            ],
        },
    )
    outcomes = crm.send(
        [
            make_event(email="ok@example.com"),
            make_event(email="bad@example.com"),
        ]
    )
    assert outcomes == [
        Delivered("updated contact 1"),
        Permanent("Property values were not valid (VALIDATION_ERROR)"),
    ]

    fake.fail_next(
        status=207,
        body={
            "status": "COMPLETE",
            "results": [],
            "errors": [{"status": "error", "category": "INTERNAL", "message": "something broke"}],
        },
    )
    [untied] = crm.send([make_event(email="ok@example.com")])
    assert untied == Retryable(
        "HubSpot answered 207 without a result for this record; errors it did not tie to a "
        "record: something broke (INTERNAL)"
    )


def test_archives_of_leads_with_and_without_email_go_by_the_key(
    server: RunningServer, fake: FakeHubSpot
) -> None:
    hubspot = connector(server.base_url, on_delete="archive", key_property="leadrelay_key")
    hubspot.send([make_event(email="a@example.com"), make_event(email=None)])

    outcomes = hubspot.send(
        [
            make_event(type="lead.deleted", email="a@example.com"),
            make_event(type="lead.deleted", email=None),
        ]
    )

    assert all(isinstance(o, Delivered) for o in outcomes)
    assert all(c["archived"] for c in fake.contacts.values())
    assert len(fake.contacts) == 2
    # One read: with key_property every contact is found by its lead key.
    assert fake.calls_to("POST", "/crm/v3/objects/contacts/batch/read") == 1
    hubspot.close()


def test_tls_failure_is_retryable_despite_the_sdk_crashing_on_it(fake: FakeHubSpot) -> None:
    # The SDK wraps a TLS error in ApiException(status=0, body=None), then calls
    # body.decode() on it; the connector still answers with an outcome.
    with serve(fake.app, https=True) as tls_server:
        hubspot = connector(tls_server.base_url)  # the throwaway certificate is not trusted
        [outcome] = hubspot.send([make_event()])
        hubspot.close()

    assert isinstance(outcome, Retryable)
    assert "TLS error talking to HubSpot" in outcome.message
    assert "CERTIFICATE_VERIFY_FAILED" in outcome.message


# -- the fake itself answers like HubSpot ------------------------------------------------------


def test_fake_refuses_more_than_100_inputs_and_duplicate_ids(
    server: RunningServer, fake: FakeHubSpot
) -> None:
    url = server.base_url + UPSERT_PATH
    headers = {"Authorization": f"Bearer {TOKEN}"}
    too_many = {
        "inputs": [
            {"idProperty": "email", "id": f"d{n}@example.com", "properties": {}} for n in range(101)
        ]
    }
    twice = {
        "inputs": [
            {"idProperty": "email", "id": "a@example.com", "properties": {}},
            {"idProperty": "email", "id": "A@example.com", "properties": {}},
        ]
    }

    over = requests.post(url, json=too_many, headers=headers, timeout=5)
    duplicated = requests.post(url, json=twice, headers=headers, timeout=5)
    anonymous = requests.post(url, json=twice, timeout=5)

    assert over.status_code == 400
    assert over.json()["category"] == "VALIDATION_ERROR"
    assert duplicated.status_code == 400
    assert "Duplicate IDs found in batch input" in duplicated.json()["message"]
    assert anonymous.status_code == 401
    assert anonymous.json()["category"] == "INVALID_AUTHENTICATION"
    assert fake.contacts == {}


# -- a 2xx that leaves a record out ------------------------------------------------------------


def _upsert_result(trace: str, email: str, record_id: str) -> dict[str, Any]:
    return {
        "id": record_id,
        "objectWriteTraceId": trace,
        "properties": {"email": email},
        "new": True,
    }


@pytest.mark.parametrize(
    ("status", "body"),
    [
        # A 200 whose results name only the first input.
        (200, {"status": "COMPLETE", "results": [_upsert_result("0", "ann@acme.io", "501")]}),
        # A 207 with one result and no error for the other input.
        (
            207,
            {
                "status": "COMPLETE",
                "results": [_upsert_result("0", "ann@acme.io", "501")],
                "errors": [],
            },
        ),
        # The result that is there cannot be tied to either input, and one is missing.
        (200, {"status": "COMPLETE", "results": []}),
    ],
    ids=["200-one-result", "207-one-result-no-error", "200-empty-results"],
)
def test_a_2xx_that_leaves_a_record_out_does_not_count_it_delivered(
    crm: HubSpotConnector, fake: FakeHubSpot, status: int, body: dict[str, Any]
) -> None:
    fake.fail_next(status=status, body=body, path=UPSERT_PATH)
    events = [make_event(email="ann@acme.io"), make_event(email="bob@acme.io")]

    outcomes = crm.send(events)

    left_out = outcomes[1]
    assert isinstance(left_out, Retryable), outcomes
    assert f"HubSpot answered {status} without a result for this record" in left_out.message
    if body["results"]:
        assert outcomes[0] == Delivered("created contact 501")
    else:
        assert isinstance(outcomes[0], Retryable)


# -- what HubSpot accepts (issue 18) ------------------------------------------------------------


def test_fake_refuses_a_property_value_over_65536_characters(
    server: RunningServer, fake: FakeHubSpot
) -> None:
    """The fake holds the limit, so the cut below is proven against a refusing server."""
    body = {
        "inputs": [
            {
                "idProperty": "email",
                "id": "long@example.com",
                "properties": {"message": "x" * 65_537},
                "objectWriteTraceId": "0",
            }
        ]
    }
    answer = requests.post(
        server.base_url + UPSERT_PATH,
        json=body,
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=5,
    )
    assert answer.status_code == 207
    [error] = answer.json()["errors"]
    assert error["errors"][0]["code"] == "INVALID_LONG_STRING"
    assert {"status", "category", "message", "errors", "context", "links"} <= set(error)


@pytest.mark.parametrize("length", [5_000, 70_000])
def test_long_bio_is_cut_to_hubspot_limit_without_splitting_a_character(
    server: RunningServer, fake: FakeHubSpot, length: int
) -> None:
    hubspot = connector(server.base_url, properties={"bio": "message"})
    # An emoji (two UTF-16 units) straddles the limit: it is dropped whole.
    bio = "a" * 65_535 + "🚀" + "b" * max(0, length - 65_537) if length > 65_536 else "b" * length
    [outcome] = hubspot.send([make_event(email="bio@example.com", bio=bio)])
    assert isinstance(outcome, Delivered), outcome
    [contact] = fake.contacts.values()
    sent = contact["properties"]["message"]
    assert sent == (bio if length <= 65_536 else "a" * 65_535)
    hubspot.close()


def test_emoji_only_name_is_not_a_first_name(crm: HubSpotConnector, fake: FakeHubSpot) -> None:
    [outcome] = crm.send(
        [make_event(email="rocket@example.com", full_name="🚀", first_name=None, last_name=None)]
    )
    assert isinstance(outcome, Delivered), outcome
    [contact] = fake.contacts.values()
    assert "firstname" not in contact["properties"]
    assert "lastname" not in contact["properties"]
