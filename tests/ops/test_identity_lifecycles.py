"""Issue 22 end to end: three people, six events, through a real `connectors serve`.

Each person's events keep the key of their first event in the CSV, and the stateful
HubSpot fake (which creates a contact when an upsert matches none, as HubSpot does)
ends with one contact per person, with and without `key_property`.
"""

from __future__ import annotations

import csv
import time
from collections import defaultdict
from pathlib import Path

import pytest
import requests

from leadrelay.core.store.store import DeliveryFilter, Store
from tests.conftest import SECRETS, signed_headers
from tests.fakes.hubspot import ALL_SCOPES, FakeHubSpot
from tests.fakes.server import serve
from tests.lifecycles import LIFECYCLES, PERSON_KEYS
from tests.process import ServeProcess, write_config

TOKEN = "test-token"
DELIVERED_WITHIN_S = 30


def wait_until_settled(store: Store, deliveries: int) -> list[dict[str, object]]:
    """The deliveries, once `deliveries` of them exist and none is pending."""
    deadline = time.monotonic() + DELIVERED_WITHIN_S
    while time.monotonic() < deadline:
        rows = store.list_deliveries(DeliveryFilter(limit=1000))
        if len(rows) == deliveries and all(row["status"] != "pending" for row in rows):
            return rows
        time.sleep(0.05)
    raise AssertionError(f"deliveries not settled within {DELIVERED_WITHIN_S}s: {rows}")


@pytest.mark.parametrize("key_property", [None, "leadrelay_key"])
def test_three_people_are_three_keys_and_three_contacts(
    tmp_path: Path, key_property: str | None
) -> None:
    fake = FakeHubSpot()
    fake.reset(tokens={TOKEN: ALL_SCOPES}, unique_properties=["leadrelay_key"])
    db = tmp_path / "leadrelay.db"
    csv_path = tmp_path / "leads.csv"
    with serve(fake.app) as hub:
        hubspot = {"type": "hubspot", "access_token": TOKEN, "base_url": hub.base_url}
        if key_property:
            hubspot["key_property"] = key_property
        config = write_config(
            tmp_path / "connectors.yaml",
            {
                "store": f"sqlite:///{db}",
                "sources": {
                    name: {"provider": name, "secrets": [SECRETS[name]]} for name in LIFECYCLES
                },
                "connectors": {
                    "csv": {"type": "csv", "path": str(csv_path)},
                    "hubspot": hubspot,
                },
                "delivery": {"poll_interval": "100ms"},
            },
        )
        store = Store(f"sqlite:///{db}")
        try:
            with ServeProcess(config) as server:
                sent = 0
                for bodies in LIFECYCLES.values():
                    for source, body in bodies:
                        answer = requests.post(
                            server.url(f"/webhooks/{source}"),
                            data=body,
                            headers=signed_headers(source, body),
                            timeout=10,
                        )
                        assert answer.json()["status"] == "accepted", answer.text
                        sent += 1
                        # A person's events come hours apart: each is delivered first.
                        outcomes = wait_until_settled(store, 2 * sent)
        finally:
            store.close()

    assert all(row["status"] in ("delivered", "skipped") for row in outcomes), outcomes
    with csv_path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    keys_by_source: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        keys_by_source[row["source"]].append(row["lead_key"])
    assert keys_by_source == {person: [key, key] for person, key in PERSON_KEYS.items()}

    contacts = [c["properties"] for c in fake.contacts.values()]
    assert sorted(c.get("email", "") for c in contacts) == [
        "ed.new@example.com",
        "gl31@example.com",
        "vera@example.com",
    ]
    if key_property:
        assert sorted(c[key_property] for c in contacts) == sorted(PERSON_KEYS.values())
