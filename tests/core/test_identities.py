"""One person, one lead key: the identity map on SQLite and PostgreSQL (issue 22)."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select

from leadrelay.core.app.config import Config
from leadrelay.core.ingest.providers import Parsed
from leadrelay.core.schema import LeadEvent
from leadrelay.core.store.store import (
    DeliveryFilter,
    EventFilter,
    IncomingEvent,
    Store,
    UnknownPerson,
    utcnow,
)
from leadrelay.core.store.tables import deliveries, lead_progress
from tests.conftest import make_config, migrated_store, request_record
from tests.factories import delivered_update, make_event
from tests.lifecycles import LIFECYCLES, PERSON_KEYS

TIMEOUT_S = 60


@pytest.fixture
def config(store_url: str) -> Config:
    return make_config(store_url)


def record_of(config: Config, event: LeadEvent) -> IncomingEvent:
    return request_record(
        config,
        event.source,
        json.dumps(event.raw).encode(),
        received_at=event.received_at,
        result=Parsed(event),
    )


def person_event(**identifiers: Any) -> LeadEvent:
    """An event about a person with exactly these identifiers."""
    fields = {"email": None, "github_username": None, "linkedin_username": None}
    fields.update(identifiers)
    return make_event(provider_lead_id=None, **fields)


def loaded_events(store: Store) -> dict[str, LeadEvent]:
    """Every pending delivery's event as a worker loads it, by event id."""
    claimed = store.claim("rec", "w1", 1000, utcnow() + timedelta(seconds=1), timedelta(minutes=1))
    return {c.event_id: c.event for c in claimed}  # type: ignore[attr-defined]


def test_lifecycles_keep_the_key_of_the_first_event(config: Config, store: Store) -> None:
    ids: dict[str, list[str]] = {}
    for person, bodies in LIFECYCLES.items():
        for source, body in bodies:
            ids.setdefault(person, []).append(
                store.submit(request_record(config, source, body)).event_id
            )
    loaded = loaded_events(store)
    for person, event_ids in ids.items():
        assert [loaded[e].lead.key for e in event_ids] == [PERSON_KEYS[person]] * 2
        assert [store.get_event(e)["lead_key"] for e in event_ids] == [PERSON_KEYS[person]] * 2
    # The second event lists everything known of the person, the earlier email included.
    assert loaded[ids["leadhub"][1]].lead.identities == [
        "email:ed.old@example.com",
        "leadhub:4242@leadhub",
        "email:ed.new@example.com",
    ]
    assert loaded[ids["leadhub"][1]].lead.email == "ed.new@example.com"
    assert loaded[ids["leadshark"][0]].lead.identities == ["linkedin:vera-visitor"]
    assert set(loaded[ids["gitleads"][1]].lead.identities) == {
        "github:ghuser31",
        "gitleads:lead_31@gitleads",
        "email:gl31@example.com",
    }


def test_events_of_one_person_in_one_group_resolve_in_order(config: Config, store: Store) -> None:
    records = [
        request_record(config, source, body)
        for bodies in LIFECYCLES.values()
        for source, body in bodies
    ]
    results = store.submit_many(records)
    keys = [store.get_event(r.event_id)["lead_key"] for r in results]
    assert keys == [key for key in PERSON_KEYS.values() for _ in range(2)]


SUBSETS = [
    {"email": "pat@example.com", "github_username": "pat-gh"},
    {"github_username": "Pat-GH", "linkedin_username": "pat-li"},
    {"email": "PAT@example.com", "linkedin_username": "pat-li"},
    {"email": "pat@example.com", "github_username": "pat-gh", "linkedin_username": "pat-li"},
]


