"""`gunicorn -c deploy/gunicorn.conf.py` as an operator runs it: configured only through the
environment, three processes, the delivery worker inside them.

Proves: signed webhooks are accepted by several processes and delivered (CSV and a signed
outbound webhook) exactly once each; `/metrics` sums the counters of every process
(webhooks by answer, signature failures, delivery attempts, latency, queue depth); one
JSON log line per request and per delivery attempt, with no payload content; SIGTERM stops
it with exit code 0.
"""

from __future__ import annotations

import csv
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from tests.ops.helpers import (
    SECRET,
    GunicornProcess,
    RecordingDestination,
    encode,
    gitleads_payload,
    metric,
    per_process_counter,
    post_signed,
    scrape,
    wait_until,
)
from tests.process import write_config

PROCESSES = 3
BATCH = 24
MAX_ROUNDS = 8
BODY_MARKER = "only-in-the-payload-7f3a"


def csv_event_ids(path: Path) -> list[str]:
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return [row["event_id"] for row in csv.DictReader(handle)]


def json_log_lines(text: str) -> list[dict[str, object]]:
    # gunicorn's own (master) lines are plain text; everything leadrelay logs is JSON.
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_gunicorn_receives_delivers_and_counts_across_processes(tmp_path: Path) -> None:
    destination = RecordingDestination()
    csv_path = tmp_path / "leads.csv"
    with destination.running() as hook_server:
        config = write_config(
            tmp_path / "connectors.yaml",
            {
                "store": f"sqlite:///{tmp_path / 'leadrelay.db'}",
                "sources": {"gitleads": {"provider": "gitleads", "secrets": [SECRET]}},
                "connectors": {
                    "archive": {"type": "csv", "path": str(csv_path)},
                    "hook": {"type": "webhook", "url": f"{hook_server.base_url}/leads"},
                },
            },
        )
        server = GunicornProcess(config, processes=PROCESSES)
        try:
            server.start()
            wait_until(
                lambda: len(server.children()) == PROCESSES,
                timeout=20,
                message=lambda: (
                    f"gunicorn did not fork {PROCESSES} workers:\n{server.stderr_text()}"
                ),
            )
            accepted: list[str] = []
            served_by: dict[int, float] = {}
            sent = 0
            with ThreadPoolExecutor(max_workers=12) as pool:
                # Fresh connections, many at once, until more than one process has answered.
                for _ in range(MAX_ROUNDS):
                    bodies = [
                        encode(gitleads_payload(sent + i, bio=BODY_MARKER)) for i in range(BATCH)
                    ]
                    sent += BATCH
                    for response in pool.map(lambda b: post_signed(server.base_url, b), bodies):
                        assert response.status_code == 200, response.text
                        assert response.json()["status"] == "accepted"
                        accepted.append(response.json()["event_id"])
                    served_by = per_process_counter(
                        server.metrics_dir,
                        "leadrelay_webhooks_received_total",
                        source="gitleads",
                        answer="accepted",
                    )
                    if sum(1 for count in served_by.values() if count) >= 2:
                        break
            assert sum(1 for count in served_by.values() if count) >= 2, served_by
            assert sum(served_by.values()) == len(accepted)
            assert len(set(accepted)) == len(accepted)

            duplicate = post_signed(server.base_url, encode(gitleads_payload(0, bio=BODY_MARKER)))
            assert duplicate.json() == {"status": "duplicate", "event_id": accepted[0]}
            forged = post_signed(
                server.base_url, encode(gitleads_payload(10_000)), secret="not-the-secret"
            )
            assert forged.status_code == 401
            assert forged.json()["error"] == "invalid_signature"

            wait_until(
                lambda: sorted(csv_event_ids(csv_path)) == sorted(accepted),
                timeout=30,
                message=lambda: f"CSV has {len(csv_event_ids(csv_path))}/{len(accepted)} rows",
            )
            wait_until(
                lambda: set(destination.webhook_ids()) == set(accepted),
                timeout=30,
                message=lambda: f"webhook got {destination.count()}/{len(accepted)} events",
            )
            total = float(len(accepted))

            def delivery_counters_complete() -> dict | None:
                samples = scrape(server.base_url)
                done = all(
                    metric(
                        samples,
                        "leadrelay_delivery_attempts_total",
                        connector=name,
                        outcome="delivered",
                    )
                    == total
                    for name in ("archive", "hook")
                )
                return samples if done else None

            samples = wait_until(
                delivery_counters_complete,
                timeout=20,
                message="delivery counters in /metrics never reached the number accepted",
            )
            assert (
                metric(
                    samples,
                    "leadrelay_webhooks_received_total",
                    source="gitleads",
                    answer="accepted",
                )
                == total
            )
            assert (
                metric(
                    samples,
                    "leadrelay_webhooks_received_total",
                    source="gitleads",
                    answer="duplicate",
                )
                == 1
            )
            assert (
                metric(
                    samples,
                    "leadrelay_webhooks_received_total",
                    source="gitleads",
                    answer="invalid_signature",
                )
                == 1
            )
            assert (
                metric(
                    samples,
                    "leadrelay_signature_failures_total",
                    source="gitleads",
                    reason="mismatch",
                )
                == 1
            )
            for name in ("archive", "hook"):
                assert (
                    metric(samples, "leadrelay_delivery_latency_seconds_count", connector=name)
                    == total
                )
                assert (
                    metric(samples, "leadrelay_deliveries", connector=name, status="delivered")
                    == total
                )
                assert (
                    metric(samples, "leadrelay_deliveries", connector=name, status="pending") == 0
                )
            assert metric(samples, "leadrelay_oldest_pending_delivery_age_seconds") == 0
            assert metric(samples, "leadrelay_journaled_events") == 0
            # Delivered once: every outbound webhook-id exactly one time, every CSV row once.
            assert set(destination.webhook_ids().values()) == {1}
            assert len(csv_event_ids(csv_path)) == len(accepted)
            assert requests.get(server.url("/readyz"), timeout=5).status_code == 200
        finally:
            exit_code = server.stop()
        assert exit_code == 0, server.stderr_text()

    lines = json_log_lines(server.stderr_text())
    request_lines = [
        line
        for line in lines
        if line.get("path") == "/webhooks/gitleads" and line.get("method") == "POST"
    ]
    assert len(request_lines) == sent + 2
    assert {line["event_id"] for line in request_lines if line["status"] == 200} == set(accepted)
    assert all(line["source"] == "gitleads" for line in request_lines)
    delivered = {
        (line["event_id"], line["connector"])
        for line in lines
        if line.get("logger") == "leadrelay.worker" and line.get("status") == "delivered"
    }
    assert delivered == {(event_id, c) for event_id in accepted for c in ("archive", "hook")}
    assert BODY_MARKER not in server.stderr_text()
