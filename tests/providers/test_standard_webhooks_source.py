"""`provider: standard-webhooks` against the reference library (`standardwebhooks`) both
ways, the spec suite's known-answer vector, the timestamp window, and dedup on webhook-id."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from leadrelay.core.app.config import ConfigError, parse_config
from leadrelay.core.ingest.providers import Parsed, Provider, SignatureError
from leadrelay.core.ingest.providers.mapping import MappedProvider
from leadrelay.core.ingest.receiver import create_app
from leadrelay.core.store.store import EventFilter, Store

# The known-answer vector of the reference library's test suite (as in
# tests/connectors/test_standard_webhooks.py, which checks the outgoing signer).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

SECRET = "whsec_" + base64.b64encode(b"signups-secret-of-32-random-bytes").decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"the-secret-before-the-rotation!!").decode()
BODY = json.dumps(
    {
        "type": "user.created",
        "timestamp": "2026-05-01T12:00:00Z",
        "data": {
            "id": "user_1",
            "first_name": "Ada",
            "last_name": "Lovelace",
            "email_addresses": [{"email_address": "ada@example.com"}],
        },
    }
).encode()


def source_options(**overrides: Any) -> dict[str, Any]:
    return {
        "provider": "standard-webhooks",
        "secrets": [SECRET],
        "types": {"user.created": "lead.created", "user.updated": "lead.updated"},
        "lead": {
            "email": "data.email_addresses[0].email_address",
            "provider_lead_id": "data.id",
            "first_name": "data.first_name",
            "last_name": "data.last_name",
        },
        **overrides,
    }


def sw_provider(**overrides: Any) -> MappedProvider:
    config = parse_config({"sources": {"signups": source_options(**overrides)}}, env={})
    provider = config.sources["signups"].adapter
    assert isinstance(provider, MappedProvider)
    return provider


def library_headers(
    secret: str, body: bytes, *, msg_id: str = "msg_1", at: float | None = None
) -> dict[str, str]:
    timestamp = datetime.fromtimestamp(time.time() if at is None else at, tz=UTC)
    signature = Webhook(secret).sign(msg_id, timestamp, body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signature,
    }


def refusal(provider: Provider, headers: dict[str, str], body: bytes = BODY) -> str:
    with pytest.raises(SignatureError) as info:
        provider.verify(headers, body, [SECRET])
    assert SECRET not in info.value.message
    return info.value.reason


def test_the_spec_known_answer_vector_verifies() -> None:
    provider = sw_provider(secrets=[SPEC_SECRET])
    provider.clock = lambda: SPEC_TIMESTAMP + 1
    headers = {
        "webhook-id": SPEC_MSG_ID,
        "webhook-timestamp": str(SPEC_TIMESTAMP),
        "webhook-signature": SPEC_SIGNATURE,
    }
    assert provider.verify(headers, SPEC_BODY, [SPEC_SECRET]) is None
    with pytest.raises(SignatureError) as info:
        provider.verify(headers, SPEC_BODY.replace(b"2432", b"2433"), [SPEC_SECRET])
    assert info.value.reason == "mismatch"


def test_what_the_adapter_signs_is_what_the_library_signs() -> None:
    provider = sw_provider(secrets=[SPEC_SECRET])
    provider.clock = lambda: SPEC_TIMESTAMP
    headers = provider.sign(SPEC_BODY, SPEC_SECRET)
    assert headers["webhook-timestamp"] == str(SPEC_TIMESTAMP)
    expected = Webhook(SPEC_SECRET).sign(
        headers["webhook-id"], datetime.fromtimestamp(SPEC_TIMESTAMP, tz=UTC), SPEC_BODY.decode()
    )
    assert headers["webhook-signature"] == expected


def test_signed_by_the_library_verified_by_leadrelay() -> None:
    provider = sw_provider()
    assert provider.verify(library_headers(SECRET, BODY), BODY, [SECRET]) is None


def test_signed_by_leadrelay_verified_by_the_library() -> None:
    headers = sw_provider().sign(BODY, SECRET)
    assert Webhook(SECRET).verify(BODY, headers) == json.loads(BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(OLD_SECRET).verify(BODY, headers)


def test_secrets_without_the_whsec_prefix_are_read_as_the_library_reads_them() -> None:
    bare = SECRET.removeprefix("whsec_")
    provider = sw_provider(secrets=[bare])
    assert provider.verify(library_headers(bare, BODY), BODY, [bare]) is None
    assert provider.verify(library_headers(SECRET, BODY), BODY, [bare]) is None


def test_rotation_several_secrets_and_several_signatures() -> None:
    provider = sw_provider(secrets=[OLD_SECRET, SECRET])
    for secret in (OLD_SECRET, SECRET):
        assert provider.verify(library_headers(secret, BODY), BODY, [OLD_SECRET, SECRET]) is None
    # A sender mid-rotation sends one signature per secret; a receiver knowing one accepts.
    old = library_headers(OLD_SECRET, BODY, at=1_900_000_000)
    new = library_headers(SECRET, BODY, at=1_900_000_000)
    both = {**new, "webhook-signature": f"{old['webhook-signature']} {new['webhook-signature']}"}
    provider.clock = lambda: 1_900_000_000
    assert provider.verify(both, BODY, [SECRET]) is None
    assert provider.verify(both, BODY, [OLD_SECRET]) is None
    with pytest.raises(SignatureError):
        provider.verify(both, BODY, ["whsec_" + base64.b64encode(b"x" * 32).decode()])


@pytest.mark.parametrize(("offset", "reason"), [(-400, "stale"), (400, "future")])
def test_stale_and_future_timestamps_are_refused(offset: int, reason: str) -> None:
    provider = sw_provider()
    headers = library_headers(SECRET, BODY, at=time.time() + offset)
    assert refusal(provider, headers) == reason
    # The reference library refuses the same request.
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(BODY, headers)


def test_the_tolerance_is_configurable() -> None:
    provider = sw_provider(tolerance="10m")
    assert (
        provider.verify(library_headers(SECRET, BODY, at=time.time() - 400), BODY, [SECRET]) is None
    )
    assert refusal(provider, library_headers(SECRET, BODY, at=time.time() - 700)) == "stale"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"webhook-id": None}, "missing"),
        ({"webhook-timestamp": None}, "missing"),
        ({"webhook-signature": None}, "missing"),
        ({"webhook-timestamp": "soon"}, "malformed"),
        ({"webhook-signature": "v1a,abc"}, "malformed"),  # only the asymmetric version
        ({"webhook-signature": "v1,not base64!"}, "malformed"),
        ({"webhook-id": "msg_other"}, "mismatch"),  # the id is signed
    ],
)
def test_refusals_name_their_reason(change: dict[str, str | None], reason: str) -> None:
    headers: dict[str, Any] = {**library_headers(SECRET, BODY), **change}
    assert refusal(sw_provider(), {k: v for k, v in headers.items() if v is not None}) == reason


def test_a_bad_secret_is_a_config_error_that_does_not_show_it() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(
            {"sources": {"signups": source_options(secrets=["whsec_%%%"])}}, "c.yaml", env={}
        )
    assert info.value.key_path == "sources.signups.secrets"
    assert "%%%" not in str(info.value)


def test_event_and_occurred_at_default_to_the_spec_payload_keys() -> None:
    provider = sw_provider()
    headers = library_headers(SECRET, BODY, msg_id="msg_42")
    result = provider.parse(
        json.loads(BODY), source="signups", received_at=datetime.now(UTC), headers=headers
    )
    assert isinstance(result, Parsed)
    event = result.event
    assert (event.provider_event, event.type) == ("user.created", "lead.created")
    assert event.idempotency_key == "msg_42"
    assert event.occurred_at == datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    assert (event.lead.first_name, event.lead.last_name) == ("Ada", "Lovelace")
    assert event.lead.full_name == "Ada Lovelace"


# -- through the receiver -------------------------------------------------------------------


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[FlaskClient, Store]]:
    store = Store(f"sqlite:///{tmp_path / 'leadrelay.db'}")
    store.migrate()
    config = parse_config({"store": store.url, "sources": {"signups": source_options()}}, env={})
    yield create_app(config, store).test_client(), store
    store.close()


def test_a_duplicate_webhook_id_is_answered_duplicate(client: tuple[FlaskClient, Store]) -> None:
    test_client, store = client
    first = test_client.post("/webhooks/signups", data=BODY, headers=library_headers(SECRET, BODY))
    # The sender's retry: same id, a later attempt time, signed again.
    retry_at = time.time() + 30
    retry = test_client.post(
        "/webhooks/signups", data=BODY, headers=library_headers(SECRET, BODY, at=retry_at)
    )
    other = test_client.post(
        "/webhooks/signups", data=BODY, headers=library_headers(SECRET, BODY, msg_id="msg_2")
    )
    assert first.get_json()["status"] == "accepted"
    assert retry.get_json() == {"status": "duplicate", "event_id": first.get_json()["event_id"]}
    assert other.get_json()["status"] == "accepted"
    assert len(store.list_events(EventFilter())) == 2


def test_the_webhook_id_is_kept_for_replays(client: tuple[FlaskClient, Store]) -> None:
    test_client, store = client
    body = json.dumps({"type": "user.created", "data": {"email_addresses": "no list"}}).encode()
    answer = test_client.post(
        "/webhooks/signups", data=body, headers=library_headers(SECRET, body, msg_id="msg_q")
    ).get_json()
    assert answer["status"] == "quarantined"
    stored = store.get_event(answer["event_id"])
    headers = json.loads(stored["headers"])
    assert headers["Webhook-Id"] == "msg_q"
    assert not any("signature" in name.lower() for name in headers)
