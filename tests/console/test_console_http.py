"""The console over HTTP (Flask test client): access control, CSRF, sessions, every page
and action, and that no configured secret ever reaches a page."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from argon2 import PasswordHasher

from leadrelay.core.app.cli import main
from leadrelay.core.app.config import ConfigError
from leadrelay.core.app.console import with_one_time_password
from leadrelay.core.app.server import Runtime
from leadrelay.core.delivery.contract import Permanent
from leadrelay.core.delivery.worker import Worker
from leadrelay.core.store.store import DeliveryFilter, IncomingEvent, Store, utcnow
from tests.cli import CliRunner
from tests.conftest import gitleads_body, make_config, request_record
from tests.console.helpers import PASSWORD, console_config, csrf_from, log_in, page_token
from tests.recording import RecordingConnector

ALL_PAGES = (
    "/console/",
    "/console/events",
    "/console/events?q=dev1@example.com",
    "/console/deliveries",
    "/console/deliveries?status=dead",
    "/console/quarantine",
    "/console/connectors",
)


@dataclass
class Console:
    runtime: Runtime
    client: Any

    @property
    def store(self) -> Store:
        return self.runtime.store


def _build(config: Any) -> Runtime:
    runtime = Runtime.build(config)
    runtime.store.migrate()
    return runtime


@pytest.fixture
def console(sqlite_url: str) -> Iterator[Console]:
    runtime = _build(console_config(sqlite_url))
    yield Console(runtime, runtime.app.test_client())
    runtime.stop()


@pytest.fixture
def logged_in(console: Console) -> Console:
    assert log_in(console.client).status_code == 302
    return console


def _ingest(store: Store, config: Any, *numbers: int) -> list[str]:
    records = [request_record(config, "gitleads", gitleads_body(n)) for n in numbers]
    return [r.event_id for r in store.submit_many(records)]


def _dead_delivery(
    console: Console, error: str = "HTTP 400: Property values were not valid"
) -> str:
    """One event whose `rec` delivery went dead with `error` as the destination's answer."""
    (event_id,) = _ingest(console.store, console.runtime.config, 1)
    RecordingConnector.scripts["rec"] = [Permanent(error)]
    assert Worker(console.runtime.config, console.store).run_once("rec") == 1
    return event_id


def _delivery(store: Store, event_id: str) -> dict[str, Any]:
    (row,) = store.list_deliveries(DeliveryFilter(event_id=event_id))
    return row


# -- loading ------------------------------------------------------------------------------


