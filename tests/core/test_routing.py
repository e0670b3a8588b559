"""Routing: which connectors get an event, and the delivery rows written with the event."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import select

from leadrelay.core.app.config import Config
from leadrelay.core.delivery.routing import matches, route
from leadrelay.core.store.store import IncomingEvent, Store
from leadrelay.core.store.tables import dedup_keys, deliveries, events
from tests.conftest import (
    gitleads_body,
    make_config,
    migrated_store,
    request_record,
    table_rows,
)
from tests.factories import make_event

ROUTED_CONNECTORS: dict[str, Any] = {
    "everything": {"type": "recording"},
    "created_only": {"type": "recording", "events": ["lead.created"]},
    "leadhub_only": {"type": "recording", "sources": ["leadhub"]},
    "needs_phone": {"type": "recording", "require": ["phone"]},
    "needs_email": {"type": "recording", "require": ["email", "company"]},
    "switched_off": {"type": "recording", "enabled": False},
}


def routing_config(url: str = "sqlite://") -> Config:
    return make_config(url, connectors=ROUTED_CONNECTORS)


# -- the decision ---------------------------------------------------------------------------


def test_events_filter_limits_the_types_a_connector_receives() -> None:
    options = routing_config().connectors["created_only"]
    assert matches(make_event(type="lead.created"), options)
    assert not matches(make_event(type="lead.updated"), options)
    assert not matches(make_event(type="lead.activity"), options)


def test_default_events_are_every_lead_type() -> None:
    options = routing_config().connectors["everything"]
    for event_type in ("lead.created", "lead.updated", "lead.enriched", "lead.deleted"):
        assert matches(make_event(type=event_type), options), event_type


def test_sources_filter_limits_where_events_come_from() -> None:
    options = routing_config().connectors["leadhub_only"]
    assert matches(make_event(source="leadhub", provider="leadhub"), options)
    assert not matches(make_event(source="gitleads"), options)


def test_require_needs_every_named_lead_field_present() -> None:
    options = routing_config().connectors["needs_email"]
    assert matches(make_event(email="a@example.com", company="Acme"), options)
    assert not matches(make_event(email=None, company="Acme"), options)
    assert not matches(make_event(email="a@example.com", company=None), options)


def test_require_treats_an_empty_list_as_absent() -> None:
    config = make_config(
        "sqlite://", connectors={"tagged": {"type": "recording", "require": ["tags"]}}
    )
    options = config.connectors["tagged"]
    assert not matches(make_event(tags=[]), options)
    assert matches(make_event(tags=["vip"]), options)


def test_route_names_matching_enabled_connectors_in_config_order() -> None:
    config = routing_config()
    event = make_event(type="lead.created", source="gitleads", email="a@b.co", phone=None)
    assert route(event, config.connectors) == ("everything", "created_only", "needs_email")


def test_route_matches_every_enabled_connector_that_wants_the_event() -> None:
    # Run-time disables (410) are not routing's business: those deliveries are queued and
    # wait (tests/core/test_connector_disable.py); `enabled: false` is tested above.
    config = routing_config()
    event = make_event(type="lead.updated", source="leadhub", provider="leadhub", phone="+1 555")
    assert route(event, config.connectors) == (
        "everything",
        "leadhub_only",
        "needs_phone",
        "needs_email",
    )


# -- delivery rows, written with the event ---------------------------------------------------


def gitleads_record(config: Config, n: int) -> IncomingEvent:
    return request_record(config, "gitleads", gitleads_body(n))


def delivery_rows(store: Store) -> list[tuple[str, str, str, int]]:
    with store.engine.connect() as conn:
        return [
            (row.event_id, row.connector, row.status, row.attempts)
            for row in conn.execute(
                select(
                    deliveries.c.event_id,
                    deliveries.c.connector,
                    deliveries.c.status,
                    deliveries.c.attempts,
                ).order_by(deliveries.c.id)
            )
        ]


def test_one_pending_delivery_per_matching_connector(store_url: str) -> None:
    store = migrated_store(store_url)
    config = routing_config(store_url)
    record = gitleads_record(config, 1)
    # A GitLeads lead.created with email and company but no phone, from source gitleads.
    assert record.connectors == ("everything", "created_only", "needs_email")

    [result] = store.submit_many([record])

    assert not result.duplicate
    assert delivery_rows(store) == [
        (record.event_id, "everything", "pending", 0),
        (record.event_id, "created_only", "pending", 0),
        (record.event_id, "needs_email", "pending", 0),
    ]
    store.close()


def test_a_duplicate_event_creates_no_new_deliveries(store_url: str) -> None:
    store = migrated_store(store_url)
    config = routing_config(store_url)
    first = store.submit_many([gitleads_record(config, 1)])[0]
    again = store.submit_many([gitleads_record(config, 1)])[0]
    assert again.duplicate
    assert again.event_id == first.event_id
    assert table_rows(store, events) == 1
    assert len(delivery_rows(store)) == 3
    store.close()


def test_an_event_is_moved_in_with_all_its_deliveries_or_none(store_url: str) -> None:
    store = migrated_store(store_url)
    config = routing_config(store_url)
    # Two rows for one (event, connector) break the unique constraint when moved in.
    broken = replace(gitleads_record(config, 1), connectors=("everything", "everything"))

    store.submit_many([broken, gitleads_record(config, 2)])

    # Not half of the broken event's deliveries: none (it is kept quarantined), while the
    # event journaled behind it got all three of its own.
    assert [row[0] for row in delivery_rows(store)] == [gitleads_record(config, 2).event_id] * 3
    assert table_rows(store, events) == 2
    assert table_rows(store, dedup_keys) == 2
    store.close()


def test_deliveries_are_only_for_lead_events(sqlite_url: str) -> None:
    store = migrated_store(sqlite_url)
    config = routing_config(sqlite_url)
    record = request_record(config, "gitleads", gitleads_body(1, event="repository.connected"))
    assert record.status == "ignored"
    assert record.connectors == ()
    store.submit_many([record])
    assert table_rows(store, events) == 1
    assert delivery_rows(store) == []
    store.close()


def test_subscribers_are_woken_only_when_deliveries_were_created(sqlite_url: str) -> None:
    store = migrated_store(sqlite_url)
    config = routing_config(sqlite_url)
    wakes: list[str] = []
    store.subscribe(lambda: wakes.append("wake"))

    store.submit_many([gitleads_record(config, 1)])
    assert wakes == ["wake"]
    store.submit_many([gitleads_record(config, 1)])  # duplicate: nothing to deliver
    assert wakes == ["wake"]
    store.close()


def test_runtime_disabled_connector_still_gets_waiting_deliveries(sqlite_url: str) -> None:
    store = migrated_store(sqlite_url)
    store.set_connector_disabled("everything", "410 Gone from the destination")
    config = routing_config(sqlite_url)
    record = gitleads_record(config, 1)
    assert record.connectors == ("everything", "created_only", "needs_email")
    store.close()
