"""The store from the CLI, through the real `connectors` executable.

- Relative paths in a config resolve against the config file's folder, wherever the
  command runs; read-only commands never create a database.
- `validate` checks the store: reachable, schema state, unsupported schemes named.
- `replay --connector NAME --backfill` creates the deliveries a later connector missed;
  typos (unknown connector, source, type, event id) exit non-zero and say why.
- `deliveries --attempts` / `--id N`, `enable` telling what it did.
"""

from __future__ import annotations

import json
import os
import stat
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from leadrelay.core.app.config import load_config
from leadrelay.core.delivery.worker import Worker
from leadrelay.core.store.store import DeliveryFilter, Store, utcnow
from tests.conftest import SECRETS, fixture_body, gitleads_body, request_record
from tests.process import connectors_command, run_connectors, write_config

SOURCES = {name: {"provider": name, "secrets": [secret]} for name, secret in SECRETS.items()}


def config_data(**connectors: dict[str, Any]) -> dict[str, Any]:
    return {
        "store": "sqlite:///data/relay.db",  # relative: to the config file's folder
        "sources": SOURCES,
        "connectors": connectors
        or {"archive": {"type": "csv", "path": "data/leads.csv", "events": ["lead.created"]}},
        "delivery": {"max_attempts": 2, "backoff": ["1s"], "jitter": 0},
    }