def test_without_a_console_section_console_urls_are_404_and_nothing_of_it_loads(
    sqlite_url: str,
) -> None:
    code = (
        "import sys\n"
        "from leadrelay.core.app.config import parse_config\n"
        "from leadrelay.core.app.server import Runtime\n"
        f"config = parse_config({{'store': {sqlite_url!r}}})\n"
        "runtime = Runtime.build(config)\n"
        "runtime.store.migrate()\n"
        "client = runtime.app.test_client()\n"
        "print([client.get(p).status_code for p in ('/console/', '/console/login')])\n"
        "print(sorted(m for m in sys.modules if 'console' in m or m.startswith('argon2')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    statuses, modules = result.stdout.splitlines()
    assert statuses == "[404, 404]"
    assert modules == "[]"


def test_a_console_without_users_is_refused_off_loopback_and_gets_a_one_time_password_on_it(
    sqlite_url: str,
) -> None:
    config = make_config(sqlite_url, console={})
    with pytest.raises(ConfigError) as refused:
        with_one_time_password(config, "0.0.0.0")  # noqa: S104 - the address refused
    assert refused.value.key_path == "console.users"
    with pytest.raises(ConfigError):
        Runtime.build(config)  # outside `connectors serve` (gunicorn -c): users required

    ready, password = with_one_time_password(config, "127.0.0.1")
    assert password
    runtime = _build(ready)
    try:
        client = runtime.app.test_client()
        assert log_in(client, "admin", "wrong").status_code == 401
        assert log_in(client, "admin", password).status_code == 302
        assert client.get("/console/").status_code == 200
    finally:
        runtime.stop()


def test_users_must_be_argon2_hashes(sqlite_url: str) -> None:
    with pytest.raises(ConfigError) as refused:
        make_config(sqlite_url, console={"users": {"admin": "plaintext-password"}})
    assert refused.value.key_path == "console.users.admin"
    assert "plaintext-password" not in str(refused.value)


def test_hash_password_prints_an_argon2_hash_of_the_password() -> None:
    result = CliRunner().invoke(
        main, ["console", "hash-password", "--password-stdin"], input="s3cret-passw0rd\n"
    )
    assert result.exit_code == 0, result.output
    hashed = result.output.strip()
    assert hashed.startswith("$argon2id$")
    assert PasswordHasher().verify(hashed, "s3cret-passw0rd")


# -- access control -------------------------------------------------------------------------


def test_every_page_redirects_to_the_login_without_a_session(console: Console) -> None:
    for path in (*ALL_PAGES, "/console/events/evt_x"):
        response = console.client.get(path)
        assert response.status_code == 302, path
        location = urlsplit(response.headers["Location"])
        assert location.path == "/console/login", path
        assert parse_qs(location.query)["next"] == [path], path


def test_api_style_requests_without_a_session_get_401_json(console: Console) -> None:
    for path in ALL_PAGES:
        response = console.client.get(path, headers={"Accept": "application/json"})
        assert response.status_code == 401, path
        assert response.get_json()["error"] == "unauthorized"


def test_actions_without_a_session_change_nothing(console: Console) -> None:
    token = csrf_from(console.client.get("/console/login").get_data(as_text=True))
    response = console.client.post("/console/connectors/rec/disable", data={"csrf_token": token})
    assert response.status_code == 302
    assert "/console/login" in response.headers["Location"]
    assert console.store.disabled_connectors() == {}


def test_a_wrong_password_is_refused_and_logged_without_the_password(
    console: Console, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="leadrelay.console"):
        response = log_in(console.client, "admin", "not-the-password-xyz")
    assert response.status_code == 401
    assert "Wrong user name or password" in response.get_data(as_text=True)
    assert console.client.get("/console/").status_code == 302
    failures = [r for r in caplog.records if r.getMessage() == "console login failed"]
    assert len(failures) == 1
    assert "not-the-password-xyz" not in caplog.text
    assert PASSWORD not in caplog.text


def test_failed_logins_are_limited_per_client(console: Console) -> None:
    for _ in range(5):
        assert log_in(console.client, "admin", "wrong").status_code == 401
    blocked = log_in(console.client, "admin", PASSWORD)  # even the right password now
    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) > 0
    assert console.client.get("/console/").status_code == 302

    other = console.runtime.app.test_client()
    other.environ_base["REMOTE_ADDR"] = "10.1.2.3"
    assert log_in(other).status_code == 302


def test_the_next_parameter_only_leads_within_the_console(console: Console) -> None:
    for target, expected in (
        ("//evil.example/x", "/console/"),
        ("https://evil.example/", "/console/"),
        ("/console/connectors", "/console/connectors"),
    ):
        client = console.runtime.app.test_client()
        token = csrf_from(client.get("/console/login").get_data(as_text=True))
        response = client.post(
            "/console/login",
            data={"csrf_token": token, "username": "admin", "password": PASSWORD, "next": target},
        )
        assert response.headers["Location"] == expected


