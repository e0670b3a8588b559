"""Safe defaults and an honest `connectors test`, through the real `connectors` executable.

- serve/worker refuse a reachable address while a source uses a secret the examples
  publish (the message names the variable and says "demo"); on loopback they warn.
- `test` never contacts a disabled connector, filters by --connector, counts skips as
  skips, and prints a table (bodies only with --show-requests or --json).
- `--version`, counted nouns, `--plain-logs` after the subcommand, and plain log lines
  that carry the URL, the event and connector, and a 401's reason.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import requests
import yaml

from leadrelay.core.app.config import Config, load_config, parse_config
from leadrelay.core.app.safety import PUBLISHED_SECRETS, startup_warnings
from tests.conftest import SECRETS
from tests.process import ServeProcess, free_port, run_connectors, write_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
DEMO_CONFIG = EXAMPLES / "connectors.yaml"
_VAR_WITH_DEFAULT = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*):-([^}]*)\}")


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """This environment without any provider secret set, data files under tmp_path."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_WEBHOOK_SECRET")}
    env.update(
        LEADRELAY_STORE=f"sqlite:///{tmp_path / 'demo.db'}",
        LEADRELAY_CSV_PATH=str(tmp_path / "leads.csv"),
        **extra,
    )
    return env


# -- published demo secrets -------------------------------------------------------------


