"""The receiver: verify, parse, store durably, answer (docs/design.md, "HTTP contract").

Order of checks for `POST /webhooks/<source>`: unknown source (404) → body size (413,
enforced while reading, so a chunked body with no length is bounded too) → signature
(401, before the body is parsed) → JSON (400) → parse → one commit → answer. No 2xx is
ever sent before the commit, and no error is ever an HTML page or a traceback.

`POST /webhooks/<source>` is served by `WebhookEndpoint`, a plain WSGI application in
front of Flask (`app.wsgi_app`); every other request (probes, health, metrics, the
console, errors for unknown paths) goes on to Flask. The webhook is the one request
served thousands of times a second, and Flask's request context, routing, hooks and
`Response` cost as much CPU as all of the receiver's own work on it
(benchmarks/README.md, "Where the CPU goes").
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from flask import Flask, Response, g, request
from werkzeug.datastructures import EnvironHeaders
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wsgi import get_content_length, get_input_stream

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

from leadrelay.core import metrics
from leadrelay.core.delivery.routing import route
from leadrelay.core.ingest.providers import Ignored, Parsed, SignatureError, Unreadable
from leadrelay.core.ingest.providers.base import ParseResult
from leadrelay.core.ingest.settings import ReceiverConfig, secret_warnings, unsigned_sources
from leadrelay.core.logs import fields
from leadrelay.core.schema import event_id_for, lead_identifiers
from leadrelay.core.store.store import (
    IncomingEvent,
    Store,
    StoreUnavailable,
    dump_normalized,
    utcnow,
)

log = logging.getLogger("leadrelay.receiver")

_MAX_KEPT_HEADER = 256


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def json_response(status: int, body: dict[str, Any]) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def error_body(code: str, message: str) -> dict[str, str]:
    """Every error answer's body (docs/design.md: a code and a human message)."""
    return {"error": code, "message": message}


def error_response(status: int, code: str, message: str) -> Response:
    return json_response(status, error_body(code, message))


