"""Store unavailable → 503 (never a 2xx without a commit), and the first request after the
store is back succeeds: PostgreSQL unreachable or going away, SQLite unwritable or locked."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from leadrelay.core.ingest.receiver import create_app
from leadrelay.core.store.store import EventFilter, Store, make_engine
from tests.conftest import config_dict, gitleads_body, make_config, migrated_store, signed_headers
from tests.fakes.tcp_proxy import TcpProxy
from tests.process import ServeProcess, free_port, killed_after, run_connectors, write_config

TIMEOUT_S = 30


def post_event(client: FlaskClient, n: int) -> TestResponse:
    body = gitleads_body(n)
    return client.post("/webhooks/gitleads", data=body, headers=signed_headers("gitleads", body))


def assert_store_unavailable(status: int, body: dict[str, str]) -> None:
    assert status == 503
    assert body["error"] == "store_unavailable"
    assert body["message"]


def stored_ids(store: Store) -> set[str]:
    return {e["event_id"] for e in store.list_events(EventFilter(limit=1000))}


def via_proxy(url: str, proxy_port: int) -> str:
    """The same PostgreSQL URL, reaching the server through the proxy."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@127.0.0.1:{proxy_port}" if userinfo else f"127.0.0.1:{proxy_port}"
    return urlunsplit(parts._replace(netloc=netloc))


def postgres_port(url: str) -> int:
    return urlsplit(url).port or 5432


# -- PostgreSQL ---------------------------------------------------------------------------


def test_postgres_unreachable_is_503() -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test"
    client = create_app(make_config(url), Store(url)).test_client()

    response = post_event(client, 1)
    ready = client.get("/readyz")

    assert_store_unavailable(response.status_code, response.get_json())
    assert_store_unavailable(ready.status_code, ready.get_json())
    assert client.get("/healthz").status_code == 200
    assert client.get("/metrics").status_code == 200


def test_readyz_answers_a_code_and_keeps_the_database_error_to_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    url = f"postgresql+psycopg://probeuser@127.0.0.1:{port}/test"
    client = create_app(make_config(url), Store(url)).test_client()

    with caplog.at_level("ERROR", logger="leadrelay.receiver"):
        ready = client.get("/readyz")

    assert ready.status_code == 503
    assert ready.get_json() == {
        "error": "store_unavailable",
        "message": "the event store is not reachable",
    }
    logged = [getattr(r, "fields", {}).get("error", "") for r in caplog.records]
    assert any(str(port) in error for error in logged), logged  # the operator sees why


@pytest.mark.postgres
def test_postgres_going_away_is_503_then_recovers(postgres_url: str) -> None:
    migrated_store(postgres_url).close()
    with TcpProxy("127.0.0.1", postgres_port(postgres_url)) as proxy:
        store = Store(via_proxy(postgres_url, proxy.port))
        client = create_app(make_config(postgres_url), store).test_client()
        assert post_event(client, 1).get_json()["status"] == "accepted"  # pool is warm

        proxy.stop()
        during = post_event(client, 2)
        ready_during = client.get("/readyz")
        proxy.start()
        retried = post_event(client, 2)
        ready_after = client.get("/readyz")
        store.close()

    assert_store_unavailable(during.status_code, during.get_json())
    assert_store_unavailable(ready_during.status_code, ready_during.get_json())
    assert retried.status_code == 200
    assert retried.get_json()["status"] == "accepted"
    assert ready_after.status_code == 200
    check = Store(postgres_url)
    assert len(stored_ids(check)) == 2
    check.close()


@pytest.mark.postgres
def test_serve_process_answers_503_while_postgres_is_away(
    postgres_url: str, tmp_path: Path
) -> None:
    migrated_store(postgres_url).close()
    body = gitleads_body(3)
    headers = signed_headers("gitleads", body)
    with TcpProxy("127.0.0.1", postgres_port(postgres_url)) as proxy:
        data = config_dict(via_proxy(postgres_url, proxy.port), connectors={})
        with killed_after(ServeProcess(write_config(tmp_path / "connectors.yaml", data))) as server:
            url = server.url("/webhooks/gitleads")
            warm = requests.post(
                url,
                data=gitleads_body(4),
                headers=signed_headers("gitleads", gitleads_body(4)),
                timeout=TIMEOUT_S,
            )
            proxy.stop()
            during = requests.post(url, data=body, headers=headers, timeout=TIMEOUT_S)
            ready_during = requests.get(server.url("/readyz"), timeout=TIMEOUT_S)
            proxy.start()
            retried = requests.post(url, data=body, headers=headers, timeout=TIMEOUT_S)
            assert server.returncode() is None

    assert warm.json()["status"] == "accepted"
    assert_store_unavailable(during.status_code, during.json())
    assert_store_unavailable(ready_during.status_code, ready_during.json())
    assert retried.status_code == 200
    assert retried.json()["status"] == "accepted"
    check = Store(postgres_url)
    assert retried.json()["event_id"] in stored_ids(check)
    check.close()


