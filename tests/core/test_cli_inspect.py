"""`connectors events` and `connectors deliveries`: filters, table and `--json` output."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from leadrelay.core.app.cli import main
from leadrelay.core.app.config import Config, load_config
from leadrelay.core.delivery.contract import Delivered, Permanent
from leadrelay.core.delivery.worker import Worker
from leadrelay.core.ingest.providers import Unreadable
from leadrelay.core.ingest.providers.base import ParseResult
from leadrelay.core.store.store import Store, utcnow
from tests.cli import CliRunner, Result
from tests.conftest import config_dict, fixture_body, gitleads_body, migrated_store, request_record
from tests.recording import RecordingConnector

CONNECTORS: dict[str, Any] = {
    "crm": {"type": "recording", "events": ["lead.created"]},
    "archive": {"type": "recording"},
    "paused": {"type": "recording", "sources": ["leadhub"]},
}


def write_config(path: Path, store_url: str, connectors: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config_dict(store_url, connectors=connectors)))
    return path


def run_cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def json_rows(result: Result) -> list[dict[str, Any]]:
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert isinstance(rows, list)
    return rows


def store_request(
    config: Config,
    store: Store,
    source: str,
    body: bytes,
    received_at: datetime,
    result: ParseResult | None = None,
) -> str:
    record = request_record(config, source, body, received_at=received_at, result=result)
    return store.submit_many([record])[0].event_id


@dataclass
class Populated:
    config_path: Path
    store: Store
    config: Config
    old: str  # gitleads lead.created, received 3 hours ago; crm delivered it
    rejected: str  # gitleads lead.created; crm dead-lettered it
    leadhub: str  # leadhub lead.created
    ignored: str
    quarantined: str


@pytest.fixture
def populated(tmp_path: Path, sqlite_url: str) -> Iterator[Populated]:
    config_path = write_config(tmp_path / "connectors.yaml", sqlite_url, CONNECTORS)
    store = migrated_store(sqlite_url)
    config = load_config(config_path)
    now = utcnow()
    old = store_request(config, store, "gitleads", gitleads_body(1), now - timedelta(hours=3))
    rejected = store_request(
        config, store, "gitleads", gitleads_body(2), now - timedelta(minutes=5)
    )
    leadhub = store_request(
        config, store, "leadhub", fixture_body("leadhub", "lead.created.json"), now
    )
    ignored = store_request(
        config, store, "gitleads", gitleads_body(3, event="repository.connected"), now
    )
    quarantined = store_request(
        config,
        store,
        "gitleads",
        b'{"event":"lead.created","data":"not an object"}',
        now,
        Unreadable("data: expected an object, got string", "lead.created"),
    )
    RecordingConnector.scripts["crm"] = [Delivered(), Permanent("400 Bad Request: invalid email")]
    worker = Worker(config, store, clock=lambda: utcnow() + timedelta(seconds=1))
    assert worker.run_once("crm") == 3
    yield Populated(config_path, store, config, old, rejected, leadhub, ignored, quarantined)
    store.close()


# -- events ---------------------------------------------------------------------------------


def test_events_json_lists_every_event_newest_first(populated: Populated) -> None:
    rows = json_rows(run_cli("events", "--config", str(populated.config_path), "--json"))
    assert {r["event_id"] for r in rows} == {
        populated.old,
        populated.rejected,
        populated.leadhub,
        populated.ignored,
        populated.quarantined,
    }
    assert rows[-1]["event_id"] == populated.old
    received = [datetime.fromisoformat(r["received_at"]) for r in rows]
    assert received == sorted(received, reverse=True)
    by_id = {r["event_id"]: r for r in rows}
    assert by_id[populated.old]["status"] == "accepted"
    assert by_id[populated.old]["type"] == "lead.created"
    assert by_id[populated.old]["lead_key"] == "email:dev1@example.com"
    assert by_id[populated.ignored]["status"] == "ignored"
    # Payloads and headers are not part of the listing.
    assert all("body" not in r and "headers" not in r for r in rows)


def test_events_filter_by_status(populated: Populated) -> None:
    config = str(populated.config_path)
    rows = json_rows(run_cli("events", "--config", config, "--status", "quarantined", "--json"))
    assert [(r["event_id"], r["reason"]) for r in rows] == [
        (populated.quarantined, "data: expected an object, got string")
    ]
    rows = json_rows(run_cli("events", "--config", config, "--status", "ignored", "--json"))
    assert [r["event_id"] for r in rows] == [populated.ignored]


def test_events_filter_by_source(populated: Populated) -> None:
    rows = json_rows(
        run_cli("events", "--config", str(populated.config_path), "--source", "leadhub", "--json")
    )
    assert [(r["event_id"], r["source"]) for r in rows] == [(populated.leadhub, "leadhub")]


def test_events_filter_by_time(populated: Populated) -> None:
    config = str(populated.config_path)
    older = json_rows(run_cli("events", "--config", config, "--until", "2h", "--json"))
    assert [r["event_id"] for r in older] == [populated.old]
    newer = json_rows(run_cli("events", "--config", config, "--since", "2h", "--json"))
    assert populated.old not in {r["event_id"] for r in newer}
    assert len(newer) == 4
    since_iso = (utcnow() - timedelta(minutes=10)).isoformat()
    until_iso = (utcnow() - timedelta(minutes=1)).isoformat()
    window = json_rows(
        run_cli("events", "--config", config, "--since", since_iso, "--until", until_iso, "--json")
    )
    assert [r["event_id"] for r in window] == [populated.rejected]


def test_events_limit(populated: Populated) -> None:
    rows = json_rows(
        run_cli("events", "--config", str(populated.config_path), "--limit", "2", "--json")
    )
    assert len(rows) == 2


def test_events_table(populated: Populated) -> None:
    result = run_cli("events", "--config", str(populated.config_path), "--status", "quarantined")
    assert result.exit_code == 0, result.output
    header, *lines = result.stdout.splitlines()
    assert header.split() == [
        "EVENT_ID",
        "RECEIVED_AT",
        "SOURCE",
        "STATUS",
        "TYPE",
        "PROVIDER_EVENT",
        "LEAD_KEY",
        "REASON",
        "IDENTITY_CONFLICT",
    ]
    assert len(lines) == 1
    assert lines[0].startswith(populated.quarantined)
    assert "quarantined" in lines[0]


def test_events_table_says_none_when_empty(populated: Populated) -> None:
    result = run_cli("events", "--config", str(populated.config_path), "--source", "leadshark")
    assert result.exit_code == 0
    assert result.stdout.strip() == "(none)"


def test_a_bad_time_is_a_usage_error(populated: Populated) -> None:
    result = run_cli("events", "--config", str(populated.config_path), "--since", "yesterday")
    assert result.exit_code == 2
    assert "'yesterday' is neither an ISO time nor a duration" in result.output


@pytest.mark.parametrize(
    "since", ["1000000d", "99999999999999999999d", "0001-01-01T00:00:00+01:00"]
)
def test_a_time_out_of_range_is_a_usage_error_not_a_traceback(
    populated: Populated, since: str
) -> None:
    result = run_cli("events", "--config", str(populated.config_path), "--since", since)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert repr(since) in result.output


# -- deliveries -----------------------------------------------------------------------------


def test_deliveries_json_has_one_row_per_event_and_connector(populated: Populated) -> None:
    rows = json_rows(run_cli("deliveries", "--config", str(populated.config_path), "--json"))
    pairs = sorted((r["event_id"], r["connector"], r["status"]) for r in rows)
    assert pairs == sorted(
        [
            (populated.old, "crm", "delivered"),
            (populated.old, "archive", "pending"),
            (populated.rejected, "crm", "dead"),
            (populated.rejected, "archive", "pending"),
            (populated.leadhub, "crm", "delivered"),
            (populated.leadhub, "archive", "pending"),
            (populated.leadhub, "paused", "pending"),
        ]
    )


def test_deliveries_filter_by_status_shows_the_error(populated: Populated) -> None:
    rows = json_rows(
        run_cli("deliveries", "--config", str(populated.config_path), "--status", "dead", "--json")
    )
    assert [(r["event_id"], r["connector"], r["attempts"], r["last_error"]) for r in rows] == [
        (populated.rejected, "crm", 1, "400 Bad Request: invalid email")
    ]


def test_deliveries_filter_by_connector_and_source(populated: Populated) -> None:
    config = str(populated.config_path)
    rows = json_rows(run_cli("deliveries", "--config", config, "--connector", "archive", "--json"))
    assert {r["connector"] for r in rows} == {"archive"}
    assert len(rows) == 3
    rows = json_rows(run_cli("deliveries", "--config", config, "--source", "leadhub", "--json"))
    assert sorted(r["connector"] for r in rows) == ["archive", "crm", "paused"]
    assert {r["event_id"] for r in rows} == {populated.leadhub}


def test_deliveries_of_one_event_with_its_attempts(populated: Populated) -> None:
    rows = json_rows(
        run_cli(
            "deliveries",
            "--config",
            str(populated.config_path),
            "--event",
            populated.rejected,
            "--connector",
            "crm",
            "--attempts",
            "--json",
        )
    )
    [row] = rows
    [attempt] = row["attempt_log"]
    assert (attempt["number"], attempt["outcome"], attempt["error"]) == (
        1,
        "permanent",
        "400 Bad Request: invalid email",
    )


def test_deliveries_filter_by_time(populated: Populated) -> None:
    config = str(populated.config_path)
    assert len(json_rows(run_cli("deliveries", "--config", config, "--since", "1h", "--json"))) == 7
    assert json_rows(run_cli("deliveries", "--config", config, "--until", "1h", "--json")) == []


def test_deliveries_say_why_pending_work_waits(populated: Populated, tmp_path: Path) -> None:
    paused_off = dict(CONNECTORS, paused={**CONNECTORS["paused"], "enabled": False})
    config = write_config(tmp_path / "paused.yaml", populated.config.store, paused_off)
    populated.store.set_connector_disabled("archive", "410 Gone: endpoint retired")

    rows = json_rows(
        run_cli("deliveries", "--config", str(config), "--status", "pending", "--json")
    )
    waiting = {(r["connector"], r["waiting"]) for r in rows}
    assert waiting == {
        ("archive", "connector disabled: 410 Gone: endpoint retired"),
        ("paused", "connector disabled in config"),
    }

    table = run_cli("deliveries", "--config", str(config), "--connector", "paused")
    assert table.exit_code == 0, table.output
    assert "WAITING" in table.stdout.splitlines()[0]
    assert "connector disabled in config" in table.stdout
