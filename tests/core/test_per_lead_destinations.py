"""Per-lead order against stateful destinations: what the CRM ends up holding.

Several delivery workers (each with its own store, as separate processes have) run
against the fake HubSpot while it fails requests, and the fake Salesforce while a request
hangs; events of one lead keep coming while earlier ones are in flight or retrying.
"""

from __future__ import annotations

import csv
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from leadrelay.core.app.config import Config
from leadrelay.core.delivery.worker import Worker
from leadrelay.core.store.store import DeliveryFilter, Store, utcnow
from tests.conftest import make_config, migrated_store
from tests.fakes.hubspot import READ_SCOPE, WRITE_SCOPE, FakeHubSpot
from tests.fakes.salesforce import FakeSalesforce
from tests.fakes.server import RunningServer, serve
from tests.per_lead import delivery, statuses, store_event, version, wait_settled

TOKEN = "pat-na1-per-lead"
SF_USER, SF_PASSWORD, SF_TOKEN = "integration@acme.example", "pw-SECRET", "tok-SECRET"
LEADS = 12
VERSIONS = 5
SETTLE_S = 90.0
WAIT_S = 20.0


@pytest.fixture
def hubspot() -> Iterator[tuple[FakeHubSpot, RunningServer]]:
    fake = FakeHubSpot()
    fake.reset(tokens={TOKEN: {READ_SCOPE, WRITE_SCOPE}})
    with serve(fake.app) as running:
        yield fake, running
    fake.close()


@pytest.fixture
def salesforce() -> Iterator[tuple[FakeSalesforce, RunningServer]]:
    fake = FakeSalesforce()
    fake.add_user(SF_USER, SF_PASSWORD, SF_TOKEN)
    with serve(fake.app, https=True) as running:
        try:
            yield fake, running
        finally:
            fake.release()


def hubspot_options(server: RunningServer, **overrides: Any) -> dict[str, Any]:
    return {
        "type": "hubspot",
        "access_token": TOKEN,
        "base_url": server.base_url,
        "timeout": 0.5,
        **overrides,
    }


def salesforce_options(server: RunningServer) -> dict[str, Any]:
    # No external_id_field: the Lead is found by Email, then updated or created.
    return {
        "type": "salesforce",
        "username": SF_USER,
        "password": SF_PASSWORD,
        "security_token": SF_TOKEN,
        "login_url": server.base_url,
        "verify": server.ca_file,
        "timeout": 10,
    }


def running_workers(config: Config, url: str, count: int) -> list[tuple[Worker, Store]]:
    started = []
    for n in range(count):
        store = Store(url)
        worker = Worker(config, store, worker_id=f"worker-{n}")
        worker.start()
        started.append((worker, store))
    return started


def stop_all(workers: list[tuple[Worker, Store]]) -> None:
    for worker, store in workers:
        worker.stop(timeout=WAIT_S)
        store.close()


def test_every_contact_ends_at_its_newest_version_through_failures(
    store_url: str, hubspot: tuple[FakeHubSpot, RunningServer]
) -> None:
    """N leads x M successive updates, 2 workers on SQLite and 4 on PostgreSQL, a quarter
    of HubSpot's answers 503 and a few requests outlasting the client's timeout."""
    fake, server = hubspot
    fake.reset(tokens={TOKEN: {READ_SCOPE, WRITE_SCOPE}}, fail_every=4)
    # Answered after the client gave up (0.5 s), and applied then; the retry comes after
    # the backoff (1 s), once this one has landed.
    fake.slow_next(3, delay_ms=800)
    config = make_config(
        store_url,
        connectors={"crm": hubspot_options(server)},
        delivery={
            "lease": "3s",
            "backoff": ["1s"],
            "jitter": 0,
            "max_attempts": 30,
            "poll_interval": "100ms",
        },
    )
    store = migrated_store(store_url)
    workers = running_workers(config, store_url, 2 if store_url.startswith("sqlite") else 4)
    try:
        # Versions arrive one round after the other while earlier ones are in flight.
        for number in range(VERSIONS):
            for lead in range(LEADS):
                store_event(store, version(lead, number), "crm")
        counts = wait_settled(store, LEADS * VERSIONS, SETTLE_S)
    finally:
        stop_all(workers)
    assert counts == {"delivered": LEADS * VERSIONS}
    assert fake.overlaps == []
    for lead in range(LEADS):
        contact = fake.contact_by("email", f"lead{lead}@example.com")
        assert contact is not None
        assert contact["properties"]["jobtitle"] == f"v{VERSIONS - 1}", lead
    # The failures did happen: some tries were retried.
    rows = store.list_deliveries(DeliveryFilter(limit=LEADS * VERSIONS))
    outcomes = {a["outcome"] for row in rows for a in store.attempts_of(row["id"])}
    assert "retryable" in outcomes
    store.close()


