"""The deploy files, checked as far as possible without a container engine or systemd.

- Dockerfile: python:3.11-slim, a non-root USER before CMD, `pip install` of the project,
  every COPY source present, no secret in ENV; its CMD (`gunicorn -c
  deploy/gunicorn.conf.py`, run from a directory laid out like the image's WORKDIR) and
  its HEALTHCHECK command (run as written) work: healthy while the receiver is up,
  failing once it is down.
- compose.yaml: parses; receiver (the image's CMD, LEADRELAY_WORKER=0), two workers and
  PostgreSQL 16 with a healthcheck; the mounted config exists; every `${VAR}` the config
  needs is passed; no literal secret. Then the stack is run as compose would run it, minus
  the containers: the receiver and both worker commands with the compose environment
  (the store pointed at SQLite or a private PostgreSQL schema), a signed webhook in, the
  CSV row out exactly once, SIGTERM → exit 0 for all three.
- systemd units: ExecStart binaries and the gunicorn config exist, EnvironmentFile,
  a non-root User and the hardening options are set, and `systemd-analyze verify`
  (where installed) accepts both units with paths mapped to this checkout.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ops.helpers import (
    READY_TIMEOUT_S,
    REPO,
    SECRET,
    STOP_TIMEOUT_S,
    encode,
    gitleads_payload,
    post_signed,
    venv_bin,
    wait_until,
)
from tests.process import ServerProcess, free_port

DEPLOY = REPO / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
COMPOSE_CONFIG = DEPLOY / "connectors.compose.yaml"
UNITS = [DEPLOY / "leadrelay-receiver.service", DEPLOY / "leadrelay-worker.service"]
ENV_EXAMPLE = DEPLOY / "leadrelay.env.example"
SECRETISH = re.compile(r"SECRET|TOKEN|PASSWORD|KEY", re.IGNORECASE)
COMPOSE_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "CapabilityBoundingSet": "",
    "RestrictSUIDSGID": "yes",
    "SystemCallArchitectures": "native",
}


# -- Dockerfile -------------------------------------------------------------------------------


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        whole = pending + stripped
        pending = ""
        keyword, _, arguments = whole.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def exec_form(arguments: str) -> list[str]:
    """A JSON-array (exec form) argument list, as Docker reads it."""
    parsed = json.loads(arguments)
    assert isinstance(parsed, list)
    assert all(isinstance(item, str) for item in parsed)
    return parsed


def dockerfile_env(instructions: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, arguments in instructions:
        if keyword == "ENV":
            for pair in shlex.split(arguments):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def healthcheck_command(instructions: list[tuple[str, str]]) -> list[str]:
    [arguments] = [a for k, a in instructions if k == "HEALTHCHECK"]
    options, _, command = arguments.partition("CMD ")
    assert "--interval=" in options
    assert "--timeout=" in options
    return exec_form(command)


def test_dockerfile_base_user_copies_and_commands() -> None:
    instructions = dockerfile_instructions(DOCKERFILE)
    keywords = [k for k, _ in instructions]
    assert instructions[0] == ("FROM", "python:3.11-slim")
    assert keywords.count("FROM") == 1
    for keyword, arguments in instructions:
        if keyword == "COPY":
            *sources, _target = shlex.split(arguments)
            for source in sources:  # the build context is the repository root
                assert (REPO / source).exists(), f"COPY {source}: not in the repository"
    runs = " ".join(a for k, a in instructions if k == "RUN")
    assert "pip install" in runs
    [user] = [a for k, a in instructions if k == "USER"]
    assert user not in {"root", "0"}
    assert "useradd" in runs  # the user is created in the image
    assert user in runs
    assert keywords.index("USER") < keywords.index("CMD")
    env = dockerfile_env(instructions)
    assert env["LEADRELAY_CONFIG"] == "/etc/leadrelay/connectors.yaml"
    assert not [name for name in env if SECRETISH.search(name)], env  # secrets come at run time
    [cmd] = [exec_form(a) for k, a in instructions if k == "CMD"]
    assert cmd == ["gunicorn", "-c", "deploy/gunicorn.conf.py"]
    assert "COPY deploy ./deploy" in [f"COPY {a}" for k, a in instructions if k == "COPY"]
    assert Path(venv_bin("gunicorn")).exists()
    health = healthcheck_command(instructions)
    assert health[:2] == ["python", "-c"]
    assert "/healthz" in health[2]
    compile(health[2], "HEALTHCHECK", "exec")  # valid Python


# -- compose ----------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}` and `${VAR:?error}`, from `variables`."""

    def substitute(match: re.Match[str]) -> str:
        name, operator, argument = match.groups()
        if variables.get(name):
            return variables[name]
        if operator == ":-":
            return argument
        raise AssertionError(f"compose needs {name}: {argument or 'unset'}")

    return COMPOSE_VAR.sub(substitute, value)