def parse_json_object(body: bytes) -> dict[str, Any]:
    """Strict JSON: UTF-8, no NaN/Infinity, an object at the top level."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_json", "body is not valid UTF-8") from None

    def reject_constant(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    try:
        payload = json.loads(text, parse_constant=reject_constant)
    except RecursionError:
        raise ApiError(400, "invalid_json", "JSON nests too deeply") from None
    except ValueError as exc:
        raise ApiError(400, "invalid_json", f"body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise ApiError(400, "not_an_object", "the JSON body must be an object")
    return payload


def read_body(environ: WSGIEnvironment, limit: int) -> bytes:
    """The request body, or RequestEntityTooLarge if it is longer than `limit` bytes.

    With a Content-Length, Werkzeug refuses an oversized body before reading it. A chunked
    body has no length, and under gunicorn Werkzeug's limited stream stops silently at the
    limit, handing over a truncated body: one byte read past the limit tells them apart.
    A body the server cannot decode (a malformed chunk size) is the client's error: 400.
    """
    try:
        body = get_input_stream(environ, max_content_length=limit).read()
        too_long = len(body) > limit or (
            get_content_length(environ) is None
            and len(body) == limit
            and bool(environ["wsgi.input"].read(1))
        )
    except HTTPException:
        raise
    except Exception as exc:  # the WSGI server's own parse errors (gunicorn's are not OSErrors)
        raise ApiError(
            400, "invalid_body", f"the request body could not be read: {type(exc).__name__}"
        ) from None
    if too_long:
        raise RequestEntityTooLarge()
    return body


def kept_headers(environ: dict[str, Any], allowed: Sequence[str]) -> dict[str, str]:
    """The request headers the provider reads (`allowed`) and X-Request-Id, from the WSGI
    environ, named as Werkzeug names them. An allow-list: a proxy's or a client's
    credentials (X-Goog-Iap-Jwt-Assertion, X-Session-Id, ...) never reach the store."""
    kept = {}
    for name in {*(name.lower() for name in allowed), "x-request-id"}:
        value = environ.get("HTTP_" + name.upper().replace("-", "_"))
        if value is not None:
            kept[name.title()] = value[:_MAX_KEPT_HEADER]
    return kept


# PostgreSQL text cannot hold NUL, and no database text can hold a lone surrogate (which
# JSON can carry as a `\ud800` escape).
_UNSTORABLE_CHARS = re.compile("[\x00\ud800-\udfff]")


def _clean(value: str | None, limit: int) -> str | None:
    # Columns have lengths.
    if value is None:
        return None
    return _UNSTORABLE_CHARS.sub(lambda m: "" if m.group() == "\x00" else "\ufffd", value)[:limit]


_MAX_STORED_KEY = 255  # tables.dedup_keys.idempotency_key


def storable_key(idempotency_key: str) -> str:
    """The key as the dedup column can hold it, the same for every retry of one event.

    A provider's own event id can be longer than the column or carry a character no
    database text holds; either would fail the commit on every retry, so such a key is
    stored as its hash instead of being cut (cutting could merge two events).
    """
    if len(idempotency_key) <= _MAX_STORED_KEY and not _UNSTORABLE_CHARS.search(idempotency_key):
        return idempotency_key
    return "sha256:" + _sha256(idempotency_key.encode("utf-8", "surrogatepass"))


def record_for(
    config: ReceiverConfig,
    *,
    source: str,
    provider: str,
    result: ParseResult,
    body: bytes,
    headers: dict[str, str],
    received_at: datetime,
    canonical_body: Callable[[bytes], bytes] | None = None,
) -> IncomingEvent:
    """The record stored for a verified request (by the receiver, and by replay when a
    quarantined body parses after a fix). `canonical_body` is the provider's: the form of
    the body its signature binds, on which quarantined events are deduplicated."""
    base: dict[str, Any] = {
        "source": source,
        "provider": provider,
        "received_at": received_at,
        "body": body,
        "headers": headers,
    }
    if isinstance(result, Parsed):
        lead_event = result.event
        try:
            normalized = dump_normalized(lead_event)
        except ValueError as exc:
            # A lead field the database cannot hold (a lone surrogate): failing would
            # refuse every retry, so keep the raw body in quarantine instead.
            result = Unreadable(
                f"cannot store the normalized event: {exc}",
                provider_event=lead_event.provider_event,
            )
        else:
            return IncomingEvent(
                **base,
                event_id=lead_event.event_id,
                status="accepted",
                idempotency_key=storable_key(lead_event.idempotency_key),
                type=lead_event.type,
                provider_event=_clean(lead_event.provider_event, 128),
                lead_key=_clean(lead_event.lead.key, 320),
                identifiers=tuple(
                    _clean(identifier, 400) or ""
                    for identifier in lead_identifiers(
                        lead_event.lead, source=source, provider=provider
                    )
                ),
                occurred_at=lead_event.occurred_at,
                normalized=normalized,
                # Connectors disabled at run time (a 410) still get delivery rows:
                # they wait, and nothing is lost when the connector is enabled again.
                connectors=route(lead_event, config.connectors),
            )
    if isinstance(result, Ignored):
        return IncomingEvent(
            **base,
            event_id=event_id_for(source, result.idempotency_key),
            status="ignored",
            idempotency_key=storable_key(result.idempotency_key),
            provider_event=_clean(result.provider_event, 128),
            reason=_clean(result.reason, 2000),
        )
    # Unreadable: nothing identifies the event but its signed form, so dedup on that (a
    # provider retrying an unreadable body, or anyone replaying it padded or re-ordered
    # under the same signature, must not fill the quarantine).
    key = "raw:" + _sha256(canonical_body(body) if canonical_body else body)
    return IncomingEvent(
        **base,
        event_id=event_id_for(source, key),
        status="quarantined",
        idempotency_key=key,
        provider_event=_clean(result.provider_event, 128),
        reason=_clean(result.reason, 2000),
    )


def _unknown_source(source: str) -> dict[str, str]:
    return error_body("unknown_source", f"no source named {source!r}")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def http_error(exc: HTTPException) -> tuple[int, dict[str, str]]:
    """A Werkzeug HTTP error as the receiver's JSON answer."""
    code = {
        404: "not_found",
        405: "method_not_allowed",
        413: "payload_too_large",
    }.get(exc.code or 500, "http_error")
    return exc.code or 500, error_body(code, exc.description or code)


def log_request(
    method: str, path: str, status: int, started: float, log_fields: dict[str, Any]
) -> None:
    """The one log line per request, for the Flask routes and the webhook endpoint alike."""
    log.info(
        "%s %s %s",
        method,
        path,
        status,
        extra=fields(
            method=method,
            path=path,
            status=status,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
            **log_fields,
        ),
    )


