"""`connectors worker --metrics-port`: a worker outside gunicorn still exports its metrics."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import requests

from tests.conftest import gitleads_body, make_config, migrated_store, signed_headers
from tests.process import connectors_command, free_port, write_config

DEADLINE_S = 30.0


def test_worker_serves_delivery_counters(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'w.db'}"
    csv_path = tmp_path / "leads.csv"
    connectors = {"archive": {"type": "csv", "path": str(csv_path)}}
    config_path = write_config(
        tmp_path / "c.yaml",
        {
            "store": store_url,
            "sources": {"gitleads": {"provider": "gitleads", "secrets": ["gitleads-test-secret"]}},
            "connectors": connectors,
        },
    )
    from leadrelay.core.ingest.receiver import create_app

    app = create_app(make_config(store_url, connectors=connectors), migrated_store(store_url))
    body = gitleads_body(1)
    assert (
        app.test_client()
        .post("/webhooks/gitleads", data=body, headers=signed_headers("gitleads", body))
        .status_code
        == 200
    )

    port = free_port()
    process = subprocess.Popen(
        [
            *connectors_command(),
            "worker",
            "--config",
            str(config_path),
            "--metrics-port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + DEADLINE_S
        text = ""
        while time.monotonic() < deadline:
            try:
                text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            except requests.ConnectionError:
                text = ""
            if (
                'leadrelay_delivery_attempts_total{connector="archive",outcome="delivered"} 1.0'
                in text
            ):
                break
            time.sleep(0.1)
        assert (
            'leadrelay_delivery_attempts_total{connector="archive",outcome="delivered"} 1.0' in text
        )
        assert 'leadrelay_deliveries{connector="archive",status="delivered"} 1.0' in text
        assert csv_path.read_text(encoding="utf-8").count("\n") == 2
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr.decode(errors="replace")[-2000:]
