"""The outbound webhook connector against a local receiver that verifies like a real one.

The receiver checks every request with the reference `standardwebhooks` library, so
"Delivered" here means a Standard Webhooks consumer accepted the signature.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import yaml
from flask import Flask, Response, request
from pydantic import ValidationError
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from leadrelay.connectors.webhook import (
    DEFAULT_RATE_LIMIT_DELAY,
    ERROR_BODY_CHARS,
    GONE_ERROR_PREFIX,
    USER_AGENT,
    WebhookConnector,
    WebhookOptions,
)
from leadrelay.core.app.config import ConfigError, parse_config
from leadrelay.core.delivery.contract import (
    ConnectionCheckFailed,
    Delivered,
    Permanent,
    RateLimited,
    Retryable,
)
from leadrelay.core.delivery.registry import connector_class
from leadrelay.core.schema import LEAD_EVENT_TYPES, Activity, LeadEvent
from tests.factories import make_event
from tests.fakes.server import serve

OLD_SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
NEW_SECRET = "whsec_" + base64.b64encode(bytes(range(100, 132))).decode()
AUTH_TOKEN = "Bearer rcv-token-4f9a2c"
MASK = "**********"


@dataclass(frozen=True)
class Captured:
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes


@dataclass
class Receiver:
    """A consumer that knows only NEW_SECRET, plus endpoints answering chosen statuses."""

    captured: list[Captured] = field(default_factory=list)
    release_stalled: threading.Event = field(default_factory=threading.Event)

    def app(self) -> Flask:
        app = Flask("webhook-receiver")

        def capture() -> Captured:
            item = Captured(
                path=request.path,
                headers={name.lower(): value for name, value in request.headers.items()},
                body=request.get_data(),
            )
            self.captured.append(item)
            return item

        @app.post("/verify")
        def verify() -> Response:
            item = capture()
            try:
                Webhook(NEW_SECRET).verify(item.body, item.headers)
            except WebhookVerificationError as exc:
                return Response(json.dumps({"error": str(exc)}), 401)
            return Response(status=204)

        @app.route("/status/<int:code>", methods=["POST", "HEAD"])
        def status(code: int) -> Response:
            capture()
            headers = {}
            if "retry_after" in request.args:
                headers["Retry-After"] = request.args["retry_after"]
            if "location" in request.args:
                headers["Location"] = request.args["location"]
            return Response(request.args.get("body", ""), code, headers)

        @app.post("/echo-auth")
        def echo_auth() -> Response:
            capture()
            # A receiver that quotes the credential back, then goes on far too long.
            text = f"rejected token {request.headers['Authorization']} " + "x" * 2000
            return Response(text, 400)

        @app.route("/landing", methods=["GET", "POST"])
        def landing() -> Response:
            capture()
            return Response(status=200)

        @app.post("/stall")
        def stall() -> Response:
            capture()
            self.release_stalled.wait(timeout=5)
            return Response(status=204)

        return app


@pytest.fixture(scope="module")
def running() -> Iterator[tuple[Receiver, str]]:
    receiver = Receiver()
    with serve(receiver.app()) as server:
        yield receiver, server.base_url
        receiver.release_stalled.set()


@pytest.fixture
def receiver(running: tuple[Receiver, str]) -> Receiver:
    running[0].captured.clear()
    return running[0]


@pytest.fixture
def base_url(running: tuple[Receiver, str]) -> str:
    return running[1]


def connector(url: str, **options: Any) -> WebhookConnector:
    return WebhookConnector("forward", WebhookOptions(type="webhook", url=url, **options))


def send_one(conn: WebhookConnector, event: LeadEvent | None = None) -> Any:
    try:
        outcomes = conn.send([event or make_event()])
    finally:
        conn.close()
    assert len(outcomes) == 1
    return outcomes[0]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def event_of_type(event_type: str) -> LeadEvent:
    activity = (
        Activity(kind="star", text="starred vercel/next.js", url="https://github.com/vercel")
        if event_type == "lead.activity"
        else None
    )
    return make_event(
        type=event_type,
        activity=activity,
        first_name="Zoë",
        last_name="Ångström",
        full_name="Zoë Ångström 山田",
        company="Müller & Söhne",
    )


# -- signed delivery a Standard Webhooks consumer accepts ---------------------------------


@pytest.mark.parametrize("event_type", LEAD_EVENT_TYPES)
def test_every_event_type_is_accepted_by_a_verifying_receiver(
    receiver: Receiver, base_url: str, event_type: str
) -> None:
    event = event_of_type(event_type)

    outcome = send_one(connector(f"{base_url}/verify", secrets=[NEW_SECRET]), event)

    assert outcome == Delivered("HTTP 204")
    [got] = receiver.captured
    expected = event.model_dump(mode="json", exclude={"raw"})
    assert json.loads(got.body) == expected
    # Compact UTF-8, non-ASCII written as itself, not \u-escaped.
    assert got.body == json.dumps(expected, separators=(",", ":"), ensure_ascii=False).encode()
    assert "Zoë Ångström 山田".encode() in got.body
    assert got.headers["webhook-id"] == event.event_id
    assert got.headers["content-type"] == "application/json"
    assert got.headers["user-agent"] == USER_AGENT
    assert USER_AGENT.startswith("leadrelay/")


def test_a_tampered_body_fails_at_the_receiver(receiver: Receiver, base_url: str) -> None:
    assert send_one(connector(f"{base_url}/verify", secrets=[NEW_SECRET])) == Delivered("HTTP 204")
    [genuine] = receiver.captured
    tampered = genuine.body.replace(b"jane@example.com", b"mallory@example.com")
    assert tampered != genuine.body

    signed = {name: genuine.headers[name] for name in ("webhook-id", "webhook-timestamp")}
    signed["webhook-signature"] = genuine.headers["webhook-signature"]

    replay = requests.post(f"{base_url}/verify", data=tampered, headers=signed, timeout=5)

    assert replay.status_code == 401
    assert replay.json() == {"error": "No matching signature found"}


def test_the_receiver_rejects_a_secret_it_does_not_know(base_url: str) -> None:
    outcome = send_one(connector(f"{base_url}/verify", secrets=[OLD_SECRET]))

    assert isinstance(outcome, Permanent)
    assert outcome.message.startswith("HTTP 401")
    assert "No matching signature found" in outcome.message


def test_rotation_signs_with_both_secrets_and_a_receiver_knowing_either_accepts(
    receiver: Receiver, base_url: str
) -> None:
    outcome = send_one(connector(f"{base_url}/verify", secrets=[OLD_SECRET, NEW_SECRET]))

    assert outcome == Delivered("HTTP 204")  # the receiver knows only NEW_SECRET
    [got] = receiver.captured
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    assert Webhook(OLD_SECRET).verify(got.body, got.headers)["event_id"]


def test_without_secrets_requests_are_unsigned_but_still_carry_id_and_timestamp(
    receiver: Receiver, base_url: str
) -> None:
    event = make_event()

    assert send_one(connector(f"{base_url}/status/200"), event) == Delivered("HTTP 200")
    [got] = receiver.captured
    assert "webhook-signature" not in got.headers
    assert got.headers["webhook-id"] == event.event_id
    assert got.headers["webhook-timestamp"].isdigit()


@pytest.mark.parametrize("include_raw", [False, True])
def test_raw_provider_payload_only_when_asked(
    receiver: Receiver, base_url: str, include_raw: bool
) -> None:
    raw = {"event": "lead.created", "data": {"id": "gl_42", "login": "jdoe"}}

    outcome = send_one(
        connector(f"{base_url}/verify", secrets=[NEW_SECRET], include_raw=include_raw),
        make_event(raw=raw),
    )

    assert outcome == Delivered("HTTP 204")
    body = json.loads(receiver.captured[0].body)
    if include_raw:
        assert body["raw"] == raw
    else:
        assert "raw" not in body


def test_a_lone_surrogate_in_the_payload_is_sent_as_an_ascii_escape(
    receiver: Receiver, base_url: str
) -> None:
    event = make_event(raw={"note": "broken \ud83d pair"}, first_name="Zoë")

    outcome = send_one(
        connector(f"{base_url}/verify", secrets=[NEW_SECRET], include_raw=True), event
    )

    assert outcome == Delivered("HTTP 204")
    body = receiver.captured[0].body
    assert body.isascii()
    assert json.loads(body)["raw"] == {"note": "broken \ud83d pair"}
    assert json.loads(body)["lead"]["first_name"] == "Zoë"


def test_each_event_of_a_batch_gets_its_own_outcome_in_order(
    receiver: Receiver, base_url: str
) -> None:
    events = [make_event(), make_event(), make_event()]
    conn = connector(f"{base_url}/verify", secrets=[NEW_SECRET])

    try:
        outcomes = conn.send(events)
    finally:
        conn.close()

    assert outcomes == [Delivered("HTTP 204")] * 3
    assert [got.headers["webhook-id"] for got in receiver.captured] == [
        event.event_id for event in events
    ]


# -- custom headers, repr and preview -------------------------------------------------------


def test_custom_headers_are_sent_and_masked_in_repr(receiver: Receiver, base_url: str) -> None:
    conn = connector(
        f"{base_url}/status/200",
        secrets=[NEW_SECRET],
        headers={"Authorization": AUTH_TOKEN, "X-Tenant": "acme"},
    )

    assert send_one(conn) == Delivered("HTTP 200")
    got = receiver.captured[0].headers
    assert got["authorization"] == AUTH_TOKEN
    assert got["x-tenant"] == "acme"
    text = repr(conn)
    assert AUTH_TOKEN not in text
    assert "acme" not in text
    assert NEW_SECRET.removeprefix("whsec_") not in text
    assert "Authorization" in text


def test_a_custom_user_agent_replaces_the_default(receiver: Receiver, base_url: str) -> None:
    conn = connector(f"{base_url}/status/200", headers={"user-agent": "acme-relay/2"})

    assert send_one(conn) == Delivered("HTTP 200")
    assert receiver.captured[0].headers["user-agent"] == "acme-relay/2"


def test_preview_is_exactly_the_request_sent_with_custom_headers_masked(
    receiver: Receiver, base_url: str
) -> None:
    url = f"{base_url}/verify"
    event = event_of_type("lead.created")
    conn = connector(url, secrets=[OLD_SECRET, NEW_SECRET], headers={"Authorization": AUTH_TOKEN})

    assert send_one(conn, event) == Delivered("HTTP 204")
    [sent] = receiver.captured
    preview = conn.preview(event, timestamp=int(sent.headers["webhook-timestamp"]))

    assert preview["method"] == "POST"
    assert preview["url"] == f"{base_url}/{MASK}"
    assert preview["body"].encode() == sent.body
    assert preview["headers"] == {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Authorization": MASK,
        "webhook-id": event.event_id,
        "webhook-timestamp": sent.headers["webhook-timestamp"],
        "webhook-signature": sent.headers["webhook-signature"],
    }
    assert AUTH_TOKEN not in json.dumps(preview)


def test_preview_defaults_to_the_event_received_time_and_needs_no_network() -> None:
    event = make_event()
    conn = connector(f"http://127.0.0.1:{closed_port()}/hook", secrets=[NEW_SECRET])

    preview = conn.preview(event)

    headers = preview["headers"]
    assert headers["webhook-timestamp"] == str(int(event.received_at.timestamp()))
    body = preview["body"].encode()
    assert headers["webhook-signature"] == Webhook(NEW_SECRET).sign(
        event.event_id, event.received_at, body.decode()
    )
    assert conn.preview(event) == preview


# -- outcomes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("200", Delivered("HTTP 200")),
        ("201", Delivered("HTTP 201")),
        ("204", Delivered("HTTP 204")),
        ("429?retry_after=7", RateLimited("HTTP 429 TOO MANY REQUESTS", 7.0)),
        (
            "429?retry_after=Wed,%2021%20Oct%202015%2007:28:00%20GMT",
            RateLimited("HTTP 429 TOO MANY REQUESTS", 0.0),
        ),
        ("429", RateLimited("HTTP 429 TOO MANY REQUESTS", DEFAULT_RATE_LIMIT_DELAY)),
        ("503?retry_after=12", RateLimited("HTTP 503 SERVICE UNAVAILABLE", 12.0)),
        ("503", Retryable("HTTP 503 SERVICE UNAVAILABLE")),
        ("500?body=db%20down", Retryable("HTTP 500 INTERNAL SERVER ERROR: db down")),
        ("502", Retryable("HTTP 502 BAD GATEWAY")),
        ("408", Retryable("HTTP 408 REQUEST TIMEOUT")),
        ("404?body=no%20such%20hook", Permanent("HTTP 404 NOT FOUND: no such hook")),
        ("400?body=email%20invalid", Permanent("HTTP 400 BAD REQUEST: email invalid")),
        ("422", Permanent("HTTP 422 UNPROCESSABLE ENTITY")),
    ],
)
def test_status_codes_map_to_outcomes(base_url: str, query: str, expected: Any) -> None:
    assert send_one(connector(f"{base_url}/status/{query}")) == expected


def test_410_gone_is_permanent_and_asks_to_disable_the_connector(
    base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    conn = connector(
        f"{base_url}/status/410?body=unsubscribed", headers={"Authorization": AUTH_TOKEN}
    )
    assert conn.disable_requested is None

    with caplog.at_level(logging.WARNING, logger="leadrelay.connectors.webhook"):
        outcome = send_one(conn)

    assert isinstance(outcome, Permanent)
    assert outcome.message.startswith(f"{GONE_ERROR_PREFIX}: ")
    assert "HTTP 410 GONE: unsubscribed" in outcome.message
    assert conn.disable_requested == outcome.message
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "'forward'" in record.getMessage()
    assert "410 Gone" in record.getMessage()
    assert AUTH_TOKEN not in record.getMessage()


def test_other_failures_do_not_ask_to_disable(base_url: str) -> None:
    conn = connector(f"{base_url}/status/404")

    assert isinstance(send_one(conn), Permanent)
    assert conn.disable_requested is None


@pytest.mark.parametrize("code", [301, 302, 307, 308])
def test_redirects_are_permanent_and_never_followed(
    receiver: Receiver, base_url: str, code: int
) -> None:
    target = "https://elsewhere.example/landing"

    outcome = send_one(connector(f"{base_url}/status/{code}?location={target}"))

    assert isinstance(outcome, Permanent)
    assert outcome.message.startswith(f"HTTP {code} redirect to {target}")
    assert [got.path for got in receiver.captured] == [f"/status/{code}"]


def test_a_same_host_redirect_is_not_followed_either(receiver: Receiver, base_url: str) -> None:
    outcome = send_one(connector(f"{base_url}/status/307?location={base_url}/landing"))

    assert isinstance(outcome, Permanent)
    assert f"redirect to {base_url}/landing" in outcome.message
    assert [got.path for got in receiver.captured] == ["/status/307"]


def test_error_body_is_scrubbed_and_cut_to_500_characters(base_url: str) -> None:
    conn = connector(f"{base_url}/echo-auth", headers={"Authorization": AUTH_TOKEN})

    outcome = send_one(conn)

    assert isinstance(outcome, Permanent)
    assert AUTH_TOKEN not in outcome.message
    assert "rcv-token" not in outcome.message
    prefix, _, body = outcome.message.partition(": ")
    assert prefix == "HTTP 400 BAD REQUEST"
    assert body.startswith(f"rejected token {MASK}")
    assert len(body) <= ERROR_BODY_CHARS


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.zapier.com/hooks/catch/123/cap-token-9d8e/",
        "https://hook.eu1.make.com/?token=cap-token-9d8e",
    ],
)
def test_a_capability_url_shows_only_its_host_in_preview_and_repr(url: str) -> None:
    conn = connector(url)

    shown = [conn.preview(event_of_type("lead.created"))["url"], repr(conn), repr(conn.options)]

    for text in shown:
        assert "cap-token-9d8e" not in text
    host = url.split("/")[2]
    assert shown[0] == f"https://{host}/{MASK}"
    assert f"https://{host}/{MASK}" in shown[1]


def test_a_url_without_path_or_query_is_shown_as_it_is() -> None:
    conn = connector("https://example.com")

    assert conn.preview(event_of_type("lead.created"))["url"] == "https://example.com"


def test_connection_refused_is_retryable_and_keeps_the_url_path_out() -> None:
    url = f"http://127.0.0.1:{closed_port()}/hooks/catch/123/cap-token-9d8e"

    outcome = send_one(connector(url))

    assert isinstance(outcome, Retryable)
    assert outcome.message.startswith("network error: ConnectionError")
    assert "cap-token-9d8e" not in outcome.message


def test_a_slow_receiver_times_out_as_retryable(receiver: Receiver, base_url: str) -> None:
    try:
        outcome = send_one(connector(f"{base_url}/stall", timeout=0.2))
    finally:
        receiver.release_stalled.set()

    assert isinstance(outcome, Retryable)
    assert outcome.message.startswith("no response within 0.2s")


class TricklingDestination:
    """A raw socket server that answers one request with a status line, then one header
    byte every `interval` seconds: each read is quick, the answer never ends."""

    def __init__(self, *, interval: float = 0.05, total_bytes: int = 400) -> None:
        self.interval = interval
        self.total_bytes = total_bytes
        self.sent = 0
        self.cut_short = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        connection, _ = self._listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\r\n")
            stop = threading.Event()
            try:
                for _ in range(self.total_bytes):  # bounded: 400 x 50 ms = 20 s at most
                    connection.sendall(b"X")
                    self.sent += 1
                    if stop.wait(self.interval):
                        break
            except OSError:  # the client shut its socket
                self.cut_short.set()

    def close(self, timeout: float) -> None:
        self._thread.join(timeout)
        self._listener.close()


def test_the_timeout_bounds_the_whole_call_not_each_read() -> None:
    destination = TricklingDestination()
    try:
        outcome = send_one(connector(f"http://127.0.0.1:{destination.port}/hook", timeout=0.5))
        destination.close(timeout=30)
    finally:
        destination._listener.close()

    assert isinstance(outcome, Retryable)
    assert outcome.message.startswith("no response within 0.5s"), outcome.message
    # Each byte came within the per-read timeout; only the whole-call deadline ended it.
    assert destination.cut_short.is_set()
    assert destination.sent < destination.total_bytes


# -- check_connection -----------------------------------------------------------------------


def test_check_connection_accepts_a_post_only_endpoint(base_url: str) -> None:
    conn = connector(f"{base_url}/verify")
    try:
        conn.check_connection()  # HEAD answers 405 here: reachable is what counts
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("path", "complaint"),
    [
        ("/status/410", "410 Gone"),
        ("/status/308?location=https://elsewhere.example/", "redirect to https://elsewhere"),
    ],
)
def test_check_connection_fails_on_gone_or_redirect(
    base_url: str, path: str, complaint: str
) -> None:
    conn = connector(f"{base_url}{path}")
    try:
        with pytest.raises(ConnectionCheckFailed, match=complaint):
            conn.check_connection()
    finally:
        conn.close()


def test_check_connection_fails_when_nothing_listens() -> None:
    conn = connector(f"http://127.0.0.1:{closed_port()}/hook")
    try:
        with pytest.raises(ConnectionCheckFailed, match="network error"):
            conn.check_connection()
    finally:
        conn.close()


# -- options ----------------------------------------------------------------------------


def test_the_registry_resolves_the_webhook_type() -> None:
    assert connector_class("webhook") is WebhookConnector
    assert WebhookConnector.batch_size == 1


def test_defaults() -> None:
    options = WebhookOptions(type="webhook", url="https://example.com/hook")

    assert options.secrets == []
    assert options.headers == {}
    assert options.timeout == 10
    assert options.include_raw is False
    assert options.enabled is True


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"url": "ftp://example.com/hook"}, "http:// or https://"),
        ({"url": "example.com/hook"}, "http:// or https://"),
        ({"url": "https:///hook"}, "has no host"),
        ({"url": "https://example.com:99999/hook"}, "not a valid URL"),
        ({"url": "https://user:pw-7c1@example.com/hook"}, "user:password@"),
        ({"url": "https://example.com/a hook"}, "whitespace"),
        ({"secrets": ["plain-passphrase-7c1"]}, "secret #1: must start with 'whsec_'"),
        ({"secrets": [NEW_SECRET, "whsec_%%%%7c1"]}, "secret #2: the part after"),
        ({"headers": {"Content-Type": "text/plain"}}, "is set by the connector"),
        ({"headers": {"webhook-signature": "v1,x"}}, "is set by the connector"),
        ({"headers": {"Bad Header": "x"}}, "not a valid HTTP header name"),
        ({"headers": {"X-Token": "tok-7c1\r\nX-Evil: 1"}}, "line break"),
        ({"timeout": 0}, "greater than 0"),
    ],
)
def test_invalid_options_are_refused_without_echoing_values(
    options: dict[str, Any], complaint: str
) -> None:
    values = {"type": "webhook", "url": "https://example.com/hook", **options}

    with pytest.raises(ValidationError) as refused:
        WebhookOptions(**values)

    assert complaint in str(refused.value)
    assert "7c1" not in str(refused.value)


def test_five_lines_of_yaml_configure_a_signed_forward() -> None:
    document = yaml.safe_load(
        """
        connectors:
          mine:
            type: webhook
            url: https://hooks.example.com/catch/1/abc
            secrets: ["${HOOK_SECRET}"]
        """
    )

    config = parse_config(document, "connectors.yaml", env={"HOOK_SECRET": NEW_SECRET})
    with pytest.raises(ConfigError) as refused:
        parse_config(document, "connectors.yaml", env={"HOOK_SECRET": "plain-7c1"})

    options = config.connectors["mine"]
    assert isinstance(options, WebhookOptions)
    assert options.secrets[0].get_secret_value() == NEW_SECRET
    assert "connectors.mine.secrets" in str(refused.value)
    assert "7c1" not in str(refused.value)
