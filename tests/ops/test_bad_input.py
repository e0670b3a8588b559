"""The bad-input matrix, against `connectors serve` as a real process on raw sockets.

Every case states its expected status and error code (or answer), and is checked for
what it left in the store: refused requests store nothing (events, dedup keys and
deliveries unchanged), accepted ones store exactly the bytes that were sent. No case may
get a 5xx. Decisions where JSON is valid but odd: 400-digit integers and 1e400 are valid
JSON and are accepted; a lone surrogate or nesting too deep to re-serialize is
quarantined (202, kept raw, replayable); nesting 10,000 deep exceeds the parser and is a
400; integers over 4,300 digits exceed Python's int parser and are a 400 (no provider
sends them). Answers from the HTTP server itself (oversized or malformed headers) are its own
400/431 answers (JSON too): the request never reaches the app.

A PostgreSQL run repeats the cases that reach the store (null bytes, huge numbers,
quarantine, the size limits).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.ops.helpers import (
    SECRET,
    chunked,
    encode,
    gitleads_payload,
    postgres_counts,
    postgres_event_body,
    postgres_schema,
    raw_http,
    sqlite_counts,
    sqlite_event_body,
)
from tests.process import ServeProcess, write_config
from tests.signing import hmac_hex

LIMIT = 1024 * 1024  # the default server.max_body_bytes


@dataclass(frozen=True)
class Request:
    method: str = "POST"
    path: str = "/webhooks/gitleads"
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    chunked: bool = False
    raw: bytes | None = None  # exact bytes on the wire, for what no client would send

    def wire(self) -> bytes:
        if self.raw is not None:
            return self.raw
        lines = [f"{self.method} {self.path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
        lines += [f"{name}: {value}" for name, value in self.headers]
        if self.chunked:
            lines.append("Transfer-Encoding: chunked")
        elif self.body is not None:
            lines.append(f"Content-Length: {len(self.body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if self.body is None:
            return head
        return head + (chunked(self.body) if self.chunked else self.body)


@dataclass(frozen=True)
class Case:
    name: str
    request: Request
    status: int
    error: str | None = None  # the JSON `error` code of a refusal
    answer: str | None = None  # the JSON `status` of a 2xx
    stored: int = 0  # events this request adds to the store
    json_body: bool = True  # False: answered by gunicorn itself, or a body-less answer


def signature(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac_hex(secret, body)


def signed(body: bytes, **options: object) -> Request:
    headers = (("Content-Type", "application/json"), ("X-GitLeads-Signature", signature(body)))
    return Request(headers=headers, body=body, **options)  # type: ignore[arg-type]


def with_signature(body: bytes, value: str) -> Request:
    return Request(
        headers=(("Content-Type", "application/json"), ("X-GitLeads-Signature", value)), body=body
    )


def event(n: int, **data: object) -> bytes:
    return encode(gitleads_payload(n, **data))


def padded(body: bytes, size: int) -> bytes:
    """The same JSON object, padded with whitespace to exactly `size` bytes."""
    assert body.endswith(b"}")
    assert len(body) < size
    return body[:-1] + b" " * (size - len(body)) + b"}"


def with_raw_member(n: int, raw_value: bytes) -> bytes:
    """A valid event with `"extra_value": <raw_value>` spliced in as literal JSON text."""
    return event(n)[:-2] + b',"extra_value":' + raw_value + b"}}"


def raw(text: bytes) -> Request:
    return Request(raw=text)


DEEP_ARRAY = b"[" * 10_000 + b"]" * 10_000
DEEP_OBJECT = b'{"a":' * 10_000 + b"1" + b"}" * 10_000
HUGE_INTEGER = b"9" * 400

CASES = [
    Case("valid signed event (baseline)", signed(event(1)), 200, answer="accepted", stored=1),
    # signatures
    Case("no signature header", Request(body=event(2)), 401, "invalid_signature"),
    Case("empty signature header", with_signature(event(2), ""), 401, "invalid_signature"),
    Case(
        "signed with another secret",
        with_signature(event(2), signature(event(2), "wrong-secret")),
        401,
        "invalid_signature",
    ),
    Case(
        "signature truncated to 63 hex digits",
        with_signature(event(2), signature(event(2))[:-1]),
        401,
        "invalid_signature",
    ),
    Case(
        "signature in upper-case hex",
        with_signature(event(2), "sha256=" + hmac_hex(SECRET, event(2)).upper()),
        401,
        "invalid_signature",
    ),
    Case(
        "wrong prefix sha1=",
        with_signature(event(2), "sha1=" + hmac_hex(SECRET, event(2))),
        401,
        "invalid_signature",
    ),
    Case(
        "bare hex without sha256=",
        with_signature(event(2), hmac_hex(SECRET, event(2))),
        401,
        "invalid_signature",
    ),
    Case(
        "signature of another body",
        with_signature(event(2), signature(event(3))),
        401,
        "invalid_signature",
    ),
    Case(
        "valid signature plus trailing bytes",
        with_signature(event(2), signature(event(2)) + "00"),
        401,
        "invalid_signature",
    ),
    # JSON
    Case("non-JSON body", signed(b"hello, world"), 400, "invalid_json"),
    Case("empty body", signed(b""), 400, "invalid_json"),
    Case("a JSON array", signed(b"[1,2,3]"), 400, "not_an_object"),
    Case("a JSON string", signed(b'"lead"'), 400, "not_an_object"),
    Case("JSON null", signed(b"null"), 400, "not_an_object"),
    Case("arrays nested 10,000 deep", signed(DEEP_ARRAY), 400, "invalid_json"),
    Case("objects nested 10,000 deep", signed(DEEP_OBJECT), 400, "invalid_json"),
    Case(
        "a lead with 600-deep nesting inside (valid JSON)",
        signed(with_raw_member(4, b"[" * 600 + b"]" * 600)),
        202,
        answer="quarantined",
        stored=1,
    ),
    Case("invalid UTF-8", signed(b'{"event":"lead.created","x":"\xff\xfe"}'), 400, "invalid_json"),
    Case(
        "lone surrogate escape (valid JSON)",
        signed(with_raw_member(5, b'"\\ud800"')),
        202,
        answer="quarantined",
        stored=1,
    ),
    Case("NaN literal", signed(with_raw_member(6, b"NaN")), 400, "invalid_json"),
    Case("Infinity literal", signed(with_raw_member(6, b"Infinity")), 400, "invalid_json"),
    Case("-Infinity literal", signed(with_raw_member(6, b"-Infinity")), 400, "invalid_json"),
    Case(
        "400-digit integers (valid JSON)",
        signed(
            event(7)[:-2] + b',"score":' + HUGE_INTEGER + b',"followers":-' + HUGE_INTEGER + b"}}"
        ),
        200,
        answer="accepted",
        stored=1,
    ),
    Case(
        "1e400, past a double (valid JSON)",
        signed(with_raw_member(8, b"1e400")),
        200,
        answer="accepted",
        stored=1,
    ),
    Case(
        "5,000-digit integer (past Python's int parser)",
        signed(with_raw_member(9, b"9" * 5000)),
        400,
        "invalid_json",
    ),
    Case(
        "raw NUL byte inside a JSON string",
        signed(event(9, name="A~B").replace(b"A~B", b"A\x00B")),
        400,
        "invalid_json",
    ),
    Case(
        "escaped null bytes in every string",
        signed(
            encode(
                {
                    "event": "lead.created",
                    "timestamp": "2026-04-24T10:00:10Z",
                    "data": {
                        "id": "lead_\u0000nul",
                        "github_username": "nul\u0000user",
                        "name": "Ann\u0000 Lee",
                        "email": "ann\u0000@example.com",
                        "company": "\u0000",
                        "bio": "\u0000\u0000",
                        "signal_type": "stargazer\u0000",
                    },
                }
            )
        ),
        200,
        answer="accepted",
        stored=1,
    ),
    # sizes
    Case(
        "body exactly at the limit",
        signed(padded(event(10), LIMIT)),
        200,
        answer="accepted",
        stored=1,
    ),
    Case(
        "body one byte over the limit",
        signed(padded(event(11), LIMIT + 1)),
        413,
        "payload_too_large",
    ),
    Case(
        "Content-Length of 10 GB, no body sent",
        raw(
            b"POST /webhooks/gitleads HTTP/1.1\r\nHost: x\r\nContent-Length: 10737418240\r\n"
            b"Connection: close\r\n\r\n"
        ),
        413,
        "payload_too_large",
    ),
    Case(
        "chunked, no Content-Length, under the limit",
        signed(event(12), chunked=True),
        200,
        answer="accepted",
        stored=1,
    ),
    Case(
        "chunked, exactly at the limit",
        signed(padded(event(13), LIMIT), chunked=True),
        200,
        answer="accepted",
        stored=1,
    ),
    Case(
        "chunked, one byte over the limit",
        signed(padded(event(14), LIMIT + 1), chunked=True),
        413,
        "payload_too_large",
    ),
    Case(
        "chunked with a malformed chunk size",
        raw(
            b"POST /webhooks/gitleads HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"
        ),
        400,
        "invalid_body",
    ),
    # content types do not matter: the signature and the JSON do
    Case(
        "JSON sent as application/x-www-form-urlencoded",
        Request(
            headers=(
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("X-GitLeads-Signature", signature(event(15))),
            ),
            body=event(15),
        ),
        200,
        answer="accepted",
        stored=1,
    ),
    Case(
        "no Content-Type",
        Request(headers=(("X-GitLeads-Signature", signature(event(16))),), body=event(16)),
        200,
        answer="accepted",
        stored=1,
    ),
    # HTTP framing, answered by the HTTP server (waitress) before the app
    Case(
        "a 100 KB header",
        Request(headers=(("X-Padding", "a" * 100_000),), body=event(17)),
        431,
        json_body=False,
    ),
    Case(
        # The header block is bounded in bytes (64 KiB), not in fields.
        "200 header fields",
        Request(headers=tuple((f"X-Field-{i}", "1") for i in range(200)), body=event(17)),
        401,
        "invalid_signature",
    ),
    Case(
        "a 70,000-byte request line",
        Request(path="/webhooks/" + "a" * 70_000, body=b"{}"),
        431,
        "headers_too_large",
    ),
    Case(
        "Content-Length not a number",
        raw(b"POST /webhooks/gitleads HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}"),
        400,
        json_body=False,
    ),
    Case(
        "Content-Length and Transfer-Encoding both (smuggling)",
        raw(
            b"POST /webhooks/gitleads HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        ),
        400,
        json_body=False,
    ),
    # routing and methods
    Case(
        "unknown source",
        Request(
            path="/webhooks/nope",
            headers=(("X-GitLeads-Signature", signature(event(18))),),
            body=event(18),
        ),
        404,
        "unknown_source",
    ),
    Case(
        "unknown source, GET", Request(method="GET", path="/webhooks/nope"), 404, "unknown_source"
    ),
    Case(
        "encoded slash in the source",
        Request(path="/webhooks/..%2Fadmin", body=b"{}"),
        404,
        "not_found",
    ),
    Case("GET (a provider's test button)", Request(method="GET"), 200, answer="ok"),
    Case("HEAD", Request(method="HEAD"), 200, json_body=False),
    Case("PUT", Request(method="PUT", body=event(19)), 405, "method_not_allowed"),
    Case("DELETE", Request(method="DELETE"), 405, "method_not_allowed"),
    Case("PATCH", Request(method="PATCH", body=event(19)), 405, "method_not_allowed"),
    Case("TRACE", Request(method="TRACE"), 405, "method_not_allowed"),
    Case("OPTIONS (Flask's automatic answer)", Request(method="OPTIONS"), 200, json_body=False),
]

# The cases that reach the store, for the PostgreSQL run.
STORE_CASES = [
    c
    for c in CASES
    if c.stored
    or c.name in {"body one byte over the limit", "chunked, one byte over the limit", "NaN literal"}
]


def expected_body(case: Case) -> bytes | None:
    return case.request.body if case.stored else None


def check_answer(case: Case, status: int, body: bytes) -> dict[str, object] | None:
    assert status == case.status, (case.name, status, body[:300])
    assert status < 500
    if not case.json_body:
        return None
    answer = json.loads(body)
    if case.error is not None:
        assert answer["error"] == case.error, (case.name, answer)
        assert answer["message"]
    if case.answer is not None:
        assert answer["status"] == case.answer, (case.name, answer)
    return answer


# -- SQLite, through `connectors serve` -----------------------------------------------------


@pytest.fixture(scope="module")
def sqlite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServeProcess, Path]]:
    directory = tmp_path_factory.mktemp("bad-input")
    db_path = directory / "leadrelay.db"
    config = write_config(
        directory / "connectors.yaml",
        {
            "store": f"sqlite:///{db_path}",
            "sources": {"gitleads": {"provider": "gitleads", "secrets": [SECRET]}},
            "connectors": {"archive": {"type": "csv", "path": str(directory / "leads.csv")}},
        },
    )
    server = ServeProcess(config).start()
    try:
        yield server, db_path
    finally:
        server.kill()  # a graceful stop is not what this module tests


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case: Case, sqlite_server: tuple[ServeProcess, Path]) -> None:
    server, db_path = sqlite_server
    before = sqlite_counts(db_path)
    status, body = raw_http(server.port, case.request.wire())
    answer = check_answer(case, status, body)
    after = sqlite_counts(db_path)
    assert after["events"] - before["events"] == case.stored, case.name
    assert after["dedup_keys"] - before["dedup_keys"] == case.stored, case.name
    routed = 1 if case.answer == "accepted" else 0  # one CSV delivery per accepted lead
    assert after["deliveries"] - before["deliveries"] == routed, case.name
    if case.stored:
        assert answer is not None
        # Nothing lost or altered: the stored body is byte for byte what was sent.
        assert sqlite_event_body(db_path, str(answer["event_id"])) == expected_body(case)
    assert server.returncode() is None, server.stderr_text()


def test_server_still_accepts_after_the_matrix(sqlite_server: tuple[ServeProcess, Path]) -> None:
    server, db_path = sqlite_server
    before = sqlite_counts(db_path)["events"]
    status, body = raw_http(server.port, signed(event(99)).wire())
    assert (status, json.loads(body)["status"]) == (200, "accepted")
    assert sqlite_counts(db_path)["events"] == before + 1
    assert "Traceback" not in server.stderr_text()


# -- PostgreSQL, the cases that reach the store --------------------------------------------


@pytest.fixture(scope="module")
def postgres_server(
    tmp_path_factory: pytest.TempPathFactory, postgres_base_url: str
) -> Iterator[tuple[ServeProcess, str]]:
    directory = tmp_path_factory.mktemp("bad-input-pg")
    with postgres_schema(postgres_base_url) as url:
        config = write_config(
            directory / "connectors.yaml",
            {
                "store": url,
                "sources": {"gitleads": {"provider": "gitleads", "secrets": [SECRET]}},
                "connectors": {"archive": {"type": "csv", "path": str(directory / "leads.csv")}},
            },
        )
        server = ServeProcess(config).start()
        try:
            yield server, url
        finally:
            server.kill()


@pytest.mark.postgres
@pytest.mark.parametrize("case", STORE_CASES, ids=[c.name for c in STORE_CASES])
def test_bad_input_on_postgres(case: Case, postgres_server: tuple[ServeProcess, str]) -> None:
    server, url = postgres_server
    before = postgres_counts(url)
    status, body = raw_http(server.port, case.request.wire())
    answer = check_answer(case, status, body)
    after = postgres_counts(url)
    assert after["events"] - before["events"] == case.stored, case.name
    assert after["dedup_keys"] - before["dedup_keys"] == case.stored, case.name
    if case.stored:
        assert answer is not None
        assert postgres_event_body(url, str(answer["event_id"])) == expected_body(case)
