"""The Flask receiver: verify, parse, store durably, answer (docs/design.md, "HTTP contract").

Order of checks for `POST /webhooks/<source>`: unknown source (404) → body size (413,
enforced while reading, so a chunked body with no length is bounded too) → signature
(401, before the body is parsed) → JSON (400) → parse → one commit → answer. No 2xx is
ever sent before the commit, and no error is ever an HTML page or a traceback.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

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


def read_body(limit: int) -> bytes:
    """The request body, or RequestEntityTooLarge if it is longer than `limit` bytes.

    With a Content-Length, Werkzeug refuses an oversized body before reading it. A chunked
    body has no length, and under gunicorn Werkzeug's limited stream stops silently at the
    limit, handing over a truncated body: one byte read past the limit tells them apart.
    A body the server cannot decode (a malformed chunk size) is the client's error: 400.
    """
    try:
        body = request.get_data(cache=False)
        too_long = len(body) > limit or (
            request.content_length is None
            and len(body) == limit
            and bool(request.environ["wsgi.input"].read(1))
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


def create_app(config: ReceiverConfig, store: Store) -> Flask:
    app = Flask(__name__)
    # The largest limit of any source; each source's own limit is enforced per request.
    app.config["MAX_CONTENT_LENGTH"] = max(
        [config.server.max_body_bytes]
        + [source.max_body_bytes or 0 for source in config.sources.values()]
    )
    app.extensions["leadrelay"] = {"config": config, "store": store}

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
        g.log_fields = {}

    @app.after_request
    def _log_request(response: Response) -> Response:
        elapsed_ms = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
        log.info(
            "%s %s %s",
            request.method,
            request.path,
            response.status_code,
            extra=fields(
                method=request.method,
                path=request.path,
                status=response.status_code,
                duration_ms=round(elapsed_ms, 2),
                **g.get("log_fields", {}),
            ),
        )
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        code = {
            404: "not_found",
            405: "method_not_allowed",
            413: "payload_too_large",
        }.get(exc.code or 500, "http_error")
        return error_response(exc.code or 500, code, exc.description or code)

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, exc.message)

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
            return _answer(source, 404, _unknown_source(source))
        return json_response(200, {"status": "ok", "source": source})

    @app.post("/webhooks/<source>")
    def webhook(source: str) -> Response:
        g.log_fields["source"] = source
        if source not in config.sources:
            return _answer(source, 404, _unknown_source(source))
        try:
            return _answer(source, *_receive(source))
        except RequestEntityTooLarge:
            limit = body_limit(source)
            return _answer(
                source, 413, error_body("payload_too_large", f"body exceeds {limit} bytes")
            )
        except ApiError as exc:
            return _answer(source, exc.status, error_body(exc.code, exc.message))

    def body_limit(source: str) -> int:
        return config.sources[source].max_body_bytes or config.server.max_body_bytes

    def _receive(source: str) -> tuple[int, dict[str, Any]]:
        source_config = config.sources[source]
        provider = source_config.adapter
        body = read_body(body_limit(source))
        secrets = source_config.secret_values()
        if secrets:
            try:
                provider.verify(request.headers, body, secrets)
            except SignatureError as exc:
                metrics.SIGNATURE_FAILURES.labels(source, exc.reason).inc()
                g.log_fields["reason"] = exc.reason  # missing | malformed | mismatch | not_binding
                code = "signature_not_binding" if exc.reason == "not_binding" else None
                raise ApiError(401, code or "invalid_signature", exc.message) from None
        payload = parse_json_object(body)
        received_at = utcnow()
        result = provider.parse(
            payload, source=source, received_at=received_at, headers=request.headers
        )
        record = record_for(
            config,
            source=source,
            provider=provider.name,
            result=result,
            body=body,
            headers=kept_headers(request.environ, provider.kept_headers),
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
        g.log_fields.update(event_id=stored.event_id, deliveries=len(record.connectors))
        if stored.duplicate:
            return 200, {"status": "duplicate", "event_id": stored.event_id}
        if record.status == "quarantined":
            return 202, {
                "status": "quarantined",
                "event_id": stored.event_id,
                "reason": record.reason,
            }
        return 200, {"status": record.status, "event_id": stored.event_id}

    def _answer(source: str, status: int, body: dict[str, Any]) -> Response:
        """The JSON answer, counted by source and answer (a status, or an error code)."""
        answer = body.get("status") or body["error"]
        g.log_fields["answer"] = answer
        label = source if source in config.sources else "<unknown>"
        metrics.WEBHOOKS.labels(label, answer).inc()
        return json_response(status, body)

    return app
