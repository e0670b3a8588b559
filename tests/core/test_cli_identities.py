"""`connectors identities show|merge`, `connectors forget`, and conflicts in `events`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from leadrelay.core.app.cli import main
from leadrelay.core.app.config import Config, load_config
from leadrelay.core.store.store import Store
from tests.cli import CliRunner, Result
from tests.conftest import config_dict, migrated_store, request_record
from tests.lifecycles import LIFECYCLES

CONFLICTING = json.dumps(
    {
        "event": "lead.created",
        "timestamp": "2026-04-24T13:00:00Z",
        "data": {"id": "lead_99", "email": "vera@example.com", "github_username": "ghuser31"},
    }
).encode()


def run_cli(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=stdin, catch_exceptions=False)


@pytest.fixture
def setup(tmp_path: Path, sqlite_url: str) -> Iterator[tuple[Path, Store, Config]]:
    config_path = tmp_path / "connectors.yaml"
    config_path.write_text(yaml.safe_dump(config_dict(sqlite_url)))
    config = load_config(config_path)
    store = migrated_store(sqlite_url)
    for bodies in LIFECYCLES.values():
        for source, body in bodies:
            store.submit(request_record(config, source, body))
    yield config_path, store, config
    store.close()


def show(config_path: Path, who: str) -> dict[str, Any]:
    result = run_cli("identities", "show", who, "--config", str(config_path), "--json")
    assert result.exit_code == 0, result.output
    person = json.loads(result.stdout)
    assert isinstance(person, dict)
    return person


def test_show_lists_a_persons_identifiers_and_events(
    setup: tuple[Path, Store, Config],
) -> None:
    config_path, _store, _config = setup
    person = show(config_path, "ED.NEW@example.com")
    assert person["key"] == "email:ed.old@example.com"
    assert [i["identifier"] for i in person["identifiers"]] == [
        "email:ed.old@example.com",
        "leadhub:4242@leadhub",
        "email:ed.new@example.com",
    ]
    assert [e["provider_event"] for e in person["events"]] == ["lead.created", "lead.updated"]

    table = run_cli("identities", "show", "leadhub:4242@leadhub", "--config", str(config_path))
    assert table.exit_code == 0, table.output
    assert "person email:ed.old@example.com" in table.stdout
    assert "email:ed.new@example.com" in table.stdout

    unknown = run_cli("identities", "show", "nobody@example.com", "--config", str(config_path))
    assert unknown.exit_code != 0
    assert "no person has the key or identifier" in unknown.output


def test_a_conflict_shows_in_events_and_merge_joins_the_two(
    setup: tuple[Path, Store, Config],
) -> None:
    config_path, store, config = setup
    conflicted = store.submit(request_record(config, "gitleads", CONFLICTING)).event_id
    # The GitLeads lead id is new, the email is Vera's and the GitHub user Gil's: email wins.
    events = run_cli("events", "--config", str(config_path), "--json")
    [row] = [e for e in json.loads(events.stdout) if e["event_id"] == conflicted]
    assert row["lead_key"] == "linkedin:vera-visitor"
    assert row["identity_conflict"] == "github:ghuser31 is github:ghuser31's"
    assert show(config_path, "github:ghuser31")["key"] == "github:ghuser31"

    merged = run_cli(
        "identities",
        "merge",
        "linkedin:vera-visitor",
        "github:ghuser31",
        "--config",
        str(config_path),
    )
    assert merged.exit_code == 0, merged.output
    assert "3 identifier(s) and 2 stored event(s) moved, 1 conflict(s) settled" in merged.stdout
    person = show(config_path, "gl31@example.com")
    assert person["key"] == "linkedin:vera-visitor"
    assert len(person["events"]) == 5
    assert person["conflicts"] == []

    same = run_cli(
        "identities", "merge", "vera@example.com", "github:ghuser31", "--config", str(config_path)
    )
    assert same.exit_code != 0
    assert "already one person" in same.output


def test_forget_removes_the_person_and_says_what_it_kept(
    setup: tuple[Path, Store, Config],
) -> None:
    config_path, store, config = setup
    refused = run_cli("forget", "vera@example.com", "--config", str(config_path), stdin="n\n")
    assert refused.exit_code != 0
    assert show(config_path, "vera@example.com")["key"] == "linkedin:vera-visitor"

    result = run_cli("forget", "vera@example.com", "--yes", "--config", str(config_path))
    assert result.exit_code == 0, result.output
    assert "forgot linkedin:vera-visitor: 2 event(s) with their payloads" in result.stdout
    assert "identifier email:vera@example.com" in result.stdout
    assert "not touched: destinations" in result.stdout
    gone = run_cli("identities", "show", "vera@example.com", "--config", str(config_path))
    assert gone.exit_code != 0
    # A provider retrying the visit is still answered as a duplicate.
    source, body = LIFECYCLES["leadshark"][0]
    assert store.submit(request_record(config, source, body)).duplicate
