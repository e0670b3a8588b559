"""`connectors test`, `trigger` and `validate`: what a new user runs in their first hour."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from leadrelay.core.app.cli import main
from leadrelay.core.app.samples import bundled_sample_files, signed_request
from leadrelay.core.ingest.providers.registry import provider_for
from tests.cli import CliRunner, example_runner
from tests.conftest import SECRETS
from tests.process import ServeProcess, write_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_CONFIG = ROOT / "examples" / "connectors.yaml"

# Every documented event of every provider has at least one bundled sample.
DOCUMENTED_EVENTS = {
    "gitleads": {"lead.created", "lead.enriched", "lead.updated"},
    "gitproductivity": {
        "developer.added",
        "developer.removed",
        "repository.connected",
        "repository.disconnected",
        "analysis.complete",
        "metrics.updated",
    },
    "leadshark": {"email.captured", "new.profile.visit", "new.like", "new.comment", "dm.sent"},
    "leadhub": {
        "lead.created",
        "lead.updated",
        "lead.deleted",
        "lead.stage_changed",
        "lead.assigned",
        "form.submitted",
    },
}


@pytest.fixture
def runner(tmp_path: Path) -> CliRunner:
    return example_runner(tmp_path)


def test_bundled_samples_cover_every_documented_event() -> None:
    for provider, events in DOCUMENTED_EVENTS.items():
        names = {path.name.removesuffix(".json") for path in bundled_sample_files(provider)}
        assert events <= names, provider


def test_example_config_passes_for_every_provider_and_event(runner: CliRunner) -> None:
    result = runner.invoke(main, ["test", "--config", str(EXAMPLE_CONFIG), "--json"])

    assert result.exit_code == 0, result.output
    results = json.loads(result.stdout)
    seen = {(r["provider"], r["sample"].removesuffix(".json")) for r in results}
    expected = {(p, e) for p, events in DOCUMENTED_EVENTS.items() for e in events}
    assert expected <= seen
    assert all(r["ok"] for r in results)
    statuses = {(r["provider"], r["sample"]): r["status"] for r in results}
    assert statuses[("gitproductivity", "repository.connected.json")] == "ignored"
    assert statuses[("gitleads", "lead.created.json")] == "accepted"


def test_dry_run_prints_what_each_connector_would_send(runner: CliRunner) -> None:
    args = ["--source", "gitleads", "--event", "lead.created", "--show-requests"]
    result = runner.invoke(main, ["test", "--config", str(EXAMPLE_CONFIG), *args])

    assert result.exit_code == 0, result.output
    assert "gitleads/lead.created.json: accepted" in result.output
    rows = {line.split()[0]: line.split(None, 3)[1:] for line in result.output.splitlines()[2:7]}
    assert rows["archive"] == ["csv", "would", "send"]
    # Disabled: skipped, never sent, but its preview (no network) is still shown.
    assert rows["crm"] == ["hubspot", "skipped", "disabled in config"]
    # The HubSpot batch-upsert body with the lead's email as the upsert id.
    assert "/crm/v3/objects/contacts/batch/upsert" in result.output
    assert '"email": "jane@example.com"' in result.output
    assert "1 payload: 1 ok, 0 failed; connectors: 1 would send, 3 skipped" in result.output


def test_dry_run_stores_and_writes_nothing(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["test", "--config", str(EXAMPLE_CONFIG), "--source", "leadhub"])

    assert result.exit_code == 0, result.output
    assert not (tmp_path / "leads.csv").exists()
    assert not (tmp_path / "x.db").exists()


def test_live_run_writes_the_csv_row(runner: CliRunner, tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "live.yaml",
        {
            "sources": {"gitleads": {"provider": "gitleads", "secrets": ["s1"]}},
            "connectors": {"archive": {"type": "csv", "path": str(tmp_path / "live.csv")}},
        },
    )
    result = runner.invoke(
        main, ["test", "--config", str(config), "--live", "--event", "lead.created"]
    )

    assert result.exit_code == 0, result.output
    assert re.search(r"^  archive +csv +delivered\b", result.output, re.MULTILINE)
    rows = (tmp_path / "live.csv").read_text(encoding="utf-8").splitlines()
    assert len(rows) == 2
    assert "jane@example.com" in rows[1]


def test_tampered_captured_request_fails_with_a_clear_message(
    runner: CliRunner, tmp_path: Path
) -> None:
    payload = json.loads(bundled_sample_files("gitleads")[0].read_text(encoding="utf-8"))
    genuine = signed_request(provider_for("gitleads"), payload, "demo-gitleads-secret")
    tampered = genuine.body.decode().replace("Jane", "Eve")
    capture = tmp_path / "captured.json"
    capture.write_text(json.dumps({"headers": genuine.headers, "body": tampered}))

    result = runner.invoke(
        main,
        [
            "test",
            "--config",
            str(EXAMPLE_CONFIG),
            "--source",
            "gitleads",
            "--payload",
            str(capture),
        ],
    )

    assert result.exit_code == 1
    assert "invalid_signature" in result.output
    assert "does not match any configured secret" in result.output

    capture.write_text(json.dumps({"headers": genuine.headers, "body": genuine.body.decode()}))
    untouched = runner.invoke(
        main,
        [
            "test",
            "--config",
            str(EXAMPLE_CONFIG),
            "--source",
            "gitleads",
            "--payload",
            str(capture),
        ],
    )
    assert untouched.exit_code == 0, untouched.output


def test_payload_file_that_is_not_json_is_refused(runner: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    result = runner.invoke(
        main,
        ["test", "--config", str(EXAMPLE_CONFIG), "--source", "gitleads", "--payload", str(bad)],
    )
    assert result.exit_code == 1
    assert "not valid JSON" in result.output


def test_trigger_gets_accepted_for_every_provider(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "serve.yaml",
        {
            "store": f"sqlite:///{tmp_path / 'serve.db'}",
            "sources": {p: {"provider": p, "secrets": [s]} for p, s in SECRETS.items()},
            "connectors": {},
        },
    )
    runner = CliRunner()
    with ServeProcess(config) as server:
        for source, event in [
            ("gitleads", "lead.created"),
            ("gitproductivity", "developer.added"),
            ("leadshark", "email.captured"),
            ("leadhub", "lead.created"),
        ]:
            result = runner.invoke(
                main, ["trigger", source, event, "--url", server.base_url, "--config", str(config)]
            )
            assert result.exit_code == 0, result.output
            assert result.output.startswith("200 ")
            assert json.loads(result.output[4:])["status"] == "accepted"
        probe = runner.invoke(
            main,
            ["trigger", "leadshark", "--get", "--url", server.base_url, "--config", str(config)],
        )
        assert probe.exit_code == 0
        assert probe.output.startswith("200 ")


def test_trigger_reports_a_refused_request_with_a_non_zero_exit(tmp_path: Path) -> None:
    served = write_config(
        tmp_path / "served.yaml",
        {
            "store": f"sqlite:///{tmp_path / 'served.db'}",
            "sources": {"gitleads": {"provider": "gitleads", "secrets": ["the-real-secret"]}},
        },
    )
    wrong = write_config(
        tmp_path / "wrong.yaml",
        {"sources": {"gitleads": {"provider": "gitleads", "secrets": ["another-secret"]}}},
    )
    with ServeProcess(served) as server:
        result = CliRunner().invoke(
            main, ["trigger", "gitleads", "--url", server.base_url, "--config", str(wrong)]
        )
    assert result.exit_code == 1
    assert result.output.startswith("401 ")
    assert "invalid_signature" in result.output


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ("store: [unclosed", "line 1"),
        (
            "sources: {gl: {provider: nope}}",
            "sources.gl.provider: Value error, unknown provider 'nope'",
        ),
        ("sources: {gl: {provider: gitleads, secret: x}}", "sources.gl.secret: unknown key"),
        ("connectors: {c: {type: csv}}", "connectors.c.path: required key is missing"),
        ("connectors: {c: {type: hubspot}}", "connectors.c.access_token: required key is missing"),
        (
            "sources: {gl: {provider: gitleads, secrets: ['${NOT_SET_ANYWHERE}']}}",
            "environment variable NOT_SET_ANYWHERE is not set",
        ),
        ("delivery: {backoff: [soon]}", "delivery.backoff[0]"),
        ("connectors: {c: {type: csv, path: x.csv, require: [shoe_size]}}", "shoe_size"),
        ("connectors: {c: {type: csv, path: x.csv, on_dead: pager}}", "c.on_dead: no connector"),
        ("connectors: {c: {type: csv, path: x.csv, sources: [gitlead]}}", "c.sources: no source"),
    ],
)
def test_validate_names_file_key_and_problem(tmp_path: Path, document: str, expected: str) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(document)

    result = CliRunner().invoke(main, ["validate", "--config", str(path)])

    assert result.exit_code == 1
    assert f"config error: {path}" in result.output
    assert expected in result.output


def test_validate_ok_and_missing_file(tmp_path: Path) -> None:
    runner = CliRunner(
        env={
            "LEADRELAY_CSV_PATH": str(tmp_path / "l.csv"),
            "LEADRELAY_STORE": f"sqlite:///{tmp_path / 'x.db'}",
        }
    )
    assert runner.invoke(main, ["migrate", "--config", str(EXAMPLE_CONFIG)]).exit_code == 0
    ok = runner.invoke(main, ["validate", "--config", str(EXAMPLE_CONFIG)])
    assert ok.exit_code == 0, ok.output
    assert "OK (4 sources, 4 connectors)" in ok.output
    assert "schema up to date" in ok.output

    missing = CliRunner().invoke(main, ["validate", "--config", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 1
    assert "file not found" in missing.output


def test_validate_check_connections_reports_the_failing_connector(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "c.yaml",
        {
            "connectors": {
                "archive": {"type": "csv", "path": str(tmp_path / "ok.csv")},
                "broken": {"type": "csv", "path": str(tmp_path / "no" / "such" / "dir" / "x.csv")},
            }
        },
    )
    result = CliRunner().invoke(main, ["validate", "--config", str(config), "--check-connections"])

    assert result.exit_code == 1
    assert "archive (csv): connection OK" in result.output
    assert "broken (csv): FAILED" in result.output