def test_the_session_cookie_is_httponly_samesite_strict_and_secure_over_https(
    console: Console, sqlite_url: str
) -> None:
    cookie = log_in(console.client).headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Path=/console" in cookie
    assert "Secure" not in cookie

    https = console.runtime.app.test_client()
    assert "Secure" in log_in(https, base_url="https://localhost").headers["Set-Cookie"]

    spoofed = console.runtime.app.test_client()  # the proxy header is not trusted by default
    token = csrf_from(spoofed.get("/console/login").get_data(as_text=True))
    response = spoofed.post(
        "/console/login",
        data={"csrf_token": token, "username": "admin", "password": PASSWORD},
        headers={"X-Forwarded-Proto": "https"},
    )
    assert "Secure" not in response.headers["Set-Cookie"]

    behind_proxy = _build(console_config(sqlite_url, console={"trust_proxy_headers": True}))
    try:
        client = behind_proxy.app.test_client()
        token = csrf_from(client.get("/console/login").get_data(as_text=True))
        response = client.post(
            "/console/login",
            data={"csrf_token": token, "username": "admin", "password": PASSWORD},
            headers={"X-Forwarded-Proto": "https"},
        )
        assert "Secure" in response.headers["Set-Cookie"]
    finally:
        behind_proxy.stop()


def test_logging_out_ends_the_session(logged_in: Console) -> None:
    token = page_token(logged_in.client)
    response = logged_in.client.post("/console/logout", data={"csrf_token": token})
    assert response.status_code == 302
    assert logged_in.client.get("/console/").status_code == 302


def test_a_password_change_in_the_config_ends_existing_sessions(
    console: Console, sqlite_url: str
) -> None:
    cookie = log_in(console.client).headers["Set-Cookie"].split(";")[0]
    other_hash = PasswordHasher().hash("another password")
    changed = _build(console_config(sqlite_url, console={"users": {"admin": other_hash}}))
    try:
        client = changed.app.test_client()
        response = client.get("/console/", headers={"Cookie": cookie})
        assert response.status_code == 302
    finally:
        changed.stop()


# -- CSRF -----------------------------------------------------------------------------------


def test_posts_without_a_valid_csrf_token_are_refused_and_change_nothing(
    logged_in: Console,
) -> None:
    event_id = _dead_delivery(logged_in)
    attempts = [
        ("/console/connectors/rec/disable", {}),
        ("/console/connectors/rec/disable", {"csrf_token": "forged"}),
        (f"/console/events/{event_id}/replay", {"connector": "rec"}),
        ("/console/deliveries/replay", {"all": "1"}),
        ("/console/quarantine/reparse", {"all": "1"}),
        ("/console/logout", {}),
    ]
    for path, form in attempts:
        assert logged_in.client.post(path, data=form).status_code == 400, path
    assert logged_in.store.disabled_connectors() == {}
    assert _delivery(logged_in.store, event_id)["status"] == "dead"
    assert logged_in.client.get("/console/").status_code == 200  # still logged in


def test_the_login_form_needs_a_csrf_token_too(console: Console) -> None:
    response = console.client.post(
        "/console/login", data={"username": "admin", "password": PASSWORD}
    )
    assert response.status_code == 400
    assert console.client.get("/console/").status_code == 302


# -- pages ----------------------------------------------------------------------------------


def test_every_page_renders_uncached_under_a_restrictive_csp(logged_in: Console) -> None:
    event_id = _dead_delivery(logged_in)
    for path in (*ALL_PAGES, f"/console/events/{event_id}", "/console/login"):
        response = logged_in.client.get(path)
        assert response.status_code in (200, 302), path
        assert response.headers["Cache-Control"] == "no-store", path
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp
        assert "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp


def test_an_unknown_event_is_a_404_page(logged_in: Console) -> None:
    response = logged_in.client.get("/console/events/evt_nope")
    assert response.status_code == 404
    assert "No event evt_nope" in response.get_data(as_text=True)