def run_in(cwd: Path, *args: str) -> Any:
    import subprocess

    return subprocess.run(
        [*connectors_command(), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
    )


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A config folder with a data/ subfolder; the config itself says nothing absolute."""
    folder = tmp_path / "site"
    (folder / "data").mkdir(parents=True)
    write_config(folder / "connectors.yaml", config_data())
    return folder


def ingest(config_path: Path, bodies: list[tuple[str, bytes]], minutes_ago: int = 0) -> list[str]:
    config = load_config(config_path)
    store = Store(config.store)
    try:
        received = utcnow() - timedelta(minutes=minutes_ago)
        return [
            store.submit_many([request_record(config, source, body, received_at=received)])[
                0
            ].event_id
            for source, body in bodies
        ]
    finally:
        store.close()


# -- paths and read-only commands ---------------------------------------------------------


def test_relative_paths_follow_the_config_file_not_the_current_directory(
    site: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    config = str(site / "connectors.yaml")

    assert run_in(elsewhere, "migrate", "--config", config).returncode == 0
    [event_id] = ingest(site / "connectors.yaml", [("gitleads", gitleads_body(1))])
    listed = run_in(elsewhere, "events", "--config", config, "--json")

    assert (site / "data" / "relay.db").exists()
    assert listed.returncode == 0, listed.stderr
    assert [e["event_id"] for e in json.loads(listed.stdout)] == [event_id]
    assert list(elsewhere.iterdir()) == []  # nothing created where the command ran


@pytest.mark.parametrize("command", ["events", "deliveries", "validate", "replay"])
def test_read_only_commands_never_create_a_database(site: Path, command: str) -> None:
    extra = ["--dead"] if command == "replay" else []

    result = run_connectors([command, "--config", str(site / "connectors.yaml"), *extra])

    assert result.returncode == 1
    message = result.stdout + result.stderr
    assert "connectors migrate" in message
    assert "no database" in message
    assert "Traceback" not in message
    assert list((site / "data").iterdir()) == []


def test_sqlite_database_is_created_owner_only(site: Path) -> None:
    assert run_connectors(["migrate", "--config", str(site / "connectors.yaml")]).returncode == 0

    mode = stat.S_IMODE((site / "data" / "relay.db").stat().st_mode)
    assert mode == 0o600


# -- validate checks the store ------------------------------------------------------------


def test_validate_reports_the_schema_state(site: Path) -> None:
    config = str(site / "connectors.yaml")
    assert run_connectors(["migrate", "--config", config]).returncode == 0

    result = run_connectors(["validate", "--config", config])

    assert result.returncode == 0, result.stdout + result.stderr
    assert "schema up to date (revision " in result.stdout


@pytest.mark.parametrize(
    ("store", "words"),
    [
        ("mysql://u:p@localhost/db", ["unsupported store 'mysql'", "sqlite", "postgres"]),
        ("sqlite:////nonexistent/dir/x.db", ["no database at /nonexistent/dir/x.db", "folder"]),
        ("postgresql://postgres@127.0.0.1:1/none", ["unavailable", "refused"]),
    ],
    ids=["unsupported scheme", "missing folder", "postgres down"],
)
def test_validate_fails_on_a_store_serve_could_not_use(
    tmp_path: Path, store: str, words: list[str]
) -> None:
    config = write_config(tmp_path / "c.yaml", {**config_data(), "store": store})

    result = run_connectors(["validate", "--config", str(config)])

    message = result.stdout + result.stderr
    assert result.returncode == 1
    for word in words:
        assert word in message
    assert "Traceback" not in message
    assert "NoSuchModuleError" not in message
    assert ":p@" not in message  # the password stays masked


def test_postgres_urls_as_hosting_providers_write_them_mean_psycopg(tmp_path: Path) -> None:
    for scheme in ("postgres", "postgresql"):
        config = write_config(
            tmp_path / f"{scheme}.yaml", {**config_data(), "store": f"{scheme}://u@db/leads"}
        )
        assert load_config(config).store == "postgresql+psycopg://u@db/leads"


def test_check_connections_skips_disabled_connectors_and_keeps_sdk_logs_out(
    tmp_path: Path,
) -> None:
    config = write_config(
        tmp_path / "c.yaml",
        {
            **config_data(),
            "store": "sqlite:///relay.db",
            "connectors": {
                "archive": {"type": "csv", "path": "leads.csv"},
                "crm": {"type": "hubspot", "enabled": False, "access_token": "pat-x"},
                "hook": {"type": "slack", "webhook_url": "http://127.0.0.1:1/hook"},
            },
        },
    )
    assert run_connectors(["migrate", "--config", str(config)]).returncode == 0

    result = run_connectors(["validate", "--config", str(config), "--check-connections"])

    assert result.returncode == 1  # the Slack hook cannot be reached
    assert "crm (hubspot): disabled in config, not checked" in result.stdout
    assert "archive (csv): connection OK" in result.stdout
    assert "hook (slack): FAILED" in result.stdout
    assert result.stderr.strip() == ""  # no SDK or library log lines


# -- replay and backfill --------------------------------------------------------------------


@pytest.fixture
def stored(site: Path) -> tuple[Path, list[str]]:
    """Three gitleads leads and a LeadHub lead stored while only `archive` existed."""
    config = site / "connectors.yaml"
    assert run_connectors(["migrate", "--config", str(config)]).returncode == 0
    old = ingest(config, [("gitleads", gitleads_body(1))], minutes_ago=180)
    recent = ingest(
        config,
        [
            ("gitleads", gitleads_body(2)),
            ("gitleads", gitleads_body(3, event="lead.enriched")),
            ("leadhub", fixture_body("leadhub", "lead.created.json")),
        ],
    )
    # Later, a CRM connector is added for created and enriched leads.
    write_config(
        config,
        config_data(
            archive={"type": "csv", "path": "data/leads.csv", "events": ["lead.created"]},
            crm={
                "type": "csv",
                "path": "data/crm.csv",
                "events": ["lead.created", "lead.enriched"],
            },
        ),
    )
    return config, old + recent


def deliveries_of(config: Path, connector: str) -> list[dict[str, Any]]:
    store = Store(load_config(config).store)
    try:
        return store.list_deliveries(DeliveryFilter(connector=connector, limit=1000))
    finally:
        store.close()


def test_backfill_creates_the_missing_deliveries_in_received_order(
    stored: tuple[Path, list[str]],
) -> None:
    config, event_ids = stored
    before = run_connectors(["replay", "--config", str(config), "--connector", "crm", "--dead"])

    result = run_connectors(["replay", "--config", str(config), "--connector", "crm", "--backfill"])
    again = run_connectors(["replay", "--config", str(config), "--connector", "crm", "--backfill"])

    assert "0 deliveries queued again" in before.stdout
    assert "--backfill" in before.stdout  # the hint for a connector with no deliveries
    assert result.returncode == 0, result.stderr
    assert "4 deliveries created for crm" in result.stdout
    rows = sorted(deliveries_of(config, "crm"), key=lambda r: r["id"])
    assert [r["event_id"] for r in rows] == event_ids
    assert {r["status"] for r in rows} == {"pending"}
    assert "0 deliveries created for crm" in again.stdout  # nothing twice


def test_backfill_narrows_by_since_source_and_type(stored: tuple[Path, list[str]]) -> None:
    config, event_ids = stored
    cfg = ["replay", "--config", str(config), "--connector", "crm", "--backfill"]

    by_type = run_connectors([*cfg, "--type", "lead.enriched"])
    by_source = run_connectors([*cfg, "--source", "leadhub"])
    by_time = run_connectors([*cfg, "--since", "1h"])

    assert "1 delivery created for crm" in by_type.stdout
    assert "1 delivery created for crm" in by_source.stdout
    assert "1 delivery created for crm" in by_time.stdout  # the remaining recent one
    assert event_ids[0] not in {r["event_id"] for r in deliveries_of(config, "crm")}


def test_backfill_follows_the_connectors_routing(stored: tuple[Path, list[str]]) -> None:
    config, _ = stored

    result = run_connectors(
        ["replay", "--config", str(config), "--connector", "archive", "--backfill"]
    )

    # archive takes lead.created only and already has those: the enriched one is not its.
    assert "0 deliveries created for archive" in result.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--connector", "crn", "--backfill"], ["no connector named 'crn'", "archive, crm"]),
        (["--connector", "crn", "--dead"], ["no connector named 'crn'"]),
        (["--connector", "crm", "--backfill", "--source", "gitlead"], ["no source named"]),
        (["--connector", "crm", "--backfill", "--type", "lead.create"], ["unknown event type"]),
        (["--event", "evt_nope"], ["no event evt_nope"]),
        (["--backfill"], ["--backfill needs --connector"]),
    ],
    ids=["backfill connector", "dead connector", "source", "type", "event", "no connector"],
)
def test_every_replay_typo_exits_non_zero_and_says_why(
    stored: tuple[Path, list[str]], args: list[str], words: list[str]
) -> None:
    config, _ = stored

    result = run_connectors(["replay", "--config", str(config), *args])

    assert result.returncode != 0
    for word in words:
        assert word in result.stderr
    assert deliveries_of(config, "crm") == []


# -- deliveries and enable ------------------------------------------------------------------


@pytest.fixture
def dead_delivery(tmp_path: Path) -> tuple[Path, int]:
    """One delivery dead after two tries at an unwritable CSV path (a long OS error)."""
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where a folder should be", encoding="utf-8")
    config = write_config(
        tmp_path / "c.yaml",
        {
            **config_data(),
            "store": "sqlite:///relay.db",
            "connectors": {"sheet": {"type": "csv", "path": str(blocked / "deep" / "x.csv")}},
        },
    )
    assert run_connectors(["migrate", "--config", str(config)]).returncode == 0
    ingest(config, [("gitleads", gitleads_body(1))])
    loaded = load_config(config)
    store = Store(loaded.store)
    later = [utcnow()]
    worker = Worker(loaded, store, clock=lambda: later[0])
    for _ in range(2):
        later[0] += timedelta(minutes=5)
        worker.run_once("sheet")
    [row] = store.list_deliveries(DeliveryFilter(connector="sheet"))
    store.close()
    assert row["status"] == "dead"
    return config, row["id"]


def test_deliveries_attempts_shows_each_try_in_the_table(dead_delivery: tuple[Path, int]) -> None:
    config, _ = dead_delivery

    result = run_connectors(["deliveries", "--config", str(config), "--attempts"])

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[0] == "ID"
    assert sum(line.strip().startswith("attempt ") for line in lines) == 2
    assert "attempt 2 at" in result.stdout


def test_deliveries_id_shows_the_full_last_error(dead_delivery: tuple[Path, int]) -> None:
    config, delivery_id = dead_delivery
    store = Store(load_config(config).store)
    [row] = store.list_deliveries(DeliveryFilter(delivery_id=delivery_id))
    store.close()

    result = run_connectors(["deliveries", "--config", str(config), "--id", str(delivery_id)])
    missing = run_connectors(["deliveries", "--config", str(config), "--id", "999"])

    assert result.returncode == 0, result.stderr
    assert f"last_error: {row['last_error']}" in result.stdout
    assert "…" not in result.stdout
    assert missing.returncode == 1
    assert "no delivery with id 999" in missing.stderr


def test_enable_says_when_there_was_nothing_to_do_and_what_to_replay(
    dead_delivery: tuple[Path, int],
) -> None:
    config, _ = dead_delivery
    store = Store(load_config(config).store)
    store.set_connector_disabled("sheet", "410 Gone: the destination asked to stop")
    store.close()

    first = run_connectors(["enable", "--config", str(config), "sheet"])
    second = run_connectors(["enable", "--config", str(config), "sheet"])
    typo = run_connectors(["enable", "--config", str(config), "shet"])

    assert first.returncode == 0, first.stderr
    assert "410 Gone" in first.stdout
    assert "connectors replay --dead --connector sheet" in first.stdout
    assert "was not disabled" in second.stdout
    assert typo.returncode == 1
    assert "no connector named 'shet'" in typo.stderr


def test_store_file_modes_hold_for_wal_files_too(site: Path) -> None:
    config = site / "connectors.yaml"
    assert run_connectors(["migrate", "--config", str(config)]).returncode == 0
    ingest(config, [("gitleads", gitleads_body(1))])

    for path in (site / "data").glob("relay.db*"):
        if path.suffix != ".lock" and not path.name.endswith("-shm"):
            assert stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0, path