def test_concurrent_events_of_a_new_person_get_one_key(store_url: str, config: Config) -> None:
    # Every two subsets share an identifier, so whatever order they commit in, each
    # event meets the person made by the first: one key, and nothing is a conflict.
    # Five stores stand for five processes: on PostgreSQL their transactions overlap.
    stores = [migrated_store(store_url) for _ in range(5)]
    events = [person_event(**SUBSETS[n % len(SUBSETS)]) for n in range(50)]
    barrier = threading.Barrier(len(events), timeout=TIMEOUT_S)

    def send(n: int) -> str:
        record = record_of(config, events[n])
        barrier.wait()
        return stores[n % len(stores)].submit(record).event_id

    try:
        with ThreadPoolExecutor(max_workers=len(events)) as pool:
            event_ids = list(pool.map(send, range(len(events))))
        store = stores[0]
        keys = {store.get_event(e)["lead_key"] for e in event_ids}
        assert len(keys) == 1
        person = store.find_person("pat@example.com")
        assert keys == {person["key"]}
        assert {i["identifier"] for i in person["identifiers"]} == {
            "email:pat@example.com",
            "github:pat-gh",
            "linkedin:pat-li",
        }
        assert len(person["events"]) == 50
        assert person["conflicts"] == []
    finally:
        for each in stores:
            each.close()


def test_a_conflicting_event_keeps_both_keys_until_merged(config: Config, store: Store) -> None:
    alice = store.submit(record_of(config, person_event(email="alice@example.com"))).event_id
    bob = store.submit(record_of(config, person_event(github_username="bob"))).event_id
    both = store.submit(
        record_of(config, person_event(email="alice@example.com", github_username="bob"))
    ).event_id

    # Email outranks GitHub: the event is Alice's; Bob keeps his GitHub and his key.
    assert store.get_event(both)["lead_key"] == "email:alice@example.com"
    assert store.find_person("github:bob")["key"] == "github:bob"
    [listed] = [e for e in store.list_events(EventFilter()) if e["event_id"] == both]
    assert listed["identity_conflict"] == "github:bob is github:bob's"
    [conflict] = store.find_person("github:bob")["conflicts"]
    assert (conflict["kept_key"], conflict["other_key"]) == (
        "email:alice@example.com",
        "github:bob",
    )

    merged = store.merge_persons("email:alice@example.com", "github:bob")
    assert merged == {"identifiers": 1, "events": 1, "deliveries": 1, "conflicts_settled": 1}
    person = store.find_person("github:bob")
    assert person["key"] == "email:alice@example.com"
    assert {e["event_id"] for e in person["events"]} == {alice, bob, both}
    assert person["conflicts"] == []
    later = store.submit(record_of(config, person_event(github_username="bob"))).event_id
    assert store.get_event(later)["lead_key"] == "email:alice@example.com"
    with pytest.raises(UnknownPerson):
        store.find_person("github:nobody")


def test_merging_two_people_puts_their_deliveries_in_one_line(config: Config, store: Store) -> None:
    alice = store.submit(record_of(config, person_event(email="alice@example.com"))).event_id
    store.submit(record_of(config, person_event(github_username="bob")))
    now = utcnow()
    with store.engine.begin() as conn:
        # Bob's newest delivered event, newer than Alice's: the merged person keeps it.
        conn.execute(
            insert(lead_progress),
            [
                {
                    "connector": "rec",
                    "lead_key": "github:bob",
                    "occurred_at": now,
                    "event_id": "evt_bob",
                    "updated_at": now,
                },
                {
                    "connector": "rec",
                    "lead_key": "email:alice@example.com",
                    "occurred_at": now - timedelta(days=1),
                    "event_id": alice,
                    "updated_at": now,
                },
            ],
        )

    merged = store.merge_persons("email:alice@example.com", "github:bob")

    assert merged["deliveries"] == 1
    with store.engine.connect() as conn:
        lines = set(conn.execute(select(deliveries.c.lead_key)).scalars())
        progress = conn.execute(
            select(lead_progress.c.connector, lead_progress.c.lead_key, lead_progress.c.event_id)
        ).all()
    assert lines == {"email:alice@example.com"}
    assert [tuple(row) for row in progress] == [("rec", "email:alice@example.com", "evt_bob")]


def test_the_provider_lead_id_outranks_the_email(config: Config, store: Store) -> None:
    store.submit(record_of(config, make_event(email="first@example.com", provider_lead_id="7")))
    store.submit(record_of(config, make_event(email="other@example.com", github_username="x")))
    # Lead 7 now carries the other person's email: the provider's id decides.
    moved = store.submit(
        record_of(config, make_event(email="other@example.com", provider_lead_id="7"))
    ).event_id
    assert store.get_event(moved)["lead_key"] == "email:first@example.com"