def test_the_overview_counts_sources_and_connectors(logged_in: Console) -> None:
    _ingest(logged_in.store, logged_in.runtime.config, 1, 2, 3)
    RecordingConnector.scripts["rec"] = [Permanent("refused")]
    Worker(logged_in.runtime.config, logged_in.store).run_once("rec")
    html = logged_in.client.get("/console/").get_data(as_text=True)
    sources = html.split('id="sources"')[1].split("</table>")[0]
    gitleads_row = re.search(r"gitleads</a></td>(.*?)</tr>", sources, re.S)
    assert gitleads_row
    assert re.findall(r'class="n">(?:<a[^>]*>)?(\d+)', gitleads_row.group(1))[:3] == ["3", "0", "0"]
    connectors = html.split('id="connectors"')[1].split("</table>")[0]
    # pending, waiting, retrying, delivered, skipped, dead
    assert re.findall(r'class="n">(?:<a[^>]*>)?(\d+)', connectors) == ["0", "0", "0", "2", "0", "1"]
    assert "<svg" in html
    assert "peak 3" in html


def test_search_finds_an_event_by_email_lead_key_provider_id_and_event_id(
    logged_in: Console,
) -> None:
    event_ids = _ingest(logged_in.store, logged_in.runtime.config, 1, 2, 3)
    for query in ("DEV2@example.com", "email:dev2@example.com", "lead_2", event_ids[1]):
        html = logged_in.client.get("/console/events", query_string={"q": query}).get_data(
            as_text=True
        )
        assert re.findall(r'class="event-link" href="[^"]+">(evt_\w+)<', html) == [event_ids[1]], (
            query
        )


def test_events_filters_and_keyset_pages_cover_every_event_once(logged_in: Console) -> None:
    event_ids = set(_ingest(logged_in.store, logged_in.runtime.config, *range(120)))
    seen: list[str] = []
    path = "/console/events?source=gitleads&status=accepted"
    for _ in range(10):  # bounded: 120 events are 3 pages of 50
        html = logged_in.client.get(path).get_data(as_text=True)
        seen += re.findall(r'class="event-link" href="[^"]+">(evt_\w+)<', html)
        following = re.search(r'id="next-page" href="([^"]+)"', html)
        if not following:
            break
        path = following.group(1).replace("&amp;", "&")
    assert len(seen) == len(event_ids)
    assert set(seen) == event_ids
    empty = logged_in.client.get("/console/events?source=leadhub").get_data(as_text=True)
    assert "No events match." in empty


def test_the_event_page_shows_the_lead_payload_and_each_attempt_with_the_answer(
    logged_in: Console,
) -> None:
    event_id = _dead_delivery(logged_in, "HTTP 400: Property values were not valid: phone")
    html = logged_in.client.get(f"/console/events/{event_id}").get_data(as_text=True)
    assert "dev1@example.com" in html  # the normalized lead
    assert "&#34;signal_type&#34;: &#34;stargazer&#34;" in html  # the raw payload
    assert 'id="delivery-rec"' in html
    assert "HTTP 400: Property values were not valid: phone" in html
    assert "Replay to this connector" in html
    assert "Replay to all" in html
    # What the attempt sent (the recording connector's request names the event), kept with
    # the attempt, instead of a preview computed now.
    assert "Request sent with attempt 1" in html
    assert f"&#34;event_id&#34;: &#34;{event_id}&#34;" in html
    assert "computed now" not in html


def test_replay_to_one_connector_queues_its_delivery_again(logged_in: Console) -> None:
    event_id = _dead_delivery(logged_in)
    token = page_token(logged_in.client)
    response = logged_in.client.post(
        f"/console/events/{event_id}/replay", data={"csrf_token": token, "connector": "rec"}
    )
    assert response.status_code == 302
    delivery = _delivery(logged_in.store, event_id)
    assert (delivery["status"], delivery["attempts"]) == ("pending", 0)
    page = logged_in.client.get(response.headers["Location"]).get_data(as_text=True)
    assert "1 deliveries queued again." in page

    assert Worker(logged_in.runtime.config, logged_in.store).run_once("rec") == 1
    assert _delivery(logged_in.store, event_id)["status"] == "delivered"
    again = logged_in.client.post(
        f"/console/events/{event_id}/replay", data={"csrf_token": token}
    )  # replay to all: a delivered one can be sent again too
    assert again.status_code == 302
    assert _delivery(logged_in.store, event_id)["status"] == "pending"


