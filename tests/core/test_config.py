"""Config errors: each kind names the file, the key path and the problem (a missing
variable by name), never shows a secret, and makes `connectors serve` exit non-zero
without a traceback."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from leadrelay.core import logs
from leadrelay.core.app import cli
from leadrelay.core.app.config import ConfigError, load_config, parse_config
from leadrelay.core.ingest.settings import unsigned_sources
from tests.cli import CliRunner
from tests.plugins import install_plugin
from tests.process import run_connectors

SECRET = "s3cr3t-do-not-print"

VALID = f"""\
store: sqlite:///./leadrelay.db
sources:
  gitleads:
    provider: gitleads
    secrets: ["{SECRET}", "${{ROTATED_SECRET:-{SECRET}-old}}"]
  open:
    provider: leadhub
connectors:
  archive:
    type: csv
    path: ./leads.csv
delivery: {{max_attempts: 5, backoff: [30s, 2m, 1h]}}
retention: 7d
dedup_retention: 400d
server: {{max_body_bytes: 65536}}
"""

# (name, YAML text, expected key path, expected words in the problem)
BAD_CONFIGS = [
    (
        "unknown key",
        f"store: sqlite:///x.db\nsources:\n  gl:\n    provider: gitleads\n    secret: [{SECRET}]\n",
        "sources.gl.secret",
        ["unknown key"],
    ),
    (
        "unknown top-level key",
        "store: sqlite:///x.db\nstroe: sqlite:///y.db\n",
        "stroe",
        ["unknown key"],
    ),
    (
        "bad type",
        f"sources:\n  gl:\n    provider: gitleads\n    secrets: [{SECRET}]\n"
        "delivery:\n  max_attempts: many\n",
        "delivery.max_attempts",
        ["integer"],
    ),
    (
        "bad duration",
        "retention: forever\n",
        "retention",
        ["duration", "forever"],
    ),
    (
        "value out of range",
        "server:\n  max_body_bytes: 10\n",
        "server.max_body_bytes",
        ["1024"],
    ),
    (
        "secret of the wrong type",
        f"sources:\n  gl:\n    provider: gitleads\n    secrets: {SECRET}\n",
        "sources.gl.secrets",
        ["list"],
    ),
    (
        "unknown provider",
        f"sources:\n  gl:\n    provider: gitlaeds\n    secrets: [{SECRET}]\n",
        "sources.gl.provider",
        ["unknown provider", "gitlaeds", "gitleads"],
    ),
    (
        "unknown connector type",
        f"connectors:\n  crm:\n    type: hubsp0t\n    access_token: {SECRET}\n",
        "connectors.crm.type",
        ["unknown connector type", "hubsp0t", "hubspot"],
    ),
    (
        "connector type missing",
        f"connectors:\n  crm:\n    access_token: {SECRET}\n",
        "connectors.crm.type",
        ["required"],
    ),
    (
        "unknown connector option",
        f"connectors:\n  crm:\n    type: hubspot\n    access_token: {SECRET}\n"
        "    acess_token: typo\n",
        "connectors.crm.acess_token",
        ["unknown key"],
    ),
    (
        "missing environment variable",
        "sources:\n  gl:\n    provider: gitleads\n    secrets: ['${GITLEADS_SECRET_UNSET}']\n",
        "sources.gl.secrets[0]",
        ["GITLEADS_SECRET_UNSET", "not set"],
    ),
    (
        "YAML syntax error",
        f"sources:\n  gl:\n    provider: gitleads\n   secrets: [{SECRET}\n",
        "",
        ["line 4, column 4"],
    ),
    (
        "top level not a mapping",
        "- store\n- sources\n",
        "",
        ["top level must be a mapping"],
    ),
]


@pytest.fixture(autouse=True)
def _no_secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROTATED_SECRET", raising=False)
    monkeypatch.delenv("GITLEADS_SECRET_UNSET", raising=False)
    monkeypatch.delenv("LEADRELAY_CONFIG", raising=False)


@pytest.fixture
def quiet_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    # `main` installs a stderr log handler on the root logger; under CliRunner that stream
    # is closed afterwards, and later tests would log into it.
    monkeypatch.setattr(logs, "configure", lambda *_args, **_kwargs: None)


def write(tmp_path: Path, text: str, name: str = "connectors.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_valid_config_loads_with_interpolation_and_durations(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID), env={"ROTATED_SECRET": "rotated"})

    assert config.sources["gitleads"].secret_values() == [SECRET, "rotated"]
    assert unsigned_sources(config) == ["open"]
    assert config.connectors["archive"].type == "csv"
    assert config.delivery.max_attempts == 5
    assert config.delivery.backoff == [
        timedelta(seconds=30),
        timedelta(minutes=2),
        timedelta(hours=1),
    ]
    assert config.retention == timedelta(days=7)
    assert config.dedup_retention == timedelta(days=400)
    assert config.server.max_body_bytes == 65536
    assert SECRET not in repr(config)
    assert SECRET not in str(config.model_dump())


def test_defaults_follow_the_design(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "sources: {}\n"), env={})

    # Relative to the config file's folder, not to wherever the command runs.
    assert config.store == f"sqlite:///{tmp_path.resolve() / 'leadrelay.db'}"
    assert config.server.max_body_bytes == 1024 * 1024
    assert config.retention == timedelta(days=30)
    assert config.dedup_retention == timedelta(days=365)
    assert config.delivery.max_attempts == 8


def test_variable_default_is_used_when_unset(tmp_path: Path) -> None:
    text = "store: ${LEADRELAY_TEST_STORE_UNSET:-sqlite:///./other.db}\n"

    store = load_config(write(tmp_path, text), env={}).store
    assert store == f"sqlite:///{tmp_path.resolve() / 'other.db'}"


@pytest.mark.parametrize(
    ("kind", "text", "key_path", "words"), BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS]
)
def test_config_error_names_file_key_path_and_problem(
    tmp_path: Path, kind: str, text: str, key_path: str, words: list[str]
) -> None:
    path = write(tmp_path, text)

    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})

    error = caught.value
    assert error.file == str(path)
    assert error.key_path == key_path
    message = str(error)
    assert message.startswith(str(path))
    if key_path:
        assert f": {key_path}: " in message
    for word in words:
        assert word in message
    assert SECRET not in message


def test_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"

    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})

    assert str(path) in str(caught.value)
    assert "not found" in str(caught.value)


def test_config_path_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "store: sqlite:///./env.db\n", "elsewhere.yaml")
    monkeypatch.setenv("LEADRELAY_CONFIG", str(path))

    assert load_config(env={}).path == str(path)


def test_empty_secret_from_an_empty_variable_is_refused(tmp_path: Path) -> None:
    text = "sources:\n  gl:\n    provider: gitleads\n    secrets: ['${EMPTY_SECRET}']\n"

    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), env={"EMPTY_SECRET": ""})

    assert caught.value.key_path == "sources.gl.secrets"
    assert "empty" in caught.value.problem


def test_secret_value_never_appears_in_any_error() -> None:
    # The secret sits right next to each broken value.
    broken: list[dict[str, object]] = [
        {"sources": {"gl": {"provider": "gitleads", "secrets": [SECRET, 42]}}},
        {"sources": {"gl": {"provider": "gitleads", "secrets": [SECRET], "x": SECRET}}},
        {"connectors": {"c": {"type": "hubspot", "access_token": [SECRET]}}},
        {"connectors": {"c": {"type": "webhook", "url": SECRET, "secrets": [SECRET]}}},
        {"store": {"url": SECRET}},
    ]
    for data in broken:
        with pytest.raises(ConfigError) as caught:
            parse_config(data, "test.yaml", env={})
        assert SECRET not in str(caught.value), data


@pytest.mark.parametrize(
    ("kind", "text", "key_path", "words"), BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS]
)
def test_serve_refuses_a_bad_config_cleanly(
    tmp_path: Path, quiet_cli: None, kind: str, text: str, key_path: str, words: list[str]
) -> None:
    path = write(tmp_path, text)

    result = CliRunner().invoke(cli.main, ["serve", "--config", str(path)])

    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)  # a clean exit, not a crash
    assert "Traceback" not in result.output
    assert str(path) in result.output
    if key_path:
        assert key_path in result.output
    for word in words:
        assert word in result.output
    assert SECRET not in result.output


def test_serve_process_exits_non_zero_on_a_bad_config(tmp_path: Path) -> None:
    path = write(
        tmp_path, "sources:\n  gl:\n    provider: gitleads\n    secrets: ['${NOT_SET_ANYWHERE}']\n"
    )

    result = run_connectors(["serve", "--config", str(path), "--port", "1"])

    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert str(path) in result.stderr
    assert "sources.gl.secrets[0]" in result.stderr
    assert "NOT_SET_ANYWHERE" in result.stderr
    assert result.stdout == ""


def test_serve_process_exits_non_zero_on_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.yaml"

    result = run_connectors(["serve", "--config", str(path)])

    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert str(path) in result.stderr
    assert "not found" in result.stderr


def test_connector_type_that_cannot_be_imported_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # e.g. a built-in type whose SDK is not installed: a config answer, not a traceback.
    install_plugin(
        tmp_path,
        monkeypatch,
        {"leadrelay.connectors": {"broken": "leadrelay.connectors.no_such_module:X"}},
    )
    text = f"connectors:\n  crm:\n    type: broken\n    token: {SECRET}\n"

    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), env={})

    assert caught.value.key_path == "connectors.crm.type"
    assert "broken" in caught.value.problem
    assert "no_such_module" in caught.value.problem
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("value", ["99999999999999999999d", "1e400s"])
def test_a_duration_too_large_to_hold_is_a_config_error_naming_the_key(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"delivery": {"lease": value}}, "c.yaml", env={})
    assert caught.value.key_path == "delivery.lease"