def test_one_lead_id_at_two_sources_is_two_people(store_url: str, store: Store) -> None:
    sources = {
        "leadhub": {"provider": "leadhub", "secrets": ["a"]},
        "leadhub_eu": {"provider": "leadhub", "secrets": ["b"]},
    }
    config = make_config(store_url, sources=sources)
    body = json.dumps(
        {"event": "lead.created", "occurred_at": "2026-04-29T10:30:00Z", "lead": {"id": 77}}
    ).encode()
    first = store.submit(request_record(config, "leadhub", body)).event_id
    second = store.submit(request_record(config, "leadhub_eu", body)).event_id
    assert store.get_event(first)["lead_key"] == "leadhub:77"
    # The key made from the lead id is taken: the source-qualified identifier keys the other.
    assert store.get_event(second)["lead_key"] == "leadhub:77@leadhub_eu"


def test_forget_keeps_only_the_idempotency_keys(config: Config, store: Store) -> None:
    source, body = LIFECYCLES["leadhub"][0]
    first = store.submit(request_record(config, source, body))
    store.submit(request_record(config, *LIFECYCLES["leadhub"][1]))
    other = store.submit(request_record(config, *LIFECYCLES["leadshark"][0])).event_id

    removed = store.forget_person("ED.NEW@example.com")
    assert removed["key"] == "email:ed.old@example.com"
    assert removed["events"] == 2
    assert removed["deliveries"] == 2
    assert sorted(removed["identifiers"]) == [
        "email:ed.new@example.com",
        "email:ed.old@example.com",
        "leadhub:4242@leadhub",
    ]
    assert store.get_event(first.event_id) is None
    with pytest.raises(UnknownPerson):
        store.find_person("email:ed.old@example.com")
    assert store.get_event(other) is not None
    # The provider retrying its event is still a duplicate: nothing comes back.
    again = store.submit(request_record(config, source, body))
    assert (again.event_id, again.duplicate) == (first.event_id, True)
    assert store.get_event(first.event_id) is None


def test_identity_entries_expire_after_the_persons_last_event(config: Config, store: Store) -> None:
    # No delivery, so nothing pending keeps the event (and its person) stored.
    record = replace(record_of(config, person_event(email="old@example.com")), connectors=())
    store.submit(record)
    now = utcnow()
    assert store.purge(now + timedelta(days=4), timedelta(days=1), timedelta(days=5)) == {
        "events": 1,
        "deliveries": 0,
        "attempts": 0,
        "dedup_keys": 0,
        "identities": 0,
        "lead_progress": 0,
    }
    assert store.find_person("old@example.com")["key"] == "email:old@example.com"
    counts = store.purge(now + timedelta(days=6), timedelta(days=1), timedelta(days=5))
    assert counts["identities"] == 1
    with pytest.raises(UnknownPerson):
        store.find_person("old@example.com")


def test_forgetting_a_person_while_a_worker_sends_their_delivery_loses_no_other_outcome(
    config: Config, store: Store
) -> None:
    forgotten = store.submit(record_of(config, person_event(email="gone@example.com"))).event_id
    kept = store.submit(record_of(config, person_event(email="kept@example.com"))).event_id
    claimed = store.claim("rec", "w1", 10, utcnow() + timedelta(seconds=1), timedelta(minutes=1))
    assert {c.event_id for c in claimed} == {forgotten, kept}

    store.forget_person("gone@example.com")  # while w1 is sending both
    now = utcnow()
    held = store.complete("w1", [delivered_update(c.id, now) for c in claimed], now)

    assert held == 1
    [row] = store.list_deliveries(DeliveryFilter(event_id=kept))
    assert row["status"] == "delivered"


def test_forget_drops_the_persons_delivery_progress(config: Config, store: Store) -> None:
    event = person_event(email="back@example.com")
    store.submit(record_of(config, event))
    now = utcnow()
    with store.engine.begin() as conn:
        conn.execute(
            insert(lead_progress).values(
                connector="rec",
                lead_key="email:back@example.com",
                occurred_at=now,
                event_id=event.event_id,
                updated_at=now,
            )
        )

    store.forget_person("back@example.com")

    with store.engine.connect() as conn:
        left = conn.execute(select(lead_progress.c.lead_key)).scalars().all()
    # A returning person's older events are not judged against what was forgotten.
    assert left == []
