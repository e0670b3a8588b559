"""Shared fixtures: stores on SQLite and PostgreSQL, configs, signed requests."""

from __future__ import annotations

import json
import logging
import os
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Table, func, select

from leadrelay.core.app.config import Config, parse_config
from leadrelay.core.ingest.providers.base import ParseResult
from leadrelay.core.ingest.providers.registry import available_providers, provider_for
from leadrelay.core.ingest.receiver import create_app, record_for
from leadrelay.core.logs import LineHandler
from leadrelay.core.store.store import IncomingEvent, Store, utcnow
from tests.plugins import write_distribution
from tests.recording import RecordingConnector


@pytest.fixture(scope="session", autouse=True)
def recording_connector_plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """`type: recording` (tests.recording) as an installed plugin, for every test."""
    folder = write_distribution(
        tmp_path_factory.mktemp("plugins"),
        "leadrelay-test-connectors",
        {"leadrelay.connectors": {"recording": "tests.recording:RecordingConnector"}},
    )
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        sys.path.remove(str(folder))


@pytest.fixture(autouse=True)
def _no_global_state_left_behind() -> Iterator[None]:
    """Fail the test that leaves shared state changed: the providers registered for every
    test, or the CLI's log handler on the root logger (invoke the CLI through
    tests.cli.CliRunner, which puts the root logger back)."""
    providers = available_providers()
    yield
    root = logging.getLogger()
    leaked = [handler for handler in root.handlers if isinstance(handler, LineHandler)]
    for handler in leaked:
        root.removeHandler(handler)
    assert providers == available_providers(), "the test left a provider registered"
    assert not leaked, "the test left the CLI's log handler on the root logger"


POSTGRES_URL = os.environ.get(
    "LEADRELAY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
FIXTURES = Path(__file__).parent / "fixtures"

SECRETS = {
    "gitleads": "gitleads-test-secret",
    "gitproductivity": "gitproductivity-test-secret",
    "leadshark": "leadshark-test-secret",
    "leadhub": "leadhub-test-secret",
}


def postgres_unavailable_reason() -> str | None:
    try:
        import psycopg

        dsn = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        return (
            f"PostgreSQL not reachable at {POSTGRES_URL} ({first}); set LEADRELAY_TEST_POSTGRES_URL"
        )
    return None


@pytest.fixture(scope="session")
def postgres_base_url() -> str:
    reason = postgres_unavailable_reason()
    if reason:
        pytest.skip(reason)
    return POSTGRES_URL


@pytest.fixture
def postgres_url(postgres_base_url: str) -> Iterator[str]:
    """A private schema per test, dropped afterwards, so tests never see each other's rows."""
    import psycopg

    schema = f"lr_test_{uuid.uuid4().hex[:10]}"
    dsn = postgres_base_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in postgres_base_url else "?"
    yield f"{postgres_base_url}{separator}options=-csearch_path%3D{schema}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'leadrelay.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> str:
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A migrated store on SQLite and on PostgreSQL, closed after the test."""
    store = migrated_store(store_url)
    yield store
    store.close()


@pytest.fixture(autouse=True)
def _reset_recording() -> Iterator[None]:
    RecordingConnector.reset()
    yield
    RecordingConnector.reset()


def config_dict(store_url: str, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "store": store_url,
        "sources": {
            name: {"provider": name, "secrets": [secret]} for name, secret in SECRETS.items()
        },
        "connectors": {"rec": {"type": "recording"}},
        "delivery": {"max_attempts": 3, "backoff": ["30s", "2m"], "jitter": 0},
    }
    data.update(overrides)
    return data


def make_config(store_url: str, **overrides: Any) -> Config:
    return parse_config(config_dict(store_url, **overrides), "test.yaml", env={})


def migrated_store(url: str) -> Store:
    store = Store(url)
    store.migrate()
    return store


def table_rows(store: Store, table: Table) -> int:
    """How many rows `table` holds, read directly (not through the store's own reads)."""
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def accept_gitleads(config: Config, store: Store, n: int) -> str:
    """GitLeads event `n` posted through the receiver (Flask test client): its event id."""
    body = gitleads_body(n)
    answer = (
        create_app(config, store)
        .test_client()
        .post("/webhooks/gitleads", data=body, headers=signed_headers("gitleads", body))
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)
    event_id: str = answer.json["event_id"]
    return event_id


def fixture_body(provider: str, name: str) -> bytes:
    """A doc sample payload as compact JSON bytes."""
    payload = json.loads((FIXTURES / provider / name).read_text(encoding="utf-8"))
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def signed_headers(provider: str, body: bytes, secret: str | None = None) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    headers.update(provider_for(provider).sign(body, secret or SECRETS[provider]))
    if provider == "leadshark":
        headers["X-Webhook-Event"] = json.loads(body)["event"]
    return headers


def gitleads_body(n: int, *, event: str = "lead.created") -> bytes:
    """A distinct, valid GitLeads event per `n`."""
    return json.dumps(
        {
            "event": event,
            "timestamp": f"2026-04-24T10:{n // 60 % 60:02d}:{n % 60:02d}Z",
            "data": {
                "id": f"lead_{n}",
                "signal_type": "stargazer",
                "signal_source": "competitor/their-sdk",
                "github_username": f"dev{n}",
                "name": f"Dev Number{n}",
                "email": f"dev{n}@example.com",
                "company": "Acme",
            },
        }
    ).encode()


def request_record(
    config: Config,
    source: str,
    body: bytes,
    *,
    received_at: datetime | None = None,
    result: ParseResult | None = None,
) -> IncomingEvent:
    """What the receiver stores for a verified request to `source` carrying `body`."""
    received_at = received_at or utcnow()
    provider = config.sources[source].adapter
    if result is None:
        result = provider.parse(json.loads(body), source=source, received_at=received_at)
    return record_for(
        config,
        source=source,
        provider=provider.name,
        result=result,
        body=body,
        headers={},
        received_at=received_at,
    )
