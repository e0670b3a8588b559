"""Every connector, every transport failure: the outcome is Retryable, never an exception.

One table: connector type by failure. The destinations are local sockets that refuse,
hang without answering, or drop the connection mid-request, so the real SDKs (hubspot,
simple-salesforce, slack-sdk, requests) see real socket errors.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

from leadrelay.core.app.config import parse_config
from leadrelay.core.delivery.contract import Retryable
from leadrelay.core.delivery.registry import connector_class
from tests.factories import make_event
from tests.process import free_port

TIMEOUT_S = 0.5


@contextmanager
def refusing() -> Iterator[int]:
    """A port with no listener: connection refused."""
    yield free_port()


@contextmanager
def _listener(handle: Callable[[socket.socket], None]) -> Iterator[int]:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.1)
    stop = threading.Event()
    held: list[socket.socket] = []

    def accept_loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)
            handle(conn)

    thread = threading.Thread(target=accept_loop, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        server.close()


@contextmanager
def hanging() -> Iterator[int]:
    """Accepts and never answers: the client's timeout must fire."""
    with _listener(lambda conn: None) as port:
        yield port


@contextmanager
def dropping() -> Iterator[int]:
    """Accepts, reads a little, then resets the connection."""

    def drop(conn: socket.socket) -> None:
        conn.settimeout(1)
        with suppress(OSError):
            conn.recv(1024)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        conn.close()

    with _listener(drop) as port:
        yield port


FAILURES = {"refused": refusing, "timeout": hanging, "reset": dropping}


def options_for(kind: str, port: int, tmp_path: Path) -> dict[str, Any]:
    http = f"http://127.0.0.1:{port}"
    return {
        "hubspot": {
            "type": "hubspot",
            "access_token": "pat-test",
            "base_url": http,
            "timeout": TIMEOUT_S,
        },
        "salesforce": {
            "type": "salesforce",
            "instance_url": f"https://127.0.0.1:{port}",
            "session_id": "00Dtest!session",
            "external_id_field": "Leadrelay_Key__c",
            "timeout": TIMEOUT_S,
        },
        "slack_token": {
            "type": "slack",
            "token": "xoxb-test",
            "channel": "#leads",
            "base_url": f"{http}/api/",
            "timeout": TIMEOUT_S,
        },
        "slack_webhook": {
            "type": "slack",
            "webhook_url": f"{http}/services/T0/B0/secret",
            "timeout": TIMEOUT_S,
        },
        "webhook": {"type": "webhook", "url": f"{http}/hook", "timeout": TIMEOUT_S},
    }[kind]


CONNECTORS = ["hubspot", "salesforce", "slack_token", "slack_webhook", "webhook"]


@pytest.mark.parametrize("failure", sorted(FAILURES))
@pytest.mark.parametrize("kind", CONNECTORS)
def test_transport_failure_is_retryable(kind: str, failure: str, tmp_path: Path) -> None:
    with FAILURES[failure]() as port:
        raw = options_for(kind, port, tmp_path)
        config = parse_config({"connectors": {"dest": raw}}, env={})
        connector = connector_class(raw["type"])("dest", config.connectors["dest"])
        events = [make_event(email=f"lead{i}@example.com") for i in range(2)]
        try:
            outcomes = connector.send(events)
        finally:
            connector.close()

    assert len(outcomes) == len(events)
    for outcome in outcomes:
        assert isinstance(outcome, Retryable), outcome
        assert outcome.message
        for secret in ("pat-test", "00Dtest!session", "xoxb-test", "/services/T0/B0/secret"):
            assert secret not in outcome.message


def test_csv_unwritable_path_is_retryable(tmp_path: Path) -> None:
    # A directory where the file should be: fails for root too, unlike permission bits.
    target = tmp_path / "leads.csv"
    target.mkdir()
    config = parse_config({"connectors": {"dest": {"type": "csv", "path": str(target)}}}, env={})
    connector = connector_class("csv")("dest", config.connectors["dest"])

    outcomes = connector.send([make_event()])

    assert len(outcomes) == 1
    assert isinstance(outcomes[0], Retryable)
    assert "directory" in outcomes[0].message.lower()
