"""`connectors replay`: dead deliveries queued again, quarantined events re-parsed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask.testing import FlaskClient

from leadrelay.core.app.cli import main
from leadrelay.core.app.config import Config, load_config
from leadrelay.core.delivery.contract import Permanent, Skipped
from leadrelay.core.delivery.worker import Worker
from leadrelay.core.ingest.providers import Unreadable
from leadrelay.core.ingest.providers.gitleads import GitLeadsProvider
from leadrelay.core.ingest.receiver import create_app
from leadrelay.core.store.store import DeliveryFilter, EventFilter, Store, utcnow
from tests.cli import CliRunner, Result
from tests.conftest import config_dict, gitleads_body, migrated_store, signed_headers
from tests.recording import RecordingConnector

CONNECTORS: dict[str, Any] = {"crm": {"type": "recording"}, "archive": {"type": "recording"}}


def run_cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@dataclass
class Setup:
    config_path: Path
    config: Config
    store: Store
    client: FlaskClient

    def replay(self, *args: str) -> Result:
        return run_cli("replay", "--config", str(self.config_path), *args)

    def post(self, n: int) -> tuple[int, dict[str, Any]]:
        body = gitleads_body(n)
        response = self.client.post(
            "/webhooks/gitleads", data=body, headers=signed_headers("gitleads", body)
        )
        return response.status_code, response.get_json()

    def drain(self) -> int:
        clock = lambda: utcnow() + timedelta(seconds=1)  # noqa: E731 - due "now" at once
        return Worker(self.config, self.store, clock=clock).drain()

    def delivery(self, event_id: str, connector: str) -> dict[str, Any]:
        [row] = self.store.list_deliveries(DeliveryFilter(event_id=event_id, connector=connector))
        return row

    def sent_to(self, connector: str) -> list[str]:
        return [e.event_id for e in RecordingConnector.sent[connector]]


@pytest.fixture
def setup(tmp_path: Path, sqlite_url: str) -> Iterator[Setup]:
    config_path = tmp_path / "connectors.yaml"
    config_path.write_text(yaml.safe_dump(config_dict(sqlite_url, connectors=CONNECTORS)))
    config = load_config(config_path)
    store = migrated_store(sqlite_url)
    yield Setup(config_path, config, store, create_app(config, store).test_client())
    store.close()


def dead_everywhere(setup: Setup, n: int) -> str:
    """Receive event `n` and have both connectors refuse it for good."""
    status, answer = setup.post(n)
    assert (status, answer["status"]) == (200, "accepted")
    RecordingConnector.scripts["crm"] = [Permanent("400 Bad Request: INVALID_EMAIL")]
    RecordingConnector.scripts["archive"] = [Permanent("403 Forbidden")]
    assert setup.drain() == 2
    event_id = answer["event_id"]
    assert setup.delivery(event_id, "crm")["status"] == "dead"
    assert setup.delivery(event_id, "archive")["status"] == "dead"
    return event_id


# -- dead deliveries ------------------------------------------------------------------------


def test_replay_one_event_requeues_and_delivers_its_dead_deliveries(setup: Setup) -> None:
    event_id = dead_everywhere(setup, 1)

    result = setup.replay("--event", event_id)

    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == "2 deliveries queued again"
    row = setup.delivery(event_id, "crm")
    assert (row["status"], row["attempts"], row["finished_at"]) == ("pending", 0, None)
    assert setup.drain() == 2
    assert setup.delivery(event_id, "crm")["status"] == "delivered"
    assert setup.sent_to("crm") == [event_id]
    assert setup.sent_to("archive") == [event_id]
    # The history keeps the refusal before the replayed success.
    history = setup.store.attempts_of(setup.delivery(event_id, "crm")["id"])
    assert [(a["outcome"], a["error"]) for a in history] == [
        ("permanent", "400 Bad Request: INVALID_EMAIL"),
        ("delivered", None),
    ]


def test_replay_dead_of_one_connector_leaves_the_others_alone(setup: Setup) -> None:
    first = dead_everywhere(setup, 1)
    second = dead_everywhere(setup, 2)

    result = setup.replay("--dead", "--connector", "crm")

    assert result.exit_code == 0, result.output
    assert "2 deliveries queued again" in result.stdout
    assert setup.drain() == 2
    assert sorted(setup.sent_to("crm")) == sorted([first, second])
    assert setup.sent_to("archive") == []
    assert setup.delivery(first, "archive")["status"] == "dead"
    assert setup.delivery(second, "archive")["status"] == "dead"


def test_replay_leaves_delivered_alone_unless_asked(setup: Setup) -> None:
    status, answer = setup.post(1)
    assert status == 200
    event_id = answer["event_id"]
    assert setup.drain() == 2
    assert setup.replay("--event", event_id).stdout.strip() == "0 deliveries queued again"
    assert setup.drain() == 0

    result = setup.replay("--event", event_id, "--connector", "crm", "--include-delivered")
    assert result.stdout.strip() == "1 delivery queued again"
    assert setup.drain() == 1
    assert setup.sent_to("crm") == [event_id, event_id]
    assert setup.sent_to("archive") == [event_id]


def test_replay_dead_skips_skipped_but_a_time_range_takes_both(setup: Setup) -> None:
    _, dead_answer = setup.post(1)
    _, skipped_answer = setup.post(2)
    RecordingConnector.scripts["crm"] = [
        Permanent("400 Bad Request"),
        Skipped("lead.deleted is not sent to CRMs"),
    ]
    assert setup.drain() == 4
    dead, skipped = dead_answer["event_id"], skipped_answer["event_id"]
    assert setup.delivery(skipped, "crm")["status"] == "skipped"

    assert "1 delivery queued again" in setup.replay("--dead", "--connector", "crm").stdout
    assert setup.delivery(skipped, "crm")["status"] == "skipped"
    assert setup.drain() == 1

    assert "1 delivery queued again" in setup.replay("--since", "1h").stdout
    assert setup.drain() == 1
    assert sorted(setup.sent_to("crm")) == sorted([dead, skipped])


def test_replay_needs_a_selection(setup: Setup) -> None:
    result = setup.replay()
    assert result.exit_code == 2
    assert "say what to replay" in result.output


def test_replay_of_an_unknown_event_fails(setup: Setup) -> None:
    result = setup.replay("--event", "evt_does_not_exist")
    assert result.exit_code == 1
    assert "no event evt_does_not_exist" in result.output


# -- quarantined events ---------------------------------------------------------------------


def quarantine_on_receipt(setup: Setup, monkeypatch: pytest.MonkeyPatch, n: int) -> str:
    """Receive GitLeads event `n` with a provider parser that cannot read it (the "bug")."""
    with monkeypatch.context() as patch:
        patch.setattr(
            GitLeadsProvider,
            "parse",
            lambda _self, payload, **_kwargs: Unreadable(
                "data.name: expected a string", "lead.created"
            ),
        )
        status, answer = setup.post(n)
    assert (status, answer["status"]) == (202, "quarantined")
    assert setup.store.list_deliveries(DeliveryFilter()) == []
    return answer["event_id"]


def test_a_quarantined_event_is_parsed_again_with_the_fixed_code(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    quarantined = quarantine_on_receipt(setup, monkeypatch, 1)
    received_at = setup.store.get_event(quarantined)["received_at"]

    result = setup.replay("--event", quarantined)

    assert result.exit_code == 0, result.output
    [accepted] = setup.store.list_events(EventFilter(status="accepted"))
    assert f"{quarantined}: now accepted as {accepted['event_id']} (2 deliveries)" in result.stdout
    old = setup.store.get_event(quarantined)
    assert (old["status"], old["reason"]) == ("replayed", f"re-parsed as {accepted['event_id']}")
    assert accepted["received_at"] == received_at
    assert accepted["lead_key"] == "email:dev1@example.com"
    assert setup.drain() == 2
    assert setup.sent_to("crm") == [accepted["event_id"]]
    [lead_event] = RecordingConnector.sent["archive"]
    assert lead_event.lead.email == "dev1@example.com"
    assert lead_event.received_at == received_at

    # The same quarantined id again: nothing left to re-parse, nothing sent twice.
    again = setup.replay("--event", quarantined)
    assert again.exit_code == 0, again.output
    assert setup.drain() == 0
    assert setup.sent_to("crm") == [accepted["event_id"]]


def test_a_quarantined_event_the_code_still_cannot_read_stays_quarantined(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    quarantined = quarantine_on_receipt(setup, monkeypatch, 1)
    monkeypatch.setattr(
        GitLeadsProvider,
        "parse",
        lambda _self, payload, **_kwargs: Unreadable("data.name: still unexpected", "lead.created"),
    )
    result = setup.replay("--event", quarantined)
    assert result.exit_code == 0, result.output
    assert f"{quarantined}: still quarantined: data.name: still unexpected" in result.stdout
    assert setup.store.get_event(quarantined)["status"] == "quarantined"
    assert setup.store.list_deliveries(DeliveryFilter()) == []


def test_a_quarantined_event_the_provider_since_resent_is_not_delivered_twice(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    quarantined = quarantine_on_receipt(setup, monkeypatch, 1)
    # The provider retried the same body after the fix was deployed: accepted normally.
    status, answer = setup.post(1)
    assert (status, answer["status"]) == (200, "accepted")
    assert setup.drain() == 2

    result = setup.replay("--event", quarantined)

    assert f"{quarantined}: same event as {answer['event_id']}, already stored" in result.stdout
    assert setup.store.get_event(quarantined)["status"] == "replayed"
    assert setup.drain() == 0
    assert setup.sent_to("crm") == [answer["event_id"]]


def test_a_time_range_replay_reparses_the_quarantined_events_in_it(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = quarantine_on_receipt(setup, monkeypatch, 1)
    second = quarantine_on_receipt(setup, monkeypatch, 2)

    result = setup.replay("--since", "1h")

    assert result.exit_code == 0, result.output
    assert f"{first}: now accepted" in result.stdout
    assert f"{second}: now accepted" in result.stdout
    assert setup.store.list_events(EventFilter(status="quarantined")) == []
    assert setup.drain() == 4
    assert len(set(setup.sent_to("crm"))) == 2


def test_replayed_payload_bytes_are_the_ones_received(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    quarantined = quarantine_on_receipt(setup, monkeypatch, 7)
    setup.replay("--event", quarantined)
    assert setup.drain() == 2
    [lead_event] = RecordingConnector.sent["crm"]
    assert lead_event.raw == json.loads(gitleads_body(7))