def config_variables() -> tuple[set[str], set[str]]:
    """(required, optional) `${VAR}`s of the mounted leadrelay config."""
    required, optional = set(), set()
    for name, operator, _ in COMPOSE_VAR.findall(COMPOSE_CONFIG.read_text(encoding="utf-8")):
        (optional if operator else required).add(name)
    return required, optional


def test_compose_services_commands_and_environment() -> None:
    services = compose()["services"]
    assert set(services) == {"receiver", "worker-1", "worker-2", "postgres"}
    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:16")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    required, optional = config_variables()
    for name in ("receiver", "worker-1", "worker-2"):
        service = services[name]
        build = service["build"]
        assert (DEPLOY / build["context"]).resolve() == REPO
        assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        mounts = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
        environment = service["environment"]
        config_path = environment["LEADRELAY_CONFIG"]
        assert (DEPLOY / mounts[config_path]).resolve() == COMPOSE_CONFIG
        assert required <= set(environment), required - set(environment)
        for variable, value in environment.items():
            if SECRETISH.search(variable):  # only references, never a literal secret
                assert str(value).startswith("${"), variable
    assert services["receiver"]["environment"]["LEADRELAY_WORKER"] == "0"
    assert "command" not in services["receiver"]  # the image's CMD: gunicorn
    for name in ("worker-1", "worker-2"):
        command = services[name]["command"]
        assert command[:2] == ["connectors", "worker"]
        assert command[command.index("--config") + 1] == "/etc/leadrelay/connectors.yaml"
        assert Path(venv_bin(command[0])).exists()
    # Everything compose insists on (`:?`) is in the example env file.
    example = ENV_EXAMPLE.read_text(encoding="utf-8")
    for name, operator, _ in COMPOSE_VAR.findall(COMPOSE.read_text(encoding="utf-8")):
        if operator == ":?":
            assert re.search(rf"^{name}=", example, re.MULTILINE), name
    assert optional  # the optional destinations have defaults in the config


def compose_environment(service: dict[str, Any], variables: dict[str, str]) -> dict[str, str]:
    return {
        name: interpolate(str(value), variables) for name, value in service["environment"].items()
    }