# -- SQLite -------------------------------------------------------------------------------


@pytest.fixture
def sqlite_store(sqlite_url: str) -> Iterator[Store]:
    store = migrated_store(sqlite_url)
    yield store
    store.close()


def read_only_url(sqlite_url: str) -> str:
    # Opening read-only is what an unwritable file or volume amounts to, and (unlike
    # chmod) it holds when the tests run as root.
    path = sqlite_url.removeprefix("sqlite:///")
    return f"sqlite:///file:{path}?mode=ro&uri=true"


def test_sqlite_read_only_is_503_then_recovers(sqlite_url: str, sqlite_store: Store) -> None:
    client = create_app(make_config(sqlite_url), sqlite_store).test_client()
    writable_engine = sqlite_store.engine
    sqlite_store.engine = make_engine(read_only_url(sqlite_url))

    during = post_event(client, 1)
    sqlite_store.engine.dispose()
    sqlite_store.engine = writable_engine
    retried = post_event(client, 1)

    assert_store_unavailable(during.status_code, during.get_json())
    assert retried.status_code == 200
    assert retried.get_json()["status"] == "accepted"
    assert stored_ids(sqlite_store) == {retried.get_json()["event_id"]}


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="running as root: file permissions do not stop root's writes "
    "(the read-only open above covers an unwritable file)",
)
def test_sqlite_file_without_write_permission_is_503_then_recovers(
    sqlite_url: str, sqlite_store: Store, tmp_path: Path
) -> None:
    client = create_app(make_config(sqlite_url), sqlite_store).test_client()
    sqlite_store.engine.dispose()  # open connections keep their write access
    files = [tmp_path, *tmp_path.glob("leadrelay.db*")]
    modes = {path: path.stat().st_mode for path in files}
    try:
        for path in files:
            path.chmod(modes[path] & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        during = post_event(client, 1)
    finally:
        for path, mode in modes.items():
            path.chmod(mode)
    sqlite_store.engine.dispose()
    retried = post_event(client, 1)

    assert_store_unavailable(during.status_code, during.get_json())
    assert retried.get_json()["status"] == "accepted"


def test_sqlite_path_that_is_a_directory_is_503(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}"
    client = create_app(make_config(url), Store(url)).test_client()

    response = post_event(client, 1)

    assert_store_unavailable(response.status_code, response.get_json())


def test_serve_process_answers_503_while_sqlite_is_locked(sqlite_url: str, tmp_path: Path) -> None:
    # Another process holds the write lock past the busy timeout (a stuck backup, a
    # long manual transaction): the receiver must answer 503, not hang and not 2xx.
    data = config_dict(sqlite_url, connectors={})
    body = gitleads_body(5)
    headers = signed_headers("gitleads", body)
    db_path = sqlite_url.removeprefix("sqlite:///")
    with killed_after(ServeProcess(write_config(tmp_path / "connectors.yaml", data))) as server:
        url = server.url("/webhooks/gitleads")
        blocker = sqlite3.connect(db_path, isolation_level=None)
        try:
            blocker.execute("BEGIN EXCLUSIVE")
            during = requests.post(url, data=body, headers=headers, timeout=TIMEOUT_S)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        retried = requests.post(url, data=body, headers=headers, timeout=TIMEOUT_S)

    assert_store_unavailable(during.status_code, during.json())
    assert retried.status_code == 200
    assert retried.json()["status"] == "accepted"
    check = Store(sqlite_url)
    assert stored_ids(check) == {retried.json()["event_id"]}
    check.close()


def test_serve_exits_cleanly_when_the_store_is_unreachable_at_start(tmp_path: Path) -> None:
    password = "pg-pass-do-not-print"
    url = f"postgresql+psycopg://postgres:{password}@127.0.0.1:{free_port()}/test"
    config_path = write_config(tmp_path / "connectors.yaml", config_dict(url, connectors={}))

    result = run_connectors(["serve", "--config", str(config_path), "--port", str(free_port())])

    assert result.returncode != 0
    assert "unavailable" in result.stderr
    assert "postgres:****@127.0.0.1" in result.stderr
    assert password not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
