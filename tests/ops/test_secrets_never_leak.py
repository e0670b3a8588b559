"""Distinctive secrets through the whole CLI and server surface, and none of them comes out.

Every secret a deployment holds is configured through `${VAR}` with a value containing
the marker `S3CR3T`: the four providers' webhook secrets (one source mid-rotation), a
HubSpot private-app token, Salesforce password and security token, a Slack incoming-webhook
URL (its path is the secret) and bot token, a Standard Webhooks signing secret and bearer
header, an API key for an unreachable destination, and a PostgreSQL password. Every
connector points at a fake (tests/fakes) or a local server that refuses it, so each one
fails with an auth error, and an echoing destination copies the request's headers into its
error body.

Then: validate --check-connections, test (dry run, and --live --json with DEBUG logs),
serve with DEBUG JSON logs, `trigger` (GitLeads, LeadShark) and signed POSTs
(GitProductivity, LeadHub), a forged request, /metrics /readyz /healthz, events (table and
--json), deliveries (table, --json with each attempt), replay (dead, by event and time) and
the retries it causes, nine bad configs that hold secrets (their errors, and validate and
serve on them), and an unreachable PostgreSQL store with a password (events, worker). No
secret may appear in any log line, error, CLI output, HTTP answer or metric. A webhook
URL's path (capability URLs carry their secret there) may be shown by `connectors test`,
which prints each request as configured, and nowhere else.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Response

from leadrelay.core.app.config import ConfigError, load_config
from leadrelay.core.app.samples import bundled_sample_files, load_request
from leadrelay.core.ingest.providers.registry import provider_for
from tests.fakes.hubspot import FakeHubSpot
from tests.fakes.salesforce import FakeSalesforce
from tests.fakes.server import RunningServer, serve
from tests.fakes.slack import WEBHOOK_BOT, WEBHOOK_TEAM, FakeSlack
from tests.ops.helpers import (
    READY_TIMEOUT_S,
    REPO,
    STOP_TIMEOUT_S,
    RecordingDestination,
    sqlite_readonly,
    venv_bin,
    wait_until,
)
from tests.process import ServerProcess, free_port, run_connectors, write_config
from tests.signing import sign

MARKER = "S3CR3T"
WEBHOOK_KEY = b"S3CR3T-standard-webhooks-signing-key"
CAPABILITY_PATH = "hooks/capability-7Qx9TOKENISH"

SECRETS = {
    "GITLEADS_SECRET": "S3CR3T-gitleads-xyzzy",
    "GITPRODUCTIVITY_SECRET": "S3CR3T-gitproductivity-plugh",
    "LEADSHARK_SECRET": "S3CR3T-leadshark-quux",
    "LEADSHARK_OLD_SECRET": "S3CR3T-leadshark-rotated-out",
    "LEADHUB_SECRET": "S3CR3T-leadhub-frobozz",
    "HUBSPOT_TOKEN": "pat-na1-S3CR3T-1b2c3d4e-0000-4abc-9def-123456789abc",
    "SF_PASSWORD": "S3CR3T-salesforce-password",
    "SF_TOKEN": "S3CR3TsalesforceSecurityToken",
    "SLACK_BOT_TOKEN": "xoxb-S3CR3T-123456789012-slack-bot-token",
    "WEBHOOK_SIGNING_SECRET": "whsec_" + base64.b64encode(WEBHOOK_KEY).decode(),
    "WEBHOOK_BEARER": "S3CR3T-outbound-bearer-token",
    "UNREACHABLE_KEY": "S3CR3T-unreachable-api-key",
    "PG_PASSWORD": "S3CR3T-postgres-password",
}
SLACK_WEBHOOK_SECRET = "S3CR3TslackIncomingWebhookPath"


def forbidden(env: dict[str, str]) -> list[str]:
    """Every string that must never be printed: the marker, each value, encoded forms."""
    values = [MARKER, SLACK_WEBHOOK_SECRET, env["SLACK_WEBHOOK_URL"]]
    values += [env[name] for name in SECRETS]
    values.append(SECRETS["WEBHOOK_SIGNING_SECRET"].removeprefix("whsec_"))
    return values


def assert_clean(where: str, text: str, env: dict[str, str]) -> None:
    for secret in forbidden(env):
        assert secret not in text, f"{where} shows a secret ({secret[:12]}…):\n{text[:3000]}"
    assert CAPABILITY_PATH not in text, f"{where} shows the webhook URL's path:\n{text[:3000]}"


# -- the destinations, all refusing ----------------------------------------------------------


def echo_refusal(headers: dict[str, str], body: bytes) -> Response:
    # A destination that echoes the request in its error: the connector must scrub it.
    echoed = json.dumps({"error": "unauthorized", "you_sent": headers, "body": body.decode()})
    return Response(echoed, status=401, mimetype="application/json")


@pytest.fixture(scope="module")
def destinations() -> Iterator[dict[str, Any]]:
    hubspot = FakeHubSpot()
    slack = FakeSlack()
    salesforce = FakeSalesforce()
    salesforce.add_user("leads@example.com", "the-real-password", "the-real-token")
    echo = RecordingDestination(echo_refusal)
    with ExitStack() as stack:
        running: dict[str, RunningServer] = {
            "hubspot": stack.enter_context(serve(hubspot.app)),
            "slack": stack.enter_context(serve(slack.app)),
            "salesforce": stack.enter_context(serve(salesforce.app, https=True)),
            "echo": stack.enter_context(echo.running()),
        }
        yield {"servers": running, "slack": slack, "echo": echo, "hubspot": hubspot}
        slack.release()
        salesforce.release()


@pytest.fixture(scope="module")
def setup(
    destinations: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, str]]:
    directory = tmp_path_factory.mktemp("secrets")
    servers: dict[str, RunningServer] = destinations["servers"]
    env = {
        **os.environ,
        **SECRETS,
        "SLACK_WEBHOOK_URL": (
            f"{servers['slack'].base_url}/services/{WEBHOOK_TEAM}/{WEBHOOK_BOT}/"
            f"{SLACK_WEBHOOK_SECRET}"
        ),
    }
    env.pop("LEADRELAY_DEBUG", None)  # tracebacks are opt-in; the default is what we check
    config = write_config(
        directory / "connectors.yaml",
        {
            "store": f"sqlite:///{directory / 'leadrelay.db'}",
            "sources": {
                "gitleads": {"provider": "gitleads", "secrets": ["${GITLEADS_SECRET}"]},
                "gitproductivity": {
                    "provider": "gitproductivity",
                    "secrets": ["${GITPRODUCTIVITY_SECRET}"],
                },
                "leadshark": {
                    "provider": "leadshark",
                    "secrets": ["${LEADSHARK_SECRET}", "${LEADSHARK_OLD_SECRET}"],
                },
                "leadhub": {"provider": "leadhub", "secrets": ["${LEADHUB_SECRET}"]},
            },
            "connectors": {
                "crm": {
                    "type": "hubspot",
                    "access_token": "${HUBSPOT_TOKEN}",
                    "base_url": servers["hubspot"].base_url,
                    "on_dead": "slack-bot",
                },
                "salesforce": {
                    "type": "salesforce",
                    "username": "leads@example.com",
                    "password": "${SF_PASSWORD}",
                    "security_token": "${SF_TOKEN}",
                    "login_url": servers["salesforce"].base_url,
                    "verify": servers["salesforce"].ca_file,
                    "timeout": 5,
                },
                "slack-hook": {"type": "slack", "webhook_url": "${SLACK_WEBHOOK_URL}"},
                "slack-bot": {
                    "type": "slack",
                    "token": "${SLACK_BOT_TOKEN}",
                    "channel": "C0LEADS01",
                    "base_url": f"{servers['slack'].base_url}/api/",
                },
                "outbound": {
                    "type": "webhook",
                    "url": f"{servers['echo'].base_url}/{CAPABILITY_PATH}",
                    "secrets": ["${WEBHOOK_SIGNING_SECRET}"],
                    "headers": {"Authorization": "Bearer ${WEBHOOK_BEARER}"},
                },
                "unreachable": {
                    "type": "webhook",
                    "url": f"http://127.0.0.1:{free_port()}/{CAPABILITY_PATH}",
                    "headers": {"X-Api-Key": "${UNREACHABLE_KEY}"},
                    "timeout": 2,
                },
            },
            "delivery": {
                "max_attempts": 2,
                "backoff": ["1s"],
                "jitter": 0,
                "poll_interval": "200ms",
            },
        },
    )
    return config, env


def run_all(
    commands: Sequence[Sequence[str]], env: dict[str, str]
) -> list[subprocess.CompletedProcess[str]]:
    """Independent CLI runs, a few at a time (each is a fresh interpreter)."""
    with ThreadPoolExecutor(max_workers=3) as pool:
        return list(pool.map(lambda args: run_connectors(args, env=env, timeout=60), commands))


def output(result: subprocess.CompletedProcess[str]) -> str:
    return (
        f"$ {' '.join(result.args[1:])}\n[exit {result.returncode}]\n{result.stdout}{result.stderr}"
    )


def settled(db_path: Path) -> bool:
    """Every delivery tried at least once and none still pending."""
    with sqlite_readonly(db_path) as conn:
        total = conn.execute("SELECT count(*) FROM deliveries").fetchone()[0]
        pending = conn.execute(
            "SELECT count(*) FROM deliveries WHERE status = 'pending'"
        ).fetchone()[0]
        tried = conn.execute("SELECT count(DISTINCT delivery_id) FROM attempts").fetchone()[0]
    return bool(total) and pending == 0 and tried == total


# -- the test ----------------------------------------------------------------------------


def test_no_secret_in_any_output_log_error_or_metric(
    setup: tuple[Path, dict[str, str]], destinations: dict[str, Any]
) -> None:
    config, env = setup
    cfg = ["--config", str(config)]
    db_path = config.parent / "leadrelay.db"

    # 1. Offline commands, including live sends that fail on auth.
    offline = run_all(
        [
            ["validate", *cfg, "--check-connections"],
            ["test", *cfg],
            ["--log-level", "DEBUG", "test", *cfg, "--live", "--source", "leadshark", "--json"],
        ],
        env,
    )
    check, dry, live_json = offline
    assert check.returncode == 1, output(check)
    assert "OK (4 sources, 6 connectors)" in check.stdout
    # Every destination refuses us, except that a HEAD cannot tell the echoing one's refusal.
    assert check.stdout.count("FAILED") == 5, output(check)
    assert "outbound (webhook): connection OK" in check.stdout
    assert dry.returncode == 0, output(dry)
    assert live_json.returncode == 1, output(live_json)
    failed = [c for r in json.loads(live_json.stdout) for c in r["connectors"] if not c["ok"]]
    assert {c["connector"] for c in failed} == {
        "crm",
        "salesforce",
        "slack-hook",
        "slack-bot",
        "outbound",
        "unreachable",
    }
    assert_clean("validate --check-connections", output(check), env)
    for result in (dry, live_json):
        assert_clean("connectors test", output(result), env)

    # 2. The server, with DEBUG logs, fed by `trigger` and signed POSTs (every provider).
    port = free_port()
    server = ServerProcess(
        [venv_bin("connectors"), "--log-level", "DEBUG", "serve", *cfg, "--port", str(port)],
        port=port,
        env=env,
        stderr_path=config.parent / "serve.log",
        cwd=REPO,
        ready_timeout=READY_TIMEOUT_S,
        stop_timeout=STOP_TIMEOUT_S,
    )
    http_answers: list[str] = []
    with server:
        triggers = run_all(
            [
                ["trigger", *cfg, "gitleads", "lead.created", "--url", server.base_url],
                ["trigger", *cfg, "leadshark", "email.captured", "--url", server.base_url],
            ],
            env,
        )
        for result in triggers:
            assert result.returncode == 0, output(result)
        for provider, sample in (
            ("gitproductivity", "developer.added"),
            ("leadhub", "lead.created"),
        ):
            [path] = [p for p in bundled_sample_files(provider) if p.stem == sample]
            secret = env[f"{provider.upper()}_SECRET"]
            signed = load_request(provider_for(provider), path, secret)
            response = requests.post(
                server.url(f"/webhooks/{provider}"),
                data=signed.body,
                headers=signed.headers,
                timeout=10,
            )
            assert response.json()["status"] == "accepted", response.text
            http_answers.append(response.text)
        forged_body = b'{"event":"lead.created","data":{"id":"x"}}'
        forged = requests.post(
            server.url("/webhooks/gitleads"),
            data=forged_body,
            headers=sign("gitleads", forged_body, "S3CR3T-guessed-secret"),
            timeout=10,
        )
        assert forged.status_code == 401
        http_answers.append(forged.text)
        wait_until(lambda: settled(db_path), timeout=60, message="deliveries never settled")
        listed = run_connectors(["events", *cfg, "--json"], env=env)
        event_ids = [row["event_id"] for row in json.loads(listed.stdout)]
        assert len(event_ids) == 4
        # Replays: the dead deliveries are tried again (and fail again) while we watch.
        replays = run_all(
            [
                ["replay", *cfg, "--dead"],
                ["replay", *cfg, "--event", event_ids[0], "--since", "1h"],
            ],
            env,
        )
        wait_until(lambda: settled(db_path), timeout=60, message="replays never settled")
        for path in ("/metrics", "/readyz", "/healthz"):
            response = requests.get(server.url(path), timeout=10)
            assert response.status_code == 200
            http_answers.append(response.text)
        metrics_text = http_answers[-3]
        assert 'leadrelay_deliveries{connector="crm",status="dead"}' in metrics_text
    inspections = run_all(
        [
            ["events", *cfg],
            ["deliveries", *cfg],
            ["deliveries", *cfg, "--json", "--attempts"],
        ],
        env,
    )
    for result in (*triggers, listed, *replays, *inspections):
        assert result.returncode == 0, output(result)
        assert_clean(" ".join(result.args[1:3]), output(result), env)
    for answer in http_answers:
        assert_clean("an HTTP answer", answer, env)

    # The failures really happened and were recorded with their reasons.
    rows = json.loads(inspections[2].stdout)
    dead = {row["connector"] for row in rows if row["status"] == "dead"}
    assert dead == {"crm", "salesforce", "slack-hook", "slack-bot", "outbound", "unreachable"}
    errors = " ".join(row["last_error"] or "" for row in rows)
    assert "401" in errors  # HubSpot and the echoing destination refused the credentials
    assert "INVALID_LOGIN" in errors  # Salesforce
    assert "invalid_auth" in errors  # Slack bot token
    assert "invalid_token" in errors  # Slack incoming webhook
    assert "**********" in errors  # the echoed Authorization header, scrubbed
    assert any(len(row["attempt_log"]) >= 2 for row in rows)  # replays tried again
    # The echoing destination and the fakes did receive the secrets: they were really sent.
    echoed = destinations["echo"].requests
    assert any(SECRETS["WEBHOOK_BEARER"] in h.get("Authorization", "") for h, _ in echoed)

    log = server.stderr_text()
    assert '"level":"debug"' in log
    assert '"msg":"delivery dead"' in log
    assert_clean("the serve log", log, env)


BAD_CONFIGS: dict[str, str] = {
    "a secret under a misspelled key": """