@pytest.mark.parametrize(
    "store_kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_compose_stack_runs_without_containers(
    store_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The receiver (Dockerfile CMD + HEALTHCHECK) and both workers, as compose runs them."""
    store_url = (
        request.getfixturevalue("postgres_url")
        if store_kind == "postgres"
        else f"sqlite:///{tmp_path / 'leadrelay.db'}"
    )
    variables = {
        "POSTGRES_PASSWORD": "compose-test-password",
        "GITLEADS_WEBHOOK_SECRET": SECRET,
        "GITPRODUCTIVITY_WEBHOOK_SECRET": "gp-secret",
        "LEADSHARK_WEBHOOK_SECRET": "ls-secret",
        "LEADHUB_WEBHOOK_SECRET": "lh-secret",
    }
    services = compose()["services"]
    csv_path = tmp_path / "leads.csv"
    # What differs from the containers: the store host, the mounted paths, the port.
    overrides = {
        "LEADRELAY_STORE": store_url,
        "LEADRELAY_CONFIG": str(COMPOSE_CONFIG),
        "LEADRELAY_CSV_PATH": str(csv_path),
    }
    instructions = dockerfile_instructions(DOCKERFILE)
    base = {**os.environ, **dockerfile_env(instructions)}

    workdir = tmp_path / "opt-leadrelay"  # laid out like the image's WORKDIR
    shutil.copytree(DEPLOY, workdir / "deploy")
    port = free_port()
    receiver_env = {
        **base,
        **compose_environment(services["receiver"], variables),
        **overrides,
        "LEADRELAY_BIND": f"127.0.0.1:{port}",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
    }
    [cmd] = [exec_form(a) for k, a in instructions if k == "CMD"]
    receiver = ServerProcess(
        [venv_bin(cmd[0]), *cmd[1:]],
        port=port,
        env=receiver_env,
        stderr_path=tmp_path / "receiver.log",
        cwd=workdir,
        ready_timeout=READY_TIMEOUT_S,
        stop_timeout=STOP_TIMEOUT_S,
    )
    health = healthcheck_command(instructions)
    health_run = [venv_bin(health[0]), *health[1:]]  # the image's python is the venv's here
    workers: list[subprocess.Popen[bytes]] = []
    logs = []
    try:
        receiver.start()
        assert subprocess.run(health_run, env=receiver_env, timeout=30).returncode == 0
        bodies = [encode(gitleads_payload(n)) for n in range(10)]
        accepted = [post_signed(receiver.base_url, body).json() for body in bodies]
        assert {a["status"] for a in accepted} == {"accepted"}
        # LEADRELAY_WORKER=0: the receiver stores, nothing is delivered yet.
        assert not csv_path.exists()
        for name in ("worker-1", "worker-2"):
            command = services[name]["command"]
            command = [venv_bin(command[0]), *command[1:]]
            command[command.index("--config") + 1] = str(COMPOSE_CONFIG)
            env = {**base, **compose_environment(services[name], variables), **overrides}
            log = (tmp_path / f"{name}.log").open("ab")
            logs.append(log)
            workers.append(
                subprocess.Popen(
                    command, env=env, stdout=log, stderr=log, cwd=tmp_path, start_new_session=True
                )
            )
        expected = sorted(a["event_id"] for a in accepted)
        wait_until(
            lambda: sorted(_csv_ids(csv_path)) == expected,
            timeout=30,
            message=lambda: f"CSV: {_csv_ids(csv_path)}",
        )
        # SIGTERM once both run their loop (before that, the default action just ends them).
        wait_until(
            lambda: all(
                '"msg":"worker started"' in (tmp_path / f"{name}.log").read_text("utf-8")
                for name in ("worker-1", "worker-2")
            ),
            timeout=30,
            message="the workers did not start",
        )
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        assert [w.wait(30) for w in workers] == [0, 0]
        assert receiver.stop() == 0
        assert subprocess.run(health_run, env=receiver_env, timeout=30).returncode != 0
    finally:
        for worker in workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(10)
        receiver.kill()
        for log in logs:
            log.close()
    assert Counter(_csv_ids(csv_path)) == Counter({event_id: 1 for event_id in expected})
    for name in ("worker-1", "worker-2"):
        text = (tmp_path / f"{name}.log").read_text(encoding="utf-8")
        assert '"msg":"worker started"' in text
        assert '"msg":"worker stopped"' in text


def _csv_ids(path: Path) -> list[str]:
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return [row["event_id"] for row in csv.DictReader(handle)]


# -- systemd ----------------------------------------------------------------------------------


def unit_sections(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections of a unit file; a key may repeat (Environment=, SystemCallFilter=)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";")):
            continue
        if stripped.startswith("[") and stripped.endswith("]"):
            current = sections.setdefault(stripped[1:-1], {})
            continue
        assert current is not None, f"{path.name}: a setting outside any section"
        key, separator, value = stripped.partition("=")
        assert separator, f"{path.name}: not key=value: {stripped}"
        current.setdefault(key, []).append(value)
    return sections


def local_path(unit_path: str) -> Path:
    """Map the units' install layout (/opt/leadrelay, its venv) onto this checkout."""
    if unit_path.startswith("/opt/leadrelay/venv/bin/"):
        return Path(venv_bin(unit_path.rsplit("/", 1)[1]))
    return REPO / unit_path.removeprefix("/opt/leadrelay/")


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_systemd_unit_runs_what_exists_hardened(unit: Path) -> None:
    service = unit_sections(unit)["Service"]
    [exec_start] = service["ExecStart"]
    binary, *arguments = shlex.split(exec_start)
    assert local_path(binary).exists(), binary
    if binary.endswith("gunicorn"):
        assert arguments[0] == "-c"
        assert local_path(arguments[1]).resolve() == (DEPLOY / "gunicorn.conf.py").resolve()
        environment = dict(e.split("=", 1) for e in service["Environment"])
        assert environment["LEADRELAY_WORKER"] == "0"
        assert environment["PROMETHEUS_MULTIPROC_DIR"].startswith("/run/leadrelay/")
        assert service["RuntimeDirectory"] == ["leadrelay"]
    else:
        assert arguments[:2] == ["worker", "--config"]
    assert service["EnvironmentFile"] == ["/etc/leadrelay/leadrelay.env"]
    assert service["User"][0] not in {"root", "0"}
    for key, value in HARDENING.items():
        assert service.get(key) == [value], key
    assert unit_sections(unit)["Install"]["WantedBy"] == ["multi-user.target"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path) -> None:
    copies = []
    for unit in UNITS:
        text = unit.read_text(encoding="utf-8")
        text = text.replace("/opt/leadrelay/venv/bin/", str(Path(venv_bin("x")).parent) + "/")
        text = text.replace("/opt/leadrelay/", f"{REPO}/")
        copy = tmp_path / unit.name
        copy.write_text(text, encoding="utf-8")
        copies.append(str(copy))
    result = subprocess.run(
        ["systemd-analyze", "verify", *copies],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""  # no unknown keys, no warnings