class WebhookEndpoint:
    """`POST /webhooks/<source>` as a plain WSGI application; anything else goes to `app`."""

    _PREFIX = "/webhooks/"
    _JSON = "application/json"

    def __init__(self, config: ReceiverConfig, store: Store, app: WSGIApplication) -> None:
        self._config = config
        self._store = store
        self._app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") != "POST" or not path.startswith(self._PREFIX):
            return self._app(environ, start_response)
        # The server decodes the path as latin-1 (PEP 3333); URLs are UTF-8.
        source = path[len(self._PREFIX) :].encode("latin-1").decode("utf-8", "replace")
        if not source or "/" in source:
            return self._app(environ, start_response)  # no such route: Flask's 404
        started = time.perf_counter()
        log_fields: dict[str, Any] = {"source": source}
        try:
            status, body = self._answer(environ, source, log_fields)
        except Exception as exc:
            log.error("unexpected error", exc_info=exc, extra=fields(path=path))
            status, body = (
                500,
                error_body("internal_error", "unexpected error; the event was not stored"),
            )
        data = orjson.dumps(body)
        start_response(
            f"{status} {HTTP_STATUS_CODES.get(status, '')}",
            [("Content-Type", self._JSON), ("Content-Length", str(len(data)))],
        )
        log_request("POST", f"/webhooks/{source}", status, started, log_fields)
        return [data]

    def _answer(
        self, environ: WSGIEnvironment, source: str, log_fields: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        """The answer, counted by source and answer (a status, or an error code)."""
        config = self._config
        if source not in config.sources:
            status, body = 404, _unknown_source(source)
        else:
            try:
                status, body = self._receive(environ, source, log_fields)
            except RequestEntityTooLarge:
                limit = self._body_limit(source)
                status, body = 413, error_body("payload_too_large", f"body exceeds {limit} bytes")
            except ApiError as exc:
                status, body = exc.status, error_body(exc.code, exc.message)
            except HTTPException as exc:  # a body shorter than its length (ClientDisconnected)
                status, body = http_error(exc)
        answer = body.get("status") or body["error"]
        log_fields["answer"] = answer
        metrics.WEBHOOKS.labels(source if source in config.sources else "<unknown>", answer).inc()
        return status, body

    def _body_limit(self, source: str) -> int:
        return self._config.sources[source].max_body_bytes or self._config.server.max_body_bytes

    def _receive(
        self, environ: WSGIEnvironment, source: str, log_fields: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        config, store = self._config, self._store
        source_config = config.sources[source]
        provider = source_config.adapter
        body = read_body(environ, self._body_limit(source))
        headers = EnvironHeaders(environ)
        secrets = source_config.secret_values()
        if secrets:
            try:
                provider.verify(headers, body, secrets)
            except SignatureError as exc:
                metrics.SIGNATURE_FAILURES.labels(source, exc.reason).inc()
                log_fields["reason"] = exc.reason  # missing | malformed | mismatch | not_binding
                code = "signature_not_binding" if exc.reason == "not_binding" else None
                raise ApiError(401, code or "invalid_signature", exc.message) from None
        payload = parse_json_object(body)
        received_at = utcnow()
        result = provider.parse(payload, source=source, received_at=received_at, headers=headers)
        record = record_for(
            config,
            source=source,
            provider=provider.name,
            result=result,
            body=body,
            headers=kept_headers(environ, provider.kept_headers),
            received_at=received_at,
            canonical_body=provider.canonical_body,
        )
        try:
            stored = store.submit(record)
        except StoreUnavailable as exc:
            log.error("store unavailable", extra=fields(source=source, error=str(exc)))
            raise ApiError(
                503, "store_unavailable", "the event store is unavailable; retry later"
            ) from None
        log_fields.update(event_id=stored.event_id, deliveries=len(record.connectors))
        if stored.duplicate:
            return 200, {"status": "duplicate", "event_id": stored.event_id}
        if record.status == "quarantined":
            return 202, {
                "status": "quarantined",
                "event_id": stored.event_id,
                "reason": record.reason,
            }
        return 200, {"status": record.status, "event_id": stored.event_id}


def create_app(config: ReceiverConfig, store: Store) -> Flask:
    app = Flask(__name__)
    # The largest limit of any source (the console's forms are small).
    app.config["MAX_CONTENT_LENGTH"] = max(
        [config.server.max_body_bytes]
        + [source.max_body_bytes or 0 for source in config.sources.values()]
    )
    app.extensions["leadrelay"] = {"config": config, "store": store}
    app.wsgi_app = WebhookEndpoint(config, store, app.wsgi_app)  # type: ignore[method-assign]

    for name in unsigned_sources(config):
        log.warning(
            "source %s has no secrets: it accepts unsigned requests",
            name,
            extra=fields(source=name),
        )
    for warning in secret_warnings(config):
        log.warning(warning.message, extra=fields(sources=warning.sources))

    @app.before_request
    def _start_timer() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _log_request(response: Response) -> Response:
        started = g.get("started", time.perf_counter())
        log_request(request.method, request.path, response.status_code, started, {})
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        return json_response(*http_error(exc))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.error("unexpected error", exc_info=exc, extra=fields(path=request.path))
        return error_response(500, "internal_error", "unexpected error; the event was not stored")

    @app.get("/healthz")
    def healthz() -> Response:
        return json_response(200, {"status": "ok"})

    @app.get("/readyz")
    def readyz() -> Response:
        try:
            store.ping()
        except StoreUnavailable as exc:
            # The error names hosts and users: logged for the operator, not answered.
            log.error("readiness check failed", extra=fields(error=str(exc)))
            return error_response(503, "store_unavailable", "the event store is not reachable")
        return json_response(200, {"status": "ready"})

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        body, content_type = metrics.render(
            metrics.QueueCollector(lambda: store.queue_stats(utcnow()))
        )
        return Response(body, status=200, content_type=content_type)

    @app.route("/webhooks/<source>", methods=["GET", "HEAD"])
    def webhook_probe(source: str) -> Response:
        # LeadShark's "Test webhook" button sends a GET; answer it without storing anything.
        if source not in config.sources:
            metrics.WEBHOOKS.labels("<unknown>", "unknown_source").inc()
            return json_response(404, _unknown_source(source))
        return json_response(200, {"status": "ok", "source": source})

    return app
