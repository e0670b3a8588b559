"""Pausing connectors: `enabled: false` in YAML, and a 410 Gone that disables at run time."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask, Response, request

from leadrelay.core.app.cli import main
from leadrelay.core.delivery.worker import Worker
from leadrelay.core.ingest.receiver import create_app
from leadrelay.core.store.store import DeliveryFilter, Store
from tests.cli import CliRunner
from tests.conftest import config_dict, gitleads_body, make_config, migrated_store, signed_headers
from tests.fakes.server import serve
from tests.process import write_config

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Destination:
    """A receiver that records webhook ids and answers with a status the test chooses."""

    def __init__(self) -> None:
        self.status = 200
        self.ids: list[str] = []
        self.app = Flask("destination")
        self.app.add_url_rule("/hook", "hook", self._hook, methods=["POST"])

    def _hook(self) -> Response:
        self.ids.append(request.headers["webhook-id"])
        return Response("gone" if self.status == 410 else "ok", status=self.status)


@pytest.fixture
def destination() -> Iterator[tuple[Destination, str]]:
    dest = Destination()
    with serve(dest.app) as running:
        yield dest, f"{running.base_url}/hook"


def _post(app: Flask, n: int) -> str:
    body = gitleads_body(n)
    answer = app.test_client().post(
        "/webhooks/gitleads", data=body, headers=signed_headers("gitleads", body)
    )
    assert answer.status_code == 200
    return answer.json["event_id"]


def _statuses(store: Store) -> dict[str, str]:
    return {
        row["event_id"]: row["status"]
        for row in store.list_deliveries(DeliveryFilter(connector="hook", limit=1000))
    }


def test_gone_disables_the_connector_until_enabled_again(
    store_url: str, destination: tuple[Destination, str], tmp_path: Path
) -> None:
    dest, url = destination
    options = {"hook": {"type": "webhook", "url": url, "secrets": [SECRET]}}
    config = make_config(store_url, connectors=options)
    store = migrated_store(store_url)
    app = create_app(config, store)
    worker = Worker(config, store)

    first = _post(app, 1)
    assert worker.drain() == 1
    assert dest.ids == [first]

    dest.status = 410
    gone = _post(app, 2)
    worker.drain()
    assert _statuses(store)[gone] == "dead"
    assert store.disabled_connectors()["hook"].startswith("410 Gone")

    # While disabled at run time: new deliveries are queued but wait; nothing is sent.
    dest.status = 200
    while_disabled = _post(app, 3)
    assert worker.drain() == 0
    assert _statuses(store)[while_disabled] == "pending"
    assert dest.ids == [first, gone]

    config_file = write_config(tmp_path / "c.yaml", config_dict(store_url, connectors=options))
    result = CliRunner().invoke(main, ["enable", "hook", "--config", str(config_file)])
    assert result.exit_code == 0, result.output
    assert store.disabled_connectors() == {}

    after = _post(app, 4)
    resumed = Worker(config, store)
    assert resumed.drain() == 2
    assert sorted(dest.ids) == sorted([first, gone, while_disabled, after])


def test_disabled_in_yaml_gets_no_new_deliveries_and_pending_ones_wait(
    sqlite_url: str, destination: tuple[Destination, str], tmp_path: Path
) -> None:
    dest, url = destination
    enabled = {"hook": {"type": "webhook", "url": url}}
    disabled = {"hook": {"type": "webhook", "url": url, "enabled": False}}
    store = migrated_store(sqlite_url)

    # Accepted while enabled, but no worker ran: the delivery is pending.
    pending = _post(create_app(make_config(sqlite_url, connectors=enabled), store), 1)

    paused = make_config(sqlite_url, connectors=disabled)
    not_routed = _post(create_app(paused, store), 2)
    assert Worker(paused, store).drain() == 0
    assert _statuses(store) == {pending: "pending"}
    assert dest.ids == []

    config_file = write_config(tmp_path / "c.yaml", config_dict(sqlite_url, connectors=disabled))
    shown = CliRunner().invoke(main, ["deliveries", "--config", str(config_file), "--json"])
    assert shown.exit_code == 0, shown.output
    assert '"waiting": "connector disabled in config"' in shown.output

    assert Worker(make_config(sqlite_url, connectors=enabled), store).drain() == 1
    assert dest.ids == [pending]
    assert not_routed not in _statuses(store)


def test_retryable_answer_is_retried_on_schedule_through_the_engine(
    sqlite_url: str, destination: tuple[Destination, str]
) -> None:
    dest, url = destination
    config = make_config(sqlite_url, connectors={"hook": {"type": "webhook", "url": url}})
    store = migrated_store(sqlite_url)
    event_id = _post(create_app(config, store), 1)
    clock = {"now": store_now()}
    worker = Worker(config, store, clock=lambda: clock["now"], rng=lambda: 0.0)

    dest.status = 503
    worker.drain()
    row = store.list_deliveries(DeliveryFilter(event_id=event_id))[0]
    assert row["status"] == "pending"
    assert row["attempts"] == 1
    assert row["next_attempt_at"] - clock["now"] == timedelta(seconds=30)  # backoff[0]

    dest.status = 200
    assert worker.drain() == 0  # not due yet
    clock["now"] += timedelta(seconds=31)
    assert worker.drain() == 1
    assert _statuses(store)[event_id] == "delivered"
    assert dest.ids == [event_id, event_id]


def store_now():
    from leadrelay.core.store.store import utcnow

    return utcnow()
