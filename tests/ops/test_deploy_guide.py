"""The production guide's files agree with each other and with the README walkthrough.

- Both systemd units run in the same writable state directory (under
  ProtectSystem=strict the checkout in /opt is read-only); the receiver binds loopback.
- examples/production.yaml loads once its variables are set, names them when unset,
  publishes no default secret, and keeps its data paths absolute (relative ones would
  resolve against /etc/leadrelay).
- The README's Deploy section walks through every step it promises.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from leadrelay.core.app.config import ConfigError, load_config
from leadrelay.core.app.safety import demo_secrets
from tests.ops.test_deploy_files import UNITS, unit_sections

REPO = Path(__file__).resolve().parents[2]
PRODUCTION = REPO / "examples" / "production.yaml"
PRODUCTION_ENV = {
    "LEADRELAY_STORE": "postgres://leadrelay:pw@127.0.0.1:5432/leadrelay",
    "GITLEADS_WEBHOOK_SECRET": "g" * 64,
    "GITPRODUCTIVITY_WEBHOOK_SECRET": "p" * 64,
    "LEADSHARK_WEBHOOK_SECRET": "s" * 64,
    "LEADHUB_WEBHOOK_SECRET": "h" * 64,
}


def test_both_units_work_in_their_writable_state_directory() -> None:
    services = [unit_sections(unit)["Service"] for unit in UNITS]
    for service in services:
        assert service["StateDirectory"] == ["leadrelay"]
        assert service["WorkingDirectory"] == ["/var/lib/leadrelay"]
    receiver = dict(e.split("=", 1) for e in services[0]["Environment"])
    assert receiver["LEADRELAY_BIND"].startswith("127.0.0.1:")
    assert int(receiver["LEADRELAY_TIMEOUT"]) <= 10


def test_production_example_loads_with_its_variables_and_no_demo_secret() -> None:
    config = load_config(PRODUCTION, env=PRODUCTION_ENV)

    assert config.store.startswith("postgresql+psycopg://")
    assert demo_secrets(config) == []
    assert str(config.connectors["archive"].path) == "/var/lib/leadrelay/leads.csv"  # type: ignore[attr-defined]
    assert not any(path.startswith("sources.") for path in config.defaults_used)


def test_production_example_names_every_unset_secret() -> None:
    env = {k: v for k, v in PRODUCTION_ENV.items() if not k.startswith("LEADHUB")}

    with pytest.raises(ConfigError) as caught:
        load_config(PRODUCTION, env=env)

    assert "LEADHUB_WEBHOOK_SECRET" in str(caught.value)


def test_readme_deploy_walkthrough_covers_each_step() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    deploy = readme[readme.index("## Deploy\n") : readme.index("## Troubleshooting\n")]
    for step in (
        "CREATE ROLE leadrelay",
        "CREATE DATABASE leadrelay",
        "examples/production.yaml",
        "connectors migrate",
        "systemctl enable --now leadrelay-receiver leadrelay-worker",
        "127.0.0.1:8000",
        "/metrics",
        "/readyz",
        "LEADRELAY_TIMEOUT",
        "up -d --build",
    ):
        assert step in deploy, step
    for name in re.findall(r"deploy/[\w.-]+\.\w+", deploy):
        assert (REPO / name).exists(), name