def test_replay_to_an_unknown_connector_is_refused(logged_in: Console) -> None:
    event_id = _dead_delivery(logged_in)
    response = logged_in.client.post(
        f"/console/events/{event_id}/replay",
        data={"csrf_token": page_token(logged_in.client), "connector": "nope"},
    )
    assert response.status_code == 400
    assert _delivery(logged_in.store, event_id)["status"] == "dead"


def test_dead_letters_replay_the_selected_ones_or_all(logged_in: Console) -> None:
    config = logged_in.runtime.config
    event_ids = _ingest(logged_in.store, config, 1, 2, 3)
    RecordingConnector.scripts["rec"] = [Permanent("no"), Permanent("no"), Permanent("no")]
    Worker(config, logged_in.store).run_once("rec")
    html = logged_in.client.get("/console/deliveries?status=dead").get_data(as_text=True)
    ids = re.findall(r'name="id" value="(\d+)"', html)
    assert len(ids) == 3
    token = csrf_from(html)
    logged_in.client.post("/console/deliveries/replay", data={"csrf_token": token, "id": ids[:1]})
    states = sorted(_delivery(logged_in.store, e)["status"] for e in event_ids)
    assert states == ["dead", "dead", "pending"]
    logged_in.client.post("/console/deliveries/replay", data={"csrf_token": token, "all": "1"})
    assert {_delivery(logged_in.store, e)["status"] for e in event_ids} == {"pending"}


def test_quarantined_events_are_reparsed_from_the_console(logged_in: Console) -> None:
    # A body the current code reads, stored as quarantined (as if the code was fixed since).
    body = gitleads_body(7)
    record = request_record(logged_in.runtime.config, "gitleads", body)
    quarantined = IncomingEvent(
        event_id="evt_quarantined_once",
        source="gitleads",
        provider="gitleads",
        status="quarantined",
        idempotency_key="raw:test",
        received_at=utcnow(),
        body=body,
        headers={},
        reason="could not read it then",
    )
    logged_in.store.submit_many([quarantined])
    html = logged_in.client.get("/console/quarantine").get_data(as_text=True)
    assert "evt_quarantined_once" in html
    assert "could not read it then" in html
    response = logged_in.client.post(
        "/console/quarantine/reparse",
        data={"csrf_token": csrf_from(html), "event_id": "evt_quarantined_once"},
    )
    page = logged_in.client.get(response.headers["Location"]).get_data(as_text=True)
    assert f"now accepted as {record.event_id}" in page
    assert logged_in.store.get_event("evt_quarantined_once")["status"] == "replayed"
    assert logged_in.store.get_event(record.event_id)["status"] == "accepted"


def test_disabling_a_connector_holds_its_deliveries_and_enabling_resumes(
    logged_in: Console,
) -> None:
    token = page_token(logged_in.client)
    logged_in.client.post("/console/connectors/rec/disable", data={"csrf_token": token})
    assert logged_in.store.disabled_connectors() == {"rec": "disabled in the console by admin"}
    (event_id,) = _ingest(logged_in.store, logged_in.runtime.config, 5)
    assert Worker(logged_in.runtime.config, logged_in.store).run_once("rec") == 0
    page = logged_in.client.get(f"/console/events/{event_id}").get_data(as_text=True)
    assert "waiting: connector disabled: disabled in the console by admin" in page
    connectors = logged_in.client.get("/console/connectors").get_data(as_text=True)
    assert ">Enable</button>" in connectors

    logged_in.client.post("/console/connectors/rec/enable", data={"csrf_token": token})
    assert logged_in.store.disabled_connectors() == {}
    assert Worker(logged_in.runtime.config, logged_in.store).run_once("rec") == 1
    assert _delivery(logged_in.store, event_id)["status"] == "delivered"


