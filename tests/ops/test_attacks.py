"""What an attacker tries next (issue 17), each against `connectors serve` as a real
process on loopback, with nothing but a captured request or a socket.

LeadShark requests are signed the way LeadShark signs them: HMAC of Node's
`JSON.stringify` of the payload (skipped with the reason where Node is not installed).
Times are measured and printed for the README, never asserted.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import SECRETS
from tests.ops.helpers import (
    SECRET,
    gitleads_payload,
    sqlite_counts,
    sqlite_moved_in,
    sqlite_readonly,
    wait_until,
)
from tests.process import (
    ServeProcess,
    ServerProcess,
    connectors_command,
    free_port,
    run_connectors,
    write_config,
)
from tests.signing import (
    NODE,
    NODE_MISSING_REASON,
    encode,
    hmac_hex,
    leadshark_headers,
    node_stringify_many,
)

LEADSHARK_SECRET = SECRETS["leadshark"]
SMALL_LIMIT = 64 * 1024
needs_node = pytest.mark.skipif(NODE is None, reason=NODE_MISSING_REASON)


@dataclass
class Running:
    server: ServeProcess
    db_path: Path
    config_path: Path

    def post(self, source: str, body: bytes, headers: dict[str, str]) -> requests.Response:
        return requests.post(
            self.server.url(f"/webhooks/{source}"),
            data=body,
            headers={"Content-Type": "application/json", "Connection": "close", **headers},
            timeout=30,
        )

    def events(self) -> int:
        return sqlite_counts(self.db_path)["events"]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    directory = tmp_path_factory.mktemp("attacks")
    db_path = directory / "leadrelay.db"
    config = write_config(
        directory / "connectors.yaml",
        {
            "store": f"sqlite:///{db_path}",
            "sources": {
                "gitleads": {"provider": "gitleads", "secrets": [SECRET]},
                "leadhub": {"provider": "leadhub", "secrets": [SECRETS["leadhub"]]},
                "leadshark": {"provider": "leadshark", "secrets": [LEADSHARK_SECRET]},
                # The same secret as `leadshark`: the start-up warning names both.
                "leadshark-small": {
                    "provider": "leadshark",
                    "secrets": [LEADSHARK_SECRET],
                    "max_body_bytes": SMALL_LIMIT,
                },
            },
            "connectors": {"archive": {"type": "csv", "path": str(directory / "leads.csv")}},
        },
    )
    server = ServeProcess(config, extra_args=["--no-worker"]).start()
    try:
        yield Running(server, db_path, config)
    finally:
        server.kill()


def node_signed(payload_text: str) -> dict[str, str]:
    """LeadShark's headers for a body: HMAC of Node's JSON.stringify(JSON.parse(text))."""
    [signed_text] = node_stringify_many([payload_text])
    return leadshark_headers(signed_text, LEADSHARK_SECRET)


def leadshark_text(lead_id: str, *, event: str = "email.captured", name: str = "Ada") -> str:
    return (
        '{"event":"' + event + '","timestamp":"2026-04-24T10:00:00Z","data":{"lead":'
        '{"id":' + lead_id + ',"name":"' + name + '","email":"ada@example.com"}}}'
    )


def stored_row(db_path: Path, event_id: str) -> sqlite3.Row:
    sqlite_moved_in(db_path)
    with sqlite_readonly(db_path) as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute("SELECT * FROM events WHERE event_id = ?", (event_id,)).fetchone()
    assert row is not None, event_id
    return row


# -- 1. one genuine LeadShark signature must not verify other readings ---------------------


@needs_node
@pytest.mark.parametrize(
    ("genuine", "variants"),
    [
        ("9007199254740992", ["9007199254740993", "9007199254740992.0", "9.007199254740992E15"]),
        ("null", ["1" * 310, "-" + "9" * 400, "1e400"]),
        ("1", ["1.0", "1E0", "10e-1"]),
    ],
    ids=["past-2^53", "overflow-to-null", "one-and-one-point-zero"],
)
def test_leadshark_signature_binds_the_numbers_it_covers(
    running: Running, genuine: str, variants: list[str]
) -> None:
    text = leadshark_text(genuine, name=f"Ada {genuine[:8]}")
    headers = node_signed(text)
    first = running.post("leadshark", text.encode(), headers)
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "accepted"
    before = running.events()
    for variant in variants:
        forged = leadshark_text(variant, name=f"Ada {genuine[:8]}").encode()
        answer = running.post("leadshark", forged, headers)
        assert answer.status_code == 401, (variant, answer.text)
        assert answer.json()["error"] == "signature_not_binding"
    assert running.events() == before


# -- 2. padded copies with a contradicting header do not fill the store --------------------


@needs_node
def test_padded_copies_and_a_contradicting_event_header_are_one_event(running: Running) -> None:
    readable = leadshark_text('"lead-pad"', name="Pad Ded")
    # No person identifies this one: quarantined, and its copies must not be stored again.
    unreadable = (
        '{"event":"email.captured","timestamp":"2026-04-24T10:00:00Z","data":{"lead":'
        '{"note":"' + "x" * 200_000 + '"}}}'
    )
    for text, expected in ((readable, "accepted"), (unreadable, "quarantined")):
        headers = node_signed(text)
        first = running.post("leadshark", text.encode(), headers)
        assert first.json()["status"] == expected, first.text
        before = running.events()
        for padding, header_event in ((" ", "dm.sent"), ("\n\n", "new.like"), ("  \t", None)):
            padded = text.replace(",", "," + padding).encode()
            copy_headers = dict(headers)
            if header_event is not None:
                copy_headers["X-Webhook-Event"] = header_event
            answer = running.post("leadshark", padded, copy_headers)
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"status": "duplicate", "event_id": first.json()["event_id"]}
        assert running.events() == before


# -- 3. a forged large body is refused cheaply -----------------------------------------------


def forged_megabyte() -> bytes:
    """1 MiB of the shape the re-serialization spends most on (numbers), badly signed."""
    numbers = ",".join(["1.5"] * (1024 * 1024 // 4 - 40))
    return ('{"event":"new.like","data":{"n":[' + numbers + "]}}").encode()


def test_a_forged_megabyte_is_refused_with_no_signature_match(running: Running) -> None:
    body = forged_megabyte()
    headers = {"X-Webhook-Signature": hmac_hex("not-the-secret", body)}
    before = running.events()
    started = time.perf_counter()
    answer = running.post("leadshark", body, headers)
    elapsed = time.perf_counter() - started
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"] == "invalid_signature"
    small = running.post("leadshark-small", body, headers)
    assert small.status_code == 413, small.text
    assert small.json()["error"] == "payload_too_large"
    assert running.events() == before
    print(f"forged 1 MiB LeadShark body refused in {elapsed * 1000:.0f} ms")


# -- 5. calendar-edge timestamps ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "timestamp"),
    [
        ("gitleads", "0001-01-01T00:00:00+01:00"),
        ("gitleads", "9999-12-31T23:30:00-05:00"),
        ("leadhub", "9999-12-31T23:30:00-05:00"),
    ],
)
def test_a_timestamp_with_no_utc_form_is_treated_as_absent(
    running: Running, source: str, timestamp: str
) -> None:
    if source == "gitleads":
        payload: dict[str, Any] = gitleads_payload(hash(timestamp) % 3600)
        payload["timestamp"] = timestamp
        payload["data"].pop("captured_at", None)
        secret = SECRET
        header = "X-GitLeads-Signature"
    else:
        payload = {
            "event": "lead.created",
            "occurred_at": timestamp,
            "lead": {"id": "lh-edge", "email": "edge@example.com", "name": "Edge Case"},
        }
        secret = SECRETS["leadhub"]
        header = "X-LeadHub-Signature"
    body = encode(payload)
    answer = running.post(source, body, {header: "sha256=" + hmac_hex(secret, body)})
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "accepted"
    row = stored_row(running.db_path, answer.json()["event_id"])
    assert row["occurred_at"] is None
    assert json.loads(row["normalized"])["lead"]["extra"]["unreadable_event_time"] == timestamp


# -- 6. replay does not hide an event that still cannot be stored ----------------------------


def test_replay_keeps_an_unstorable_event_quarantined_and_fails(running: Running) -> None:
    # A lone surrogate in a lead field: the event parses, but no database text can hold it.
    body = encode(gitleads_payload(4242, name="Broken \ud800 Name"), ascii_only=True)
    answer = running.post(
        "gitleads", body, {"X-GitLeads-Signature": "sha256=" + hmac_hex(SECRET, body)}
    )
    assert answer.status_code == 202, answer.text
    event_id = answer.json()["event_id"]

    replayed = run_connectors(["replay", "--config", str(running.config_path), "--event", event_id])

    assert replayed.returncode != 0, replayed.stdout
    assert event_id in replayed.stderr
    row = stored_row(running.db_path, event_id)
    assert row["status"] == "quarantined"
    assert "cannot store the normalized event" in row["reason"]


# -- 7. store passwords are never printed -----------------------------------------------------


@pytest.mark.parametrize(
    "store",
    [
        "postgresql+psycopg://leaky@127.0.0.1:1/db?password=pw-in-query-7781",
        "postgresql+psycopg://:pw-no-user-7781@127.0.0.1:1/db",
        "postgresql+psycopg://u:pw-plain-7781@127.0.0.1:1/db?sslpassword=pw-ssl-7781",
    ],
)
def test_store_credentials_are_masked_in_cli_errors(tmp_path: Path, store: str) -> None:
    config = write_config(tmp_path / "connectors.yaml", {"store": store})
    result = run_connectors(["migrate", "--config", str(config)])
    assert result.returncode != 0  # port 1: nothing listens
    output = result.stdout + result.stderr
    assert "127.0.0.1:1" in output  # the URL is shown ...
    assert "7781" not in output  # ... without any of its credentials


@pytest.mark.postgres
def test_the_serve_start_line_and_migrate_mask_a_password_in_the_query(
    tmp_path: Path, postgres_url: str
) -> None:
    # The test server trusts local connections, so the password is sent and ignored.
    store = postgres_url + "&password=pw-serve-7781&sslpassword=pw-ssl-7781"
    config = write_config(
        tmp_path / "connectors.yaml",
        {"store": store, "sources": {"gitleads": {"provider": "gitleads", "secrets": [SECRET]}}},
    )
    migrated = run_connectors(["migrate", "--config", str(config)])
    assert migrated.returncode == 0, migrated.stderr
    assert "schema up to date at postgresql+psycopg://" in migrated.stdout
    port = free_port()
    server = ServerProcess(  # JSON logs: the start line carries the store URL
        [*connectors_command(), "serve", "--config", str(config), "--port", str(port)],
        port=port,
        stderr_path=tmp_path / "serve.log",
    ).start()
    try:
        start_line = [line for line in server.stderr_text().splitlines() if '"serving"' in line]
    finally:
        server.kill()
    assert start_line, server.stderr_text()
    assert "password=****" in json.loads(start_line[0])["store"]
    assert "7781" not in migrated.stdout + migrated.stderr + server.stderr_text()


# -- 8. YAML alias bombs ------------------------------------------------------------------------

ALIAS_BOMB = "\n".join(
    [
        'a: &a ["x","x","x","x","x","x","x","x","x"]',
        *(
            f"{name}: &{name} [{','.join([f'*{previous}'] * 9)}]"
            for previous, name in zip("abcdefgh", "bcdefghi", strict=True)
        ),
    ]
)


def test_an_alias_bomb_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "connectors.yaml"
    config.write_text(ALIAS_BOMB + "\n", encoding="utf-8")
    started = time.perf_counter()
    result = run_connectors(["validate", "--config", str(config)], timeout=60)
    elapsed = time.perf_counter() - started
    assert result.returncode != 0
    assert "YAML aliases expand to more than" in result.stderr
    print(f"{len(ALIAS_BOMB)}-byte alias bomb refused by `validate` in {elapsed * 1000:.0f} ms")


# -- 9. log forging, kept headers, start-up warnings ---------------------------------------------


def test_a_path_cannot_forge_a_log_line(running: Running) -> None:
    marker = "FORGED-7781"
    requests.get(running.server.url(f"/nothing%0A{marker}%20INFO%20ok"), timeout=10)
    # Request lines are written in batches (core/logs.py): wait for this one's.
    wait_until(
        lambda: marker in running.server.stderr_text(),
        timeout=10,
        message="the request's log line was never written",
    )
    lines = running.server.stderr_text().splitlines()
    assert not any(line.startswith(marker) for line in lines)
    assert any(marker in line for line in lines)  # logged, on its request's own line


def test_only_the_headers_a_provider_reads_are_stored(running: Running) -> None:
    body = encode(gitleads_payload(5151))
    headers = {
        "X-GitLeads-Signature": "sha256=" + hmac_hex(SECRET, body),
        "X-Goog-Iap-Jwt-Assertion": "jwt-7781",
        "X-Session-Id": "session-7781",
        "X-Credential": "credential-7781",
    }
    answer = running.post("gitleads", body, headers)
    assert answer.status_code == 200, answer.text
    row = stored_row(running.db_path, answer.json()["event_id"])
    assert "7781" not in (row["headers"] or "")


def test_a_shared_secret_is_warned_about_at_start(running: Running) -> None:
    assert "sources leadshark, leadshark-small share a secret" in running.server.stderr_text()
    assert LEADSHARK_SECRET not in running.server.stderr_text()
