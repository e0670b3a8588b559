"""Per-lead order: one holder per lead, its line in id order, dead heads release the next,
superseded events skipped, leases renewed while a worker works and checked before a send."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from leadrelay.core.app.config import ConfigError
from leadrelay.core.delivery.contract import Delivered, Permanent, Retryable
from leadrelay.core.delivery.worker import Worker
from leadrelay.core.ingest.providers import Parsed
from leadrelay.core.schema import LeadEvent
from leadrelay.core.store.store import utcnow
from tests.conftest import make_config, migrated_store, request_record
from tests.core.test_worker import FakeClock
from tests.factories import make_event
from tests.per_lead import delivery, statuses, store_event, version
from tests.recording import RecordingConnector

LEASE = timedelta(seconds=30)


@pytest.fixture
def engine(store_url: str) -> Any:
    config = make_config(
        store_url,
        connectors={"rec": {"type": "recording", "batch": 1}},
        delivery={"lease": "30s", "backoff": ["30s"], "jitter": 0, "max_attempts": 3},
    )
    store = migrated_store(store_url)
    yield config, store
    store.close()


def test_a_lead_has_one_holder_and_its_line_goes_in_order(engine: Any) -> None:
    _config, store = engine
    line = [store_event(store, version(1, n), "rec") for n in range(3)]
    other = store_event(store, version(2, 0), "rec")
    now = utcnow() + timedelta(seconds=1)

    [head] = store.claim("rec", "worker-a", 1, now, LEASE)
    assert head.event_id == line[0]
    # The rest of lead 1 waits behind its leased head; lead 2 goes in parallel.
    assert [d.event_id for d in store.claim("rec", "worker-b", 10, now, LEASE)] == [other]
    assert store.claim("rec", "worker-c", 10, now, LEASE) == []


def test_a_claim_takes_the_line_behind_a_head_in_order(engine: Any) -> None:
    _config, store = engine
    first = [store_event(store, version(1, n), "rec") for n in range(2)]
    second = store_event(store, version(2, 0), "rec")
    last = store_event(store, version(1, 2), "rec")
    now = utcnow() + timedelta(seconds=1)

    claimed = store.claim("rec", "worker-a", 10, now, LEASE)

    assert [d.event_id for d in claimed] == [*first, second, last]
    assert store.claim("rec", "worker-b", 10, now, LEASE) == []


def test_a_retrying_head_holds_its_lead_and_the_rest_say_what_they_wait_for(
    engine: Any,
) -> None:
    config, store = engine
    head, behind = (store_event(store, version(1, n), "rec") for n in range(2))
    clock = FakeClock(utcnow() + timedelta(seconds=1))
    RecordingConnector.scripts["rec"] = [Retryable("503 from the CRM")]

    # The worker sends the head, sees it fail and gives the rest of the line back unsent.
    assert Worker(config, store, worker_id="w1", clock=clock).run_once("rec") == 1
    assert RecordingConnector.calls["rec"] == 1
    head_row, behind_row = delivery(store, head, "rec"), delivery(store, behind, "rec")
    assert head_row["status"] == behind_row["status"] == "pending"
    assert behind_row["waits_for"] == head_row["id"]
    assert head_row["waits_for"] is None
    # Due, unleased, and still not claimable: its predecessor retries first.
    assert store.claim("rec", "w2", 10, clock.advance(timedelta(seconds=5)), LEASE) == []
    assert store.next_due_at("rec", clock()) == head_row["next_attempt_at"]

    clock.advance(timedelta(seconds=30))
    assert Worker(config, store, worker_id="w2", clock=clock).drain("rec") == 2
    assert [e.event_id for e in RecordingConnector.sent["rec"]] == [head, behind]


def test_a_dead_head_releases_the_next_delivery_of_its_lead_and_says_so(engine: Any) -> None:
    config, store = engine
    head, behind = (store_event(store, version(1, n), "rec") for n in range(2))
    clock = FakeClock(utcnow() + timedelta(seconds=1))
    RecordingConnector.scripts["rec"] = [Permanent("400 invalid email"), Delivered()]

    assert Worker(config, store, worker_id="w1", clock=clock).drain("rec") == 2

    head_row, behind_row = delivery(store, head, "rec"), delivery(store, behind, "rec")
    assert (head_row["status"], behind_row["status"]) == ("dead", "delivered")
    assert head_row["last_error"] == (
        f"400 invalid email; dead: released delivery {behind_row['id']}, next for this lead"
    )


def test_a_head_dead_after_its_last_attempt_releases_the_next(engine: Any) -> None:
    config, store = engine
    head, behind = (store_event(store, version(1, n), "rec") for n in range(2))
    clock = FakeClock(utcnow() + timedelta(seconds=1))
    RecordingConnector.scripts["rec"] = [Retryable("timeout")] * 3
    worker = Worker(config, store, worker_id="w1", clock=clock)

    for _ in range(3):
        worker.drain("rec")
        clock.advance(timedelta(minutes=1))
    worker.drain("rec")

    assert (delivery(store, head, "rec")["status"], delivery(store, behind, "rec")["status"]) == (
        "dead",
        "delivered",
    )
    assert "dead: released delivery" in delivery(store, head, "rec")["last_error"]


# -- superseded events ------------------------------------------------------------------------


def stale_config(store_url: str, on_stale: str) -> Any:
    return make_config(
        store_url,
        connectors={"rec": {"type": "recording", "batch": 10, "on_stale": on_stale}},
        delivery={"backoff": ["30s"], "jitter": 0},
    )


def sent_titles() -> list[str | None]:
    return [event.lead.title for event in RecordingConnector.sent["rec"]]


def test_an_older_event_received_after_a_newer_one_is_skipped_as_superseded(
    store_url: str,
) -> None:
    config = stale_config(store_url, "skip")
    store = migrated_store(store_url)
    worker = Worker(config, store, clock=lambda: utcnow() + timedelta(seconds=1))
    newer = store_event(store, version(1, 2), "rec")
    assert worker.drain("rec") == 1
    # The provider's retry of an earlier version arrives late.
    older = store_event(store, version(1, 1), "rec")
    assert worker.drain("rec") == 1

    row = delivery(store, older, "rec")
    assert (row["status"], row["last_error"]) == ("skipped", f"superseded by {newer}")
    assert sent_titles() == ["v2"]
    store.close()


def test_queued_together_an_older_event_is_skipped_once_the_newer_is_delivered(
    store_url: str,
) -> None:
    config = stale_config(store_url, "skip")
    store = migrated_store(store_url)
    newer = store_event(store, version(1, 2), "rec")
    older = store_event(store, version(1, 1), "rec")
    newest = store_event(store, version(1, 3), "rec")

    assert Worker(config, store, clock=lambda: utcnow() + timedelta(seconds=1)).drain("rec") == 3

    assert sent_titles() == ["v2", "v3"]
    assert delivery(store, older, "rec")["last_error"] == f"superseded by {newer}"
    assert delivery(store, newest, "rec")["status"] == "delivered"
    store.close()


def test_an_older_event_waits_while_what_supersedes_it_is_retried(store_url: str) -> None:
    config = stale_config(store_url, "skip")
    store = migrated_store(store_url)
    newer = store_event(store, version(1, 2), "rec")
    older = store_event(store, version(1, 1), "rec")
    clock = FakeClock(utcnow() + timedelta(seconds=1))
    worker = Worker(config, store, clock=clock)
    RecordingConnector.scripts["rec"] = [Permanent("refused")]

    # The newer one died: nothing supersedes the older one any more, so it is sent.
    assert worker.drain("rec") == 2
    assert delivery(store, newer, "rec")["status"] == "dead"
    assert delivery(store, older, "rec")["status"] == "delivered"
    assert sent_titles() == ["v1"]
    store.close()


def test_on_stale_deliver_sends_every_event(store_url: str) -> None:
    config = stale_config(store_url, "deliver")
    store = migrated_store(store_url)
    worker = Worker(config, store, clock=lambda: utcnow() + timedelta(seconds=1))
    store_event(store, version(1, 2), "rec")
    worker.drain("rec")
    store_event(store, version(1, 1), "rec")
    worker.drain("rec")

    assert sent_titles() == ["v2", "v1"]
    assert statuses(store) == {"delivered": 2}
    store.close()


@pytest.mark.parametrize(
    ("connector", "expected"),
    [
        ({"type": "hubspot", "access_token": "t"}, "skip"),
        (
            {
                "type": "salesforce",
                "instance_url": "https://x.my.salesforce.com",
                "session_id": "s",
            },
            "skip",
        ),
        ({"type": "csv", "path": "leads.csv"}, "deliver"),
        ({"type": "slack", "webhook_url": "https://hooks.slack.com/services/T/B/x"}, "deliver"),
        ({"type": "webhook", "url": "https://example.com/hook"}, "deliver"),
    ],
)
def test_crms_skip_stale_events_and_logs_deliver_them_by_default(
    sqlite_url: str, connector: dict[str, Any], expected: str
) -> None:
    config = make_config(sqlite_url, connectors={"c": connector})
    assert config.connectors["c"].on_stale == expected


# -- leases ----------------------------------------------------------------------------------


def test_a_lease_shorter_than_a_timeout_plus_margin_is_refused_naming_both(
    sqlite_url: str,
) -> None:
    with pytest.raises(ConfigError) as refused:
        make_config(
            sqlite_url,
            connectors={"hook": {"type": "webhook", "url": "https://x.test/h", "timeout": 10}},
            delivery={"lease": "11s"},
        )
    assert refused.value.key_path == "delivery.lease"
    assert "connectors.hook.timeout (10s)" in str(refused.value)


def slow_lead_events(store: Any, count: int) -> list[str]:
    return [store_event(store, version(n, 0), "rec") for n in range(count)]


def test_a_slow_destination_keeps_its_leases_while_the_heartbeat_renews_them(
    store_url: str,
) -> None:
    """10 events, 2 s each, a 5 s lease: the other worker never takes one over."""
    config = make_config(
        store_url,
        connectors={"rec": {"type": "recording", "batch": 1}},
        delivery={"lease": "5s", "backoff": ["30s"], "jitter": 0},
    )
    store = migrated_store(store_url)
    event_ids = slow_lead_events(store, 10)
    clock = FakeClock(utcnow() + timedelta(seconds=1))
    holder = Worker(config, store, worker_id="holder", clock=clock)
    other = Worker(config, store, worker_id="other", clock=clock)
    taken_by_other: list[int] = []

    def two_seconds_at_the_destination(_event: LeadEvent) -> Delivered:
        for _ in range(2):  # the heartbeat runs every third of the lease
            clock.advance(timedelta(seconds=1))
            holder.heartbeat()
        taken_by_other.append(other.run_once("rec"))
        return Delivered()

    RecordingConnector.scripts["rec"] = [two_seconds_at_the_destination] * 10

    assert holder.run_once("rec") == 10
    assert taken_by_other == [0] * 10
    assert sorted(e.event_id for e in RecordingConnector.sent["rec"]) == sorted(event_ids)
    assert statuses(store) == {"delivered": 10}
    store.close()


def test_deliveries_whose_lease_was_lost_are_not_sent(store_url: str) -> None:
    config = make_config(
        store_url,
        connectors={"rec": {"type": "recording", "batch": 1}},
        delivery={"lease": "5s", "backoff": ["30s"], "jitter": 0},
    )
    store = migrated_store(store_url)
    slow_lead_events(store, 4)
    clock = FakeClock(utcnow() + timedelta(seconds=1))
    stalled = Worker(config, store, worker_id="stalled", clock=clock)
    taken: list[int] = []

    def stall_past_the_lease(_event: LeadEvent) -> Delivered:
        # No heartbeat (as if this process froze): the lease expires and another worker
        # takes the remaining deliveries over.
        taken.extend(d.id for d in store.claim("rec", "other", 10, clock.advance(LEASE), LEASE))
        return Delivered()

    RecordingConnector.scripts["rec"] = [stall_past_the_lease]

    assert stalled.run_once("rec") == 1
    # It sent the one it was sending when it stalled, and none of the others.
    assert RecordingConnector.calls["rec"] == 1
    assert len(taken) == 4
    assert statuses(store) == {"pending": 4}
    assert [a["outcome"] for a in store.attempts_of(min(taken))] == ["lost_lease"]
    store.close()


def test_backfilled_deliveries_join_their_leads_line(engine: Any) -> None:
    _config, store = engine
    first, second = (store_event(store, version(1, n), "rec") for n in range(2))
    now = utcnow() + timedelta(seconds=1)

    assert store.add_deliveries("later", [first, second]) == 2

    [head] = store.claim("later", "worker-a", 1, now, LEASE)
    assert (head.event_id, head.lead_key) == (first, "email:lead1@example.com")
    assert store.claim("later", "worker-b", 10, now, LEASE) == []
    assert delivery(store, second, "later")["waits_for"] == head.id


def test_a_persons_events_under_different_identifiers_share_one_line(engine: Any) -> None:
    """The line is the person's: an event with a new email but the same GitHub user waits
    behind the person's earlier one."""
    config, store = engine
    first = make_event(email="ed.old@example.com", github_username="ed", provider_lead_id=None)
    second = make_event(email="ed.new@example.com", github_username="ed", provider_lead_id=None)
    ids = [
        store.submit(
            request_record(config, "gitleads", json.dumps(e.raw).encode(), result=Parsed(e))
        ).event_id
        for e in (first, second)
    ]
    now = utcnow() + timedelta(seconds=1)

    [head] = store.claim("rec", "worker-a", 1, now, LEASE)
    assert head.event_id == ids[0]
    assert store.claim("rec", "worker-b", 10, now, LEASE) == []
    assert delivery(store, ids[1], "rec")["waits_for"] == head.id