def test_every_secret_default_in_the_examples_is_known_as_published() -> None:
    found: dict[str, str] = {}
    for path in sorted(EXAMPLES.glob("*.yaml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        for source in (document.get("sources") or {}).values():
            for secret in source.get("secrets", []):
                match = _VAR_WITH_DEFAULT.fullmatch(secret)
                if match:
                    found[match.group(2)] = match.group(1)
    assert found, "the demo examples publish default secrets"
    for secret, variable in found.items():
        assert PUBLISHED_SECRETS.get(secret) == variable, secret


def test_serve_refuses_a_reachable_address_with_demo_secrets(tmp_path: Path) -> None:
    result = run_connectors(
        ["serve", "--config", str(DEMO_CONFIG), "--host", "0.0.0.0", "--port", str(free_port())],  # noqa: S104
        env=clean_env(tmp_path),
    )

    assert result.returncode == 1
    assert "demo" in result.stderr
    for variable in PUBLISHED_SECRETS.values():
        assert variable in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "demo.db").exists()  # refused before touching the store


def test_serve_names_only_the_variables_still_unset(tmp_path: Path) -> None:
    env = clean_env(tmp_path, GITLEADS_WEBHOOK_SECRET="a-real-secret-from-the-dashboard")

    result = run_connectors(
        ["serve", "--config", str(DEMO_CONFIG), "--host", "10.1.2.3", "--port", "1"], env=env
    )

    assert result.returncode == 1
    assert "LEADHUB_WEBHOOK_SECRET" in result.stderr
    assert "GITLEADS_WEBHOOK_SECRET" not in result.stderr


def test_a_demo_secret_written_literally_is_refused_too(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "c.yaml",
        {"sources": {"gl": {"provider": "gitleads", "secrets": ["demo-gitleads-secret"]}}},
    )

    result = run_connectors(["serve", "--config", str(config), "--host", "::", "--port", "1"])

    assert result.returncode == 1
    assert "demo" in result.stderr
    assert "sources.gl.secrets[0]" in result.stderr


def test_worker_refuses_a_reachable_metrics_address_with_demo_secrets(tmp_path: Path) -> None:
    result = run_connectors(
        [
            "worker",
            "--config",
            str(DEMO_CONFIG),
            "--metrics-port",
            str(free_port()),
            "--metrics-host",
            "0.0.0.0",  # noqa: S104
        ],
        env=clean_env(tmp_path),
    )

    assert result.returncode == 1
    assert "demo" in result.stderr
    assert "GITLEADS_WEBHOOK_SECRET" in result.stderr


def test_loopback_runs_with_a_loud_warning_and_plain_lines_carry_the_url(tmp_path: Path) -> None:
    config = tmp_path / "connectors.yaml"
    config.write_text(DEMO_CONFIG.read_text(encoding="utf-8"), encoding="utf-8")
    server = ServeProcess(config, env=clean_env(tmp_path))
    with server:
        answer = requests.post(
            server.url("/webhooks/gitleads"),
            data=b"{}",
            headers={"X-GitLeads-Signature": "sha256=" + "0" * 64},
            timeout=10,
        )
        assert answer.status_code == 401
    log = server.stderr_path.read_text(encoding="utf-8")
    assert "WARNING: DEMO SECRET: source gitleads" in log
    assert "GITLEADS_WEBHOOK_SECRET" in log
    assert f"url=http://127.0.0.1:{server.port}" in log
    # The 401 line says why (README troubleshooting promises missing/malformed/mismatch).
    [line_401] = [line for line in log.splitlines() if "POST /webhooks/gitleads 401" in line]
    assert "reason=mismatch" in line_401


def test_short_secrets_get_a_warning_and_long_ones_none() -> None:
    config = load_config_from(
        {
            "sources": {
                "short": {"provider": "gitleads", "secrets": ["tiny"]},
                "long": {"provider": "leadhub", "secrets": ["x" * 32]},
            }
        }
    )

    warnings = startup_warnings(config, "0.0.0.0")  # noqa: S104

    assert len(warnings) == 1
    assert "sources.short.secrets[0]" in warnings[0]
    assert "16" in warnings[0]
    assert "tiny" not in warnings[0]


def load_config_from(data: dict[str, object]) -> Config:
    return parse_config(data, "test.yaml", env={})


def test_the_demo_config_as_loaded_knows_which_variable_each_default_came_from(
    tmp_path: Path,
) -> None:
    config = load_config(DEMO_CONFIG, env={})

    assert config.defaults_used["sources.leadhub.secrets[0]"] == "LEADHUB_WEBHOOK_SECRET"
    assert (
        "sources.leadhub.secrets[0]"
        not in load_config(DEMO_CONFIG, env={"LEADHUB_WEBHOOK_SECRET": "set"}).defaults_used
    )


# -- connectors test ----------------------------------------------------------------------


def hubspot_config(tmp_path: Path, *, enabled: bool) -> Path:
    return write_config(
        tmp_path / "c.yaml",
        {
            "sources": {name: {"provider": name, "secrets": [s]} for name, s in SECRETS.items()},
            "connectors": {
                "archive": {"type": "csv", "path": "leads.csv"},
                # Nothing listens on port 1: contacting it would fail the run.
                "crm": {
                    "type": "hubspot",
                    "enabled": enabled,
                    "access_token": "pat-test",
                    "base_url": "http://127.0.0.1:1",
                },
            },
        },
    )


def connector_rows(output: str) -> list[list[str]]:
    """(connector, type, result, detail) of every connector table row."""
    rows = []
    for line in output.splitlines():
        if line.startswith("  ") and not line.startswith("  CONNECTOR"):
            parts = re.split(r"\s{2,}", line.strip(), maxsplit=3)
            if len(parts) >= 3 and parts[1] in {"csv", "hubspot"}:
                rows.append(parts + [""] * (4 - len(parts)))
    return rows


def test_live_never_contacts_a_disabled_connector(tmp_path: Path) -> None:
    config = hubspot_config(tmp_path, enabled=False)

    result = run_connectors(["test", "--config", str(config), "--live", "--source", "leadhub"])

    assert result.returncode == 0, result.stdout + result.stderr
    crm_rows = [r for r in connector_rows(result.stdout) if r[0] == "crm"]
    assert crm_rows
    assert all(r[2:] == ["skipped", "disabled in config"] for r in crm_rows)
    # The CSV path is relative to the config's folder, and it was really written.
    assert (tmp_path / "leads.csv").exists()


def test_live_does_send_to_the_same_connector_once_enabled(tmp_path: Path) -> None:
    config = hubspot_config(tmp_path, enabled=True)

    result = run_connectors(
        [
            "test",
            "--config",
            str(config),
            "--live",
            "--source",
            "leadhub",
            "--event",
            "lead.created",
        ]
    )

    # The contrast: enabled, it is contacted (and fails, nothing listens there).
    assert result.returncode == 1
    [crm] = [r for r in connector_rows(result.stdout) if r[0] == "crm"]
    assert crm[2] in {"retryable", "error"}


def test_connector_option_limits_the_run_and_rejects_a_typo(tmp_path: Path) -> None:
    config = hubspot_config(tmp_path, enabled=True)

    only = run_connectors(
        ["test", "--config", str(config), "--connector", "archive", "--source", "gitleads"]
    )
    typo = run_connectors(["test", "--config", str(config), "--connector", "acrhive"])

    assert only.returncode == 0, only.stderr
    assert {r[0] for r in connector_rows(only.stdout)} == {"archive"}
    assert typo.returncode == 2
    assert "acrhive" in typo.stderr
    assert "archive" in typo.stderr


def test_a_skip_is_shown_and_counted_as_a_skip(tmp_path: Path) -> None:
    config = hubspot_config(tmp_path, enabled=True)
    args = ["test", "--config", str(config), "--source", "leadshark", "--event", "new.like"]

    table = run_connectors(args)
    as_json = run_connectors([*args, "--json"])

    assert table.returncode == 0, table.stderr
    [crm] = [r for r in connector_rows(table.stdout) if r[0] == "crm"]
    assert crm[2] == "skipped"
    assert "has no email" in crm[3]
    assert "would send" not in " ".join(crm)
    assert "connectors: 1 would send, 1 skipped, 0 failed (dry run)" in table.stdout
    [sample] = json.loads(as_json.stdout)
    [crm_json] = [c for c in sample["connectors"] if c["connector"] == "crm"]
    assert crm_json["outcome"] == "skipped"
    assert crm_json["skipped"] is True


def test_default_output_is_a_short_table_and_bodies_are_opt_in(tmp_path: Path) -> None:
    env = clean_env(tmp_path)

    plain = run_connectors(["test", "--config", str(DEMO_CONFIG)], env=env)
    bodies = run_connectors(["test", "--config", str(DEMO_CONFIG), "--show-requests"], env=env)

    assert plain.returncode == 0, plain.stderr
    assert "batch/upsert" not in plain.stdout
    assert "batch/upsert" in bodies.stdout
    # One header, a lead line and a row per connector for each of the 20 samples, at most.
    assert len(plain.stdout.splitlines()) < 20 * 8
    assert re.search(r"^20 payloads: 20 ok, 0 failed; connectors: ", plain.stdout, re.M)


# -- small honesty ----------------------------------------------------------------------


def test_version_and_plain_logs_after_the_subcommand(tmp_path: Path) -> None:
    version = run_connectors(["--version"])
    migrate = run_connectors(
        ["migrate", "--config", str(DEMO_CONFIG), "--plain-logs", "--log-level", "DEBUG"],
        env=clean_env(tmp_path),
    )

    assert version.returncode == 0
    assert re.fullmatch(r"connectors, version \d+\.\d+\.\d+\S*\n", version.stdout)
    assert migrate.returncode == 0, migrate.stderr
    assert "schema up to date" in migrate.stdout


def test_counts_use_the_singular_for_one(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "c.yaml",
        {
            "sources": {"gl": {"provider": "gitleads", "secrets": ["x" * 20]}},
            "connectors": {"archive": {"type": "csv", "path": "l.csv"}},
        },
    )
    assert run_connectors(["migrate", "--config", str(config)]).returncode == 0

    result = run_connectors(["validate", "--config", str(config)])
    sample = run_connectors(["test", "--config", str(config), "--event", "lead.created"])

    assert "OK (1 source, 1 connector)" in result.stdout
    assert "1 payload: 1 ok" in sample.stdout
