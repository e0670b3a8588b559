"""What a real request leaves in the store: distinct ids stay distinct events, and no
signature header is ever kept with an event."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from leadrelay.core.ingest.receiver import create_app, storable_key
from leadrelay.core.store.store import EventFilter, Store
from leadrelay.core.store.tables import dedup_keys
from tests.conftest import FIXTURES, make_config, signed_headers


@pytest.fixture
def client(store_url: str, store: Store) -> FlaskClient:
    return create_app(make_config(store_url), store).test_client()


def post(client: FlaskClient, provider: str, body: bytes, **extra: str) -> dict[str, Any]:
    response = client.post(
        f"/webhooks/{provider}", data=body, headers={**signed_headers(provider, body), **extra}
    )
    assert response.status_code in (200, 202), response.get_data(as_text=True)
    answer: dict[str, Any] = response.get_json()
    return answer


def gitproductivity_body(event_id: str) -> bytes:
    """A GitProductivity event carrying the provider's own event id `event_id`."""
    payload = json.loads((FIXTURES / "gitproductivity" / "developer.added.json").read_text())
    payload["id"] = event_id
    return json.dumps(payload).encode()


# -- provider ids the dedup column cannot hold as they are ----------------------------------

LONG_PREFIX = "evt_" + "x" * 300
DISTINCT_IDS = {
    "longer than the column, alike for its first 255 characters": (
        LONG_PREFIX + "-first",
        LONG_PREFIX + "-second",
    ),
    "a NUL no database text holds, else equal to another id": ("evt_1\x00", "evt_1"),
    "NULs in different places": ("evt\x00_12", "evt_1\x002"),
}


@pytest.mark.parametrize("ids", DISTINCT_IDS.values(), ids=DISTINCT_IDS.keys())
def test_two_distinct_provider_ids_stay_two_events(
    client: FlaskClient, store: Store, ids: tuple[str, str]
) -> None:
    answers = [post(client, "gitproductivity", gitproductivity_body(i)) for i in ids]

    assert [a["status"] for a in answers] == ["accepted", "accepted"]
    assert answers[0]["event_id"] != answers[1]["event_id"]
    stored = store.list_events(EventFilter(source="gitproductivity"))
    assert {e["event_id"] for e in stored} == {a["event_id"] for a in answers}
    with store.engine.connect() as conn:
        keys = set(conn.execute(select(dedup_keys.c.idempotency_key)).scalars())
    assert keys == {storable_key(i) for i in ids}
    # A retry of either is still recognised.
    again = post(client, "gitproductivity", gitproductivity_body(ids[1]))
    assert (again["status"], again["event_id"]) == ("duplicate", answers[1]["event_id"])


def test_storable_keys_are_hashed_not_cut() -> None:
    long_a, long_b = DISTINCT_IDS[next(iter(DISTINCT_IDS))]
    assert storable_key(long_a) != storable_key(long_b)
    assert all(len(storable_key(k)) <= 255 for k in (long_a, long_b))
    assert storable_key("evt_1\x00") not in ("evt_1", "evt_1\x00")
    assert storable_key("evt_1") == "evt_1"  # an ordinary id is kept as sent


# -- signature headers ---------------------------------------------------------------------

SIGNATURE_LIKE = {
    "X-Signature": "sig-plain",
    "X-Hub-Signature-256": "sha256=sig-hub",
    "x-lower-signature": "sig-lower",
    "X-UPPER-SIGNATURE-V2": "sig-upper",
    "X-Leadshark-Signature": "sig-leadshark",
    "X-Signatures": "sig-plural",
}


def first_fixture(provider: str) -> bytes:
    path = sorted((FIXTURES / provider).glob("*.json"))[0]
    return json.dumps(json.loads(path.read_text()), separators=(",", ":")).encode()


@pytest.mark.parametrize("provider", sorted(p.name for p in FIXTURES.iterdir() if p.is_dir()))
def test_no_header_named_like_a_signature_is_stored(
    client: FlaskClient, store: Store, provider: str
) -> None:
    body = first_fixture(provider)
    answer = post(client, provider, body, **SIGNATURE_LIKE, **{"X-Request-Id": "req-1"})
    assert answer["status"] != "duplicate"

    stored = store.get_event(answer["event_id"])
    assert stored is not None
    headers = json.loads(stored["headers"])
    assert headers.get("X-Request-Id") == "req-1"  # headers are kept, just not these
    assert [name for name in headers if "signature" in name.lower()] == []
    # Nor the provider's own signature, under any name.
    sent = signed_headers(provider, body)
    signatures = [v for k, v in sent.items() if "signature" in k.lower()]
    assert signatures
    for value in [*signatures, *SIGNATURE_LIKE.values()]:
        assert value not in stored["headers"]
