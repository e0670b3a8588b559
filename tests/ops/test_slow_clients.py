"""Slow clients must not take the receiver offline (issue 17, finding 4).

64 connections trickle their requests (half their headers, half their bodies) at one byte
per connection every half second, while `/healthz` and a signed webhook are sent on fresh
connections: both must be answered, by `connectors serve` and by the deploy config
(`gunicorn -c deploy/gunicorn.conf.py`) alike. The latencies are printed for the README;
the only bound asserted is the request timeout, far above them.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from tests.ops.helpers import SECRET, GunicornProcess, encode, gitleads_payload
from tests.ops.slow_clients import SLOW_CONNECTIONS, trickling
from tests.process import ServeProcess, ServerProcess, write_config
from tests.signing import sign

ANSWER_TIMEOUT_S = 10.0  # far above the measured figures: only "answered at all" is checked


def timed(call: object) -> tuple[requests.Response, float]:
    started = time.perf_counter()
    response = call()  # type: ignore[operator]
    return response, time.perf_counter() - started


def check_answers_under_slow_clients(server: ServerProcess, label: str) -> None:
    with trickling(server.port) as tricklers:
        health, health_s = timed(
            lambda: requests.get(server.url("/healthz"), timeout=ANSWER_TIMEOUT_S)
        )
        body = encode(gitleads_payload(int(time.time() * 1000) % 100_000))
        headers = {**sign("gitleads", body, SECRET), "Connection": "close"}
        webhook, webhook_s = timed(
            lambda: requests.post(
                server.url("/webhooks/gitleads"),
                data=body,
                headers=headers,
                timeout=ANSWER_TIMEOUT_S,
            )
        )
        held = tricklers.open_count()
    assert health.status_code == 200, health.text
    assert webhook.status_code == 200, webhook.text
    assert webhook.json()["status"] == "accepted"
    print(
        f"{label}: {SLOW_CONNECTIONS} slow clients ({held} still open): /healthz "
        f"{health_s * 1000:.0f} ms, signed webhook {webhook_s * 1000:.0f} ms"
    )


def sqlite_config(directory: Path) -> Path:
    return write_config(
        directory / "connectors.yaml",
        {
            "store": f"sqlite:///{directory / 'leadrelay.db'}",
            "sources": {"gitleads": {"provider": "gitleads", "secrets": [SECRET]}},
            "connectors": {"archive": {"type": "csv", "path": str(directory / "leads.csv")}},
        },
    )


def test_connectors_serve_answers_with_64_slow_clients(tmp_path: Path) -> None:
    server = ServeProcess(sqlite_config(tmp_path), extra_args=["--no-worker"]).start()
    try:
        check_answers_under_slow_clients(server, "connectors serve")
    finally:
        server.kill()


@pytest.mark.parametrize("processes", [2])
def test_the_deploy_config_answers_with_64_slow_clients(tmp_path: Path, processes: int) -> None:
    server = GunicornProcess(sqlite_config(tmp_path), processes=processes, run_worker=False)
    server.start()
    try:
        check_answers_under_slow_clients(server, f"deploy config ({processes} processes)")
    finally:
        server.kill()