def test_a_new_lead_created_then_updated_by_two_workers_is_one_salesforce_lead(
    sqlite_url: str, salesforce: tuple[FakeSalesforce, RunningServer]
) -> None:
    fake, server = salesforce
    config = make_config(
        sqlite_url,
        connectors={"crm": salesforce_options(server)},
        delivery={"lease": "30s", "backoff": ["1s"], "jitter": 0},
    )
    store = migrated_store(sqlite_url)
    first, second = (
        Worker(config, store, worker_id="first"),
        Worker(config, Store(sqlite_url), worker_id="second"),
    )
    created = store_event(store, version(1, 0), "crm")
    fake.stall_next()  # the create's lookup hangs at Salesforce
    sending = threading.Thread(target=first.run_once, args=("crm",))
    sending.start()
    try:
        deadline = time.monotonic() + WAIT_S
        while not fake.data_calls("GET") and time.monotonic() < deadline:
            time.sleep(0.02)  # polling the fake: the first worker is in another thread
        assert fake.data_calls("GET"), "the first worker never reached Salesforce"
        updated = store_event(store, version(1, 1), "crm")
        # The update waits behind the create the first worker holds.
        assert second.run_once("crm") == 0
    finally:
        fake.release()
        sending.join(WAIT_S)
    assert second.drain("crm") == 1

    assert delivery(store, created, "crm")["status"] == "delivered"
    assert delivery(store, updated, "crm")["status"] == "delivered"
    [lead] = fake.find("Email", "lead1@example.com")
    assert lead["Title"] == "v1"
    first.store.close()
    second.store.close()


def test_a_late_retry_of_an_older_version_is_skipped_by_crms_and_logged_by_csv(
    sqlite_url: str,
    tmp_path: Path,
    hubspot: tuple[FakeHubSpot, RunningServer],
    salesforce: tuple[FakeSalesforce, RunningServer],
) -> None:
    (hubspot_fake, hubspot_server), (sf_fake, sf_server) = hubspot, salesforce
    csv_path = tmp_path / "leads.csv"
    config = make_config(
        sqlite_url,
        connectors={
            "hubspot": hubspot_options(hubspot_server, timeout=5),
            "salesforce": salesforce_options(sf_server),
            "archive": {"type": "csv", "path": str(csv_path)},
        },
    )
    store = migrated_store(sqlite_url)
    worker = Worker(config, store, clock=lambda: utcnow() + timedelta(seconds=1))
    names = ("hubspot", "salesforce", "archive")
    newer = store_event(store, version(1, 2), *names)
    assert worker.drain() == 3
    older = store_event(store, version(1, 1), *names)
    assert worker.drain() == 3

    for crm in ("hubspot", "salesforce"):
        row = delivery(store, older, crm)
        assert (row["status"], row["last_error"]) == ("skipped", f"superseded by {newer}")
    assert delivery(store, older, "archive")["status"] == "delivered"
    contact = hubspot_fake.contact_by("email", "lead1@example.com")
    assert contact is not None
    assert contact["properties"]["jobtitle"] == "v2"
    [lead] = sf_fake.find("Email", "lead1@example.com")
    assert lead["Title"] == "v2"
    with csv_path.open(newline="", encoding="utf-8") as handle:
        assert [row["event_id"] for row in csv.DictReader(handle)] == [newer, older]
    assert statuses(store) == {"delivered": 4, "skipped": 2}
    store.close()


def test_queued_events_of_one_lead_go_as_one_write_and_each_records_it(
    sqlite_url: str, hubspot: tuple[FakeHubSpot, RunningServer]
) -> None:
    fake, server = hubspot
    config = make_config(sqlite_url, connectors={"hubspot": hubspot_options(server, timeout=5)})
    store = migrated_store(sqlite_url)
    worker = Worker(config, store, clock=lambda: utcnow() + timedelta(seconds=1))
    queued = [store_event(store, version(7, n), "hubspot") for n in range(3)]

    assert worker.drain() == 3

    [upsert] = [r for r in fake.requests if r.path.endswith("/batch/upsert")]
    assert len(upsert.body["inputs"]) == 1  # one write, later values winning
    assert fake.contact_by("email", "lead7@example.com")["properties"]["jobtitle"] == "v2"
    answers = []
    for event_id in queued:
        row = delivery(store, event_id, "hubspot")
        assert row["status"] == "delivered"
        [attempt] = store.attempts_of(row["id"])
        answers.append(attempt["error"])
        # The attempt keeps the request built for its event, without the token.
        assert "/crm/v3/objects/contacts/batch/upsert" in attempt["request"]
        assert "lead7@example.com" in attempt["request"]
        assert TOKEN not in attempt["request"]
    # Each event's attempt names the same write: the contact that carried all three.
    assert len(set(answers)) == 1
    assert "contact" in answers[0]
    store.close()