def test_an_unknown_connector_cannot_be_toggled(logged_in: Console) -> None:
    response = logged_in.client.post(
        "/console/connectors/nope/disable", data={"csrf_token": page_token(logged_in.client)}
    )
    assert response.status_code == 404
    assert logged_in.store.disabled_connectors() == {}


# -- secrets --------------------------------------------------------------------------------

SECRET_VALUES = {
    "source": "whsec-source-secret-0001",
    "hubspot": "pat-na1-hubspot-token-0002",
    "slack": "https://hooks.slack.com/services/T0/B0/slack-secret-0003",
    "webhook_secret": "whsec_c2VjcmV0LXdlYmhvb2stMDAwNC1wYWRkaW5nLTMyYnl0ZQ==",
    "webhook_header": "Bearer header-secret-0005",
    "webhook_path": "path-secret-0006",
    "salesforce_password": "sf-password-0007",
    "salesforce_token": "sf-security-token-0008",
    "session": "console-session-key-0009",
}


def test_no_configured_secret_appears_on_any_page(sqlite_url: str) -> None:
    s = SECRET_VALUES
    config = console_config(
        sqlite_url,
        console={"secret_key": s["session"]},
        sources={"gitleads": {"provider": "gitleads", "secrets": [s["source"]]}},
        connectors={
            "rec": {"type": "recording"},
            "crm": {
                "type": "hubspot",
                "access_token": s["hubspot"],
                "base_url": "http://127.0.0.1:9",
            },
            "chat": {"type": "slack", "webhook_url": s["slack"]},
            "hook": {
                "type": "webhook",
                "url": f"https://hooks.example.com/in/{s['webhook_path']}?token={s['webhook_path']}",
                "secrets": [s["webhook_secret"]],
                "headers": {"Authorization": s["webhook_header"]},
            },
            "sf": {
                "type": "salesforce",
                "username": "ops@example.com",
                "password": s["salesforce_password"],
                "security_token": s["salesforce_token"],
            },
        },
    )
    runtime = _build(config)
    try:
        client = runtime.app.test_client()
        store = runtime.store
        event_ids = _ingest(store, config, 1, 2)
        # A destination that echoes a credential in its error text.
        RecordingConnector.scripts["rec"] = [
            Permanent(f"401: token {s['hubspot']} rejected"),
            Permanent(f"bad header {s['webhook_header']}"),
        ]
        Worker(config, store).run_once("rec")
        store.set_connector_disabled("hook", f"410 Gone from {s['webhook_path']}")
        assert log_in(client).status_code == 302
        pages = [*ALL_PAGES, *(f"/console/events/{e}" for e in event_ids)]
        pages += ["/console/deliveries?status=pending", "/console/events?q=lead_1"]
        rendered = {path: client.get(path) for path in pages}
        for path, response in rendered.items():
            assert response.status_code == 200, path
            html = response.get_data(as_text=True)
            for name, value in s.items():
                assert value not in html, f"{name} secret on {path}"
        event_page = rendered[f"/console/events/{event_ids[0]}"].get_data(as_text=True)
        assert "**********" in event_page  # the echoed token was there, masked
        assert 'id="delivery-crm"' in event_page  # the previews were rendered
    finally:
        runtime.stop()


@pytest.mark.parametrize(
    "since", ["1000000d", "99999999999999999999d", "0001-01-01T00:00:00+01:00", "soon"]
)
def test_a_time_filter_out_of_range_is_a_400_not_a_500(logged_in: Console, since: str) -> None:
    response = logged_in.client.get("/console/events", query_string={"since": since})
    assert response.status_code == 400
    assert "since" in response.get_data(as_text=True)