sources: {gitleads: {provider: gitleads, secrets: ["${GITLEADS_SECRET}"]}}
connectors: {crm: {type: hubspot, acces_token: "${HUBSPOT_TOKEN}"}}
""",
    "a signing secret not in whsec_ form": """
connectors: {out: {type: webhook, url: "https://example.com/in", secrets: ["${WEBHOOK_BEARER}"]}}
""",
    "a whsec_ secret of the wrong length": """
connectors: {out: {type: webhook, url: "https://example.com/in", secrets: ["whsec_${SF_TOKEN}"]}}
""",
    "a header value with a line break": """
connectors:
  out: {type: webhook, url: "https://example.com/in", headers: {X-Key: "${UNREACHABLE_KEY}\\n"}}
""",
    "a Slack connector with both modes": """
connectors:
  s: {type: slack, webhook_url: "${SLACK_WEBHOOK_URL}", token: "${SLACK_BOT_TOKEN}", channel: C1}
""",
    "secrets as a mapping": """
sources: {gitleads: {provider: gitleads, secrets: {current: "${GITLEADS_SECRET}"}}}
""",
    "a literal secret on a line with a YAML error": """
connectors: {crm: {type: hubspot, access_token: "pat-na1-S3CR3T-literal-in-file}}
""",
    "a webhook URL with credentials in it": """
connectors: {out: {type: webhook, url: "https://user:${WEBHOOK_BEARER}@example.com/in"}}
""",
    "a Salesforce password with no username": """
connectors: {sf: {type: salesforce, password: "${SF_PASSWORD}", security_token: "${SF_TOKEN}"}}
""",
}


def test_bad_configs_and_an_unreachable_store_never_echo_secrets(
    setup: tuple[Path, dict[str, str]],
) -> None:
    config, env = setup
    directory = config.parent
    paths = []
    for number, text in enumerate(BAD_CONFIGS.values()):
        path = directory / f"bad-{number}.yaml"
        path.write_text(text.lstrip(), encoding="utf-8")
        paths.append(path)
    store_path = directory / "bad-store.yaml"
    store_path.write_text(
        f'store: "postgresql+psycopg://leadrelay:${{PG_PASSWORD}}@127.0.0.1:{free_port()}/lr"\n',
        encoding="utf-8",
    )
    # Every bad config's error, as the CLI prints it after "config error: ".
    for name, path in zip(BAD_CONFIGS, paths, strict=True):
        with pytest.raises(ConfigError) as raised:
            load_config(path, env=env)
        assert str(path) in str(raised.value)
        assert_clean(name, str(raised.value), env)
    # And through the real commands, each in its own process.
    commands = [
        ["validate", "--config", str(paths[0])],
        ["serve", "--config", str(paths[1]), "--port", str(free_port())],
        ["events", "--config", str(store_path)],
        ["worker", "--config", str(store_path)],
    ]
    results = run_all(commands, env)
    for name, result in zip(["validate", "serve", "events", "worker"], results, strict=True):
        assert result.returncode != 0, f"{name}: {output(result)}"
        assert "error" in result.stderr.lower(), f"{name}: {output(result)}"
        assert "Traceback" not in result.stderr, f"{name}: {output(result)}"
        assert_clean(name, output(result), env)
    # The store errors say which store, with the password masked.
    assert "leadrelay:****@127.0.0.1" in results[-2].stderr
