"""A fake HubSpot CRM API (contacts and notes) that answers like the real one.

Serve `FakeHubSpot().app` with `tests.fakes.server.serve`. State lives in memory: contacts by
id with their properties (email and properties flagged unique are unique), notes, and
note -> contact associations. Requests are checked the way HubSpot checks them, in its
order: bearer token (401), rate limit (429), scopes (403), request shape and property
values (400 VALIDATION_ERROR, or a 207 listing per-input errors for inputs that carry an
`objectWriteTraceId`).

Error bodies follow HubSpot's documented shape (`status`, `message`, `correlationId`,
`category`, `errors[].context`); the 401/403/429 bodies and the `X-HubSpot-RateLimit-*`
headers are copied from real responses. Texts HubSpot does not document (the >100 inputs
message, a unique-value conflict) are marked "fake text" where they are built.

Tests steer it with `fail_next`, `rate_limit_next`, `slow_next`, `latency_ms`,
`fail_every` (every Nth request answered 503), a rolling `RateLimit`, `multi_status=False`
(refuse a whole batch on one bad input, as HubSpot's batch endpoints do without
multi-status), and read `calls`/`requests` for assertions. `overlaps` lists the contacts
that were ever in two upserts at the same moment (injected delays included: a request the
client gave up on is still being applied).
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, request

READ_SCOPE = "crm.objects.contacts.read"
WRITE_SCOPE = "crm.objects.contacts.write"
ALL_SCOPES = frozenset({READ_SCOPE, WRITE_SCOPE})

# HubSpot default contact properties the fake knows (a subset of the real list).
DEFAULT_CONTACT_PROPERTIES = (
    "email",
    "firstname",
    "lastname",
    "jobtitle",
    "company",
    "phone",
    "mobilephone",
    "website",
    "address",
    "city",
    "state",
    "zip",
    "country",
    "hs_linkedin_url",
    "lifecyclestage",
    "hs_lead_status",
    "message",
)
# HubSpot refuses a property value longer than this (characters, counted as JavaScript does).
PROPERTY_VALUE_LIMIT = 65_536
NOTE_PROPERTIES = ("hs_note_body", "hs_timestamp", "hubspot_owner_id", "hs_attachment_ids")
NOTE_TO_CONTACT = 202
BATCH_LIMIT = 100
# HubSpot's INVALID_EMAIL: dot-atom local part (at most 64) and a domain of non-empty labels.
EMAIL_PATTERN = re.compile(
    r"^(?=[^@]{1,64}@)[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}$"
)


@dataclass(frozen=True)
class RateLimit:
    """A rolling window: `max_requests` per `window_ms`, as HubSpot's ten-secondly limit."""

    max_requests: int
    window_ms: int = 10_000
    policy_name: str = "TEN_SECONDLY_ROLLING"
    retry_after: int | None = None  # HubSpot does not document Retry-After on 429s


@dataclass
class _Fault:
    status: int | None = None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_ms: int = 0
    path: str | None = None  # only requests to this path, else any


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    body: Any


class _Refusal(Exception):
    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


class FakeHubSpot:
    def __init__(self, **settings: Any) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Event()  # cuts injected delays short when a test ends
        self.reset(**settings)
        self.app = self._build_app()

    def reset(
        self,
        *,
        tokens: dict[str, Iterable[str]] | None = None,
        expired_tokens: Iterable[str] = (),
        rate_limit: RateLimit | None = None,
        latency_ms: int = 0,
        fail_every: int = 0,
        multi_status: bool = True,
        unique_properties: Iterable[str] = (),
        extra_properties: Iterable[str] = (),
    ) -> None:
        """Forget all state and counters and apply these settings (one server serves many tests)."""
        with self._lock:
            self.tokens = {
                token: frozenset(scopes)
                for token, scopes in (tokens or {"test-token": ALL_SCOPES}).items()
            }
            self.expired_tokens = set(expired_tokens)
            self.rate_limit = rate_limit
            self.latency_ms = latency_ms
            self.fail_every = fail_every
            self.multi_status = multi_status
            self.unique_properties = {"email", *unique_properties}
            self.contact_properties = {
                *DEFAULT_CONTACT_PROPERTIES,
                *self.unique_properties,
                *extra_properties,
            }
            self.contacts: dict[str, dict[str, Any]] = {}
            self.notes: dict[str, dict[str, Any]] = {}
            self.associations: list[dict[str, Any]] = []
            self.calls: Counter[str] = Counter()
            self.requests: list[RecordedRequest] = []
            self._ids = itertools.count(1001)
            self._faults: deque[_Fault] = deque()
            self._hits: deque[float] = deque()
            self._in_flight: Counter[str] = Counter()
            self.overlaps: list[str] = []
            self._wake.clear()

    # -- steering ---------------------------------------------------------------------------

    def fail_next(
        self,
        times: int = 1,
        *,
        status: int = 500,
        body: Any = None,
        headers: dict[str, str] | None = None,
        path: str | None = None,
    ) -> None:
        """The next `times` requests (to `path`, if given) get `status` and `body`.

        Without a body, a HubSpot-like one for the status is sent.
        """
        for _ in range(times):
            self._faults.append(_Fault(status, body, dict(headers or {}), path=path))

    def rate_limit_next(
        self,
        times: int = 1,
        *,
        retry_after: int | None = None,
        policy: str = "TEN_SECONDLY_ROLLING",
    ) -> None:
        headers = _rate_limit_headers(100, 0, 10_000)
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        for _ in range(times):
            self._faults.append(_Fault(429, _rate_limit_body(policy), headers))

    def slow_next(self, times: int = 1, *, delay_ms: int) -> None:
        """The next `times` requests are answered normally, after `delay_ms`."""
        for _ in range(times):
            self._faults.append(_Fault(delay_ms=delay_ms))

    def close(self) -> None:
        """Release requests still sleeping in an injected delay."""
        self._wake.set()

    # -- reading state ----------------------------------------------------------------------

    def contact_by(self, prop: str, value: str) -> dict[str, Any] | None:
        with self._lock:
            return self._find(prop, value, include_archived=True)

    def notes_for(self, contact_id: str) -> list[dict[str, Any]]:
        with self._lock:
            note_ids = [a["from"] for a in self.associations if a["to"] == contact_id]
            return [self.notes[note_id] for note_id in note_ids]

    def calls_to(self, method: str, path: str) -> int:
        return self.calls[f"{method} {path}"]

    # -- the app ----------------------------------------------------------------------------

    def _build_app(self) -> Flask:
        app = Flask("fake-hubspot")
        self._routes: dict[tuple[str, str], tuple[str, Callable[[Any], tuple[int, Any]]]] = {
            ("GET", "/crm/v3/objects/contacts"): (READ_SCOPE, self._list_contacts),
            ("POST", "/crm/v3/objects/contacts/batch/upsert"): (WRITE_SCOPE, self._upsert),
            ("POST", "/crm/v3/objects/contacts/batch/read"): (READ_SCOPE, self._batch_read),
            ("POST", "/crm/v3/objects/contacts/batch/update"): (WRITE_SCOPE, self._update),
            ("POST", "/crm/v3/objects/contacts/batch/archive"): (WRITE_SCOPE, self._archive),
            ("POST", "/crm/v3/objects/notes"): (WRITE_SCOPE, self._create_note),
            ("POST", "/crm/v3/objects/notes/batch/create"): (WRITE_SCOPE, self._create_notes),
        }

        @app.route("/<path:path>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
        def handle(path: str) -> Response:
            route_path = "/" + path
            method = request.method
            body = request.get_json(silent=True) if request.data else None
            with self._lock:
                self.calls[f"{method} {route_path}"] += 1
                self.requests.append(RecordedRequest(method, route_path, dict(request.args), body))
                fault = next((f for f in self._faults if f.path in (None, route_path)), None)
                if fault is not None:
                    self._faults.remove(fault)
                elif self.fail_every and len(self.requests) % self.fail_every == 0:
                    fault = _Fault(503)
                contacts = _upserted_contacts(route_path, body)
                self.overlaps += [c for c in contacts if self._in_flight[c]]
                self._in_flight.update(contacts)
            try:
                return self._answer(method, route_path, fault)
            finally:
                with self._lock:
                    self._in_flight.subtract(contacts)

        return app

    def _answer(self, method: str, route_path: str, fault: _Fault | None) -> Response:
        delay_ms = self.latency_ms + (fault.delay_ms if fault else 0)
        if delay_ms:
            self._wake.wait(delay_ms / 1000)
        try:
            if fault is not None and fault.status is not None:
                body = fault.body if fault.body is not None else _default_body(fault.status)
                raise _Refusal(fault.status, body, fault.headers)
            rate_headers = self._authorize_and_count()
            route = self._routes.get((method, route_path))
            if route is None:
                raise _Refusal(404, _error("Not Found", "OBJECT_NOT_FOUND"))
            scope, handler = route
            self._check_scope(scope)
            status, payload = handler(self._json_body() if method == "POST" else None)
        except _Refusal as refusal:
            return _respond(refusal.status, refusal.body, refusal.headers)
        return _respond(status, payload, rate_headers)

    def _authorize_and_count(self) -> dict[str, str]:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
        if token in self.expired_tokens:
            raise _Refusal(
                401,
                _error(
                    "The OAuth token used to make this call expired 7 second(s) ago.",
                    "EXPIRED_AUTHENTICATION",
                ),
                {"X-HubSpot-Auth-Failure": "401 Unauthorized"},
            )
        if token not in self.tokens:
            raise _Refusal(
                401,
                _error(
                    "Authentication credentials not found. This API supports OAuth 2.0 "
                    "authentication and you can find more details at "
                    "https://developers.hubspot.com/docs/methods/auth/oauth-overview",
                    "INVALID_AUTHENTICATION",
                ),
                {"X-HubSpot-Auth-Failure": "401 Unauthorized"},
            )
        limit = self.rate_limit
        if limit is None:
            return {}
        with self._lock:
            now = time.monotonic()
            while self._hits and now - self._hits[0] >= limit.window_ms / 1000:
                self._hits.popleft()
            if len(self._hits) >= limit.max_requests:
                headers = _rate_limit_headers(limit.max_requests, 0, limit.window_ms)
                if limit.retry_after is not None:
                    headers["Retry-After"] = str(limit.retry_after)
                raise _Refusal(429, _rate_limit_body(limit.policy_name), headers)
            self._hits.append(now)
            remaining = limit.max_requests - len(self._hits)
        return _rate_limit_headers(limit.max_requests, remaining, limit.window_ms)

    def _check_scope(self, scope: str) -> None:
        token = request.headers["Authorization"].removeprefix("Bearer ").strip()
        if scope not in self.tokens[token]:
            raise _Refusal(
                403,
                {
                    "status": "error",
                    "message": "This app hasn't been granted all required scopes to make this "
                    "call. Read more about required scopes here: "
                    "https://developers.hubspot.com/scopes.",
                    "correlationId": str(uuid.uuid4()),
                    "errors": [
                        {
                            "message": "One or more of the following scopes are required.",
                            "context": {"requiredGranularScopes": [scope]},
                        }
                    ],
                    "links": {"scopes": "https://developers.hubspot.com/scopes"},
                    "category": "MISSING_SCOPES",
                },
            )

    def _json_body(self) -> dict[str, Any]:
        if not request.is_json:
            raise _Refusal(415, _error("Content type not supported", "VALIDATION_ERROR"))
        try:
            body = json.loads(request.get_data(as_text=True))
        except ValueError as error:
            raise _Refusal(
                400, _error(f"Invalid input JSON: {error}", "VALIDATION_ERROR")
            ) from None
        if not isinstance(body, dict):
            raise _Refusal(
                400, _error("Invalid input JSON: expected an object", "VALIDATION_ERROR")
            )
        return body

    # -- contacts ---------------------------------------------------------------------------

    def _list_contacts(self, _: None) -> tuple[int, Any]:
        limit = int(request.args.get("limit", "10"))
        with self._lock:
            live = [c for c in self.contacts.values() if not c["archived"]][:limit]
            return 200, {"results": [_public(c) for c in live]}

    def _upsert(self, body: dict[str, Any]) -> tuple[int, Any]:
        inputs = _inputs(body)
        ids = [str(item.get("id")) for item in inputs]
        for item in inputs:
            if not isinstance(item.get("id"), str) or not isinstance(item.get("properties"), dict):
                raise _Refusal(
                    400,
                    _error(
                        "Invalid input JSON on line 1: each input needs a string `id` and a "
                        "`properties` object",
                        "VALIDATION_ERROR",
                    ),
                )
        keyed = [
            _normalize(str(item.get("idProperty") or "hs_object_id"), value)
            for item, value in zip(inputs, ids, strict=True)
        ]
        duplicates = sorted({k for k in keyed if keyed.count(k) > 1})
        if duplicates:
            raise _Refusal(
                400,
                _error(
                    f"Duplicate IDs found in batch input: {duplicates}. IDs must be unique",
                    "VALIDATION_ERROR",
                ),
            )
        return self._apply_batch(inputs, self._upsert_problem, self._apply_upsert, 200)

    def _upsert_problem(self, item: dict[str, Any]) -> dict[str, Any] | None:
        id_property = item.get("idProperty") or "hs_object_id"
        if id_property != "hs_object_id" and id_property not in self.unique_properties:
            return _error(
                f"Unable to perform update/upsert by non-unique 0-1 property: {id_property}",
                "VALIDATION_ERROR",
            )
        properties = item["properties"]
        invalid = []
        for name, value in properties.items():
            if name not in self.contact_properties:
                invalid.append(
                    _invalid(name, f'Property "{name}" does not exist', "PROPERTY_DOESNT_EXIST")
                )
            elif not isinstance(value, str):
                invalid.append(_invalid(name, f"{value!r} is not a valid string", "INVALID_STRING"))
            elif len(value.encode("utf-16-le")) // 2 > PROPERTY_VALUE_LIMIT:
                # fake text: the limit is documented, the wording of the refusal is not
                invalid.append(
                    _invalid(
                        name,
                        f"{name} is longer than {PROPERTY_VALUE_LIMIT} characters",
                        "INVALID_LONG_STRING",
                    )
                )
        email = properties.get("email") or (item["id"] if id_property == "email" else None)
        if email is not None and not EMAIL_PATTERN.match(str(email)):
            invalid.append(_invalid("email", f"Email address {email} is invalid", "INVALID_EMAIL"))
        if invalid:
            problem = _error(
                "Property values were not valid: " + json.dumps(invalid), "VALIDATION_ERROR"
            )
            return {**problem, "invalid": invalid}
        target = self._find(id_property, item["id"])
        for name in self.unique_properties - {"email"}:
            value = properties.get(name) or (item["id"] if id_property == name else None)
            other = self._find(name, value) if value else None
            if other is not None and other is not target:
                # fake text: HubSpot's exact wording for this conflict is not documented
                return _error(
                    f"A contact with the value '{value}' for the unique property '{name}' "
                    f"already exists. Existing ID: {other['id']}",
                    "CONFLICT",
                )
        return None

    def _apply_upsert(self, item: dict[str, Any]) -> dict[str, Any]:
        id_property = item.get("idProperty") or "hs_object_id"
        now = _now()
        properties = {k: str(v) for k, v in item["properties"].items()}
        if "email" in properties:
            properties["email"] = properties["email"].lower()
        contact = self._find(id_property, item["id"])
        created = contact is None
        if contact is None:
            contact_id = str(next(self._ids))
            contact = self.contacts[contact_id] = {
                "id": contact_id,
                "properties": {"hs_object_id": contact_id, "createdate": now},
                "createdAt": now,
                "archived": False,
            }
            value = item["id"].lower() if id_property == "email" else item["id"]
            contact["properties"][id_property] = value
        contact["properties"].update(properties)
        contact["properties"]["lastmodifieddate"] = now
        contact["updatedAt"] = now
        return {**_public(contact), "new": created}

    def _find(
        self, prop: str, value: str, *, include_archived: bool = False
    ) -> dict[str, Any] | None:
        wanted = _normalize(prop, value)
        for contact in self.contacts.values():
            if contact["archived"] and not include_archived:
                continue
            if prop == "hs_object_id" and contact["id"] == value:
                return contact
            stored = contact["properties"].get(prop)
            if stored is not None and _normalize(prop, stored) == wanted:
                return contact
        return None

    def _update(self, body: dict[str, Any]) -> tuple[int, Any]:
        """Batch update by record id (no idProperty, as HubSpot wants for hs_object_id)."""
        inputs = _inputs(body)
        for item in inputs:
            if item.get("idProperty") is not None:
                raise _Refusal(
                    400,
                    _error(
                        "Unable to perform update/upsert by non-unique 0-1 property "
                        f"{item['idProperty']}",
                        "VALIDATION_ERROR",
                    ),
                )

        def problem(item: dict[str, Any]) -> dict[str, Any] | None:
            if self._find("hs_object_id", str(item.get("id"))) is None:
                return _error(
                    f"Object not found. objectId are usually numeric. {item.get('id')}",
                    "OBJECT_NOT_FOUND",
                )
            return self._upsert_problem({**item, "idProperty": "hs_object_id"})

        def apply(item: dict[str, Any]) -> dict[str, Any]:
            result = self._apply_upsert({**item, "idProperty": "hs_object_id"})
            result.pop("new", None)
            return result

        return self._apply_batch(inputs, problem, apply, 200)

    def _batch_read(self, body: dict[str, Any]) -> tuple[int, Any]:
        inputs = _inputs(body)
        id_property = body.get("idProperty") or "hs_object_id"
        wanted = body.get("properties") or []
        if not isinstance(body.get("propertiesWithHistory"), list):
            raise _Refusal(400, _error("propertiesWithHistory is required", "VALIDATION_ERROR"))
        started = _now()
        results, missing = [], []
        with self._lock:
            for item in inputs:
                contact = self._find(id_property, str(item.get("id")))
                if contact is None:
                    missing.append(str(item.get("id")))
                else:
                    props = {k: v for k, v in contact["properties"].items() if k in wanted}
                    props["hs_object_id"] = contact["id"]
                    results.append({**_public(contact), "properties": props})
        errors = []
        if missing:
            errors.append(
                {
                    "status": "error",
                    "category": "OBJECT_NOT_FOUND",
                    "message": "Could not get some CONTACT objects, they may be deleted or not "
                    "exist. Check that ids are valid.",
                    "context": {"ids": missing},
                    "errors": [],
                    "links": {},
                }
            )
        return _batch_answer(200, results, errors, started)

    def _archive(self, body: dict[str, Any]) -> tuple[int, Any]:
        inputs = _inputs(body)
        with self._lock:
            for item in inputs:
                contact = self.contacts.get(str(item.get("id")))
                if contact is not None:  # HubSpot answers 204 for unknown ids too
                    contact["archived"] = True
                    contact["archivedAt"] = _now()
        return 204, None

    # -- notes ------------------------------------------------------------------------------

    def _create_note(self, body: dict[str, Any]) -> tuple[int, Any]:
        with self._lock:
            problem = self._note_problem(body)
            if problem:
                raise _Refusal(400, problem)
            return 201, self._apply_note(body)

    def _create_notes(self, body: dict[str, Any]) -> tuple[int, Any]:
        inputs = _inputs(body)
        return self._apply_batch(inputs, self._note_problem, self._apply_note, 201)

    def _apply_batch(
        self,
        inputs: list[dict[str, Any]],
        problem_of: Callable[[dict[str, Any]], dict[str, Any] | None],
        apply: Callable[[dict[str, Any]], dict[str, Any]],
        status: int,
    ) -> tuple[int, Any]:
        """A batch endpoint: all-or-nothing 400, or (multi-status, traced inputs) 207 per item."""
        with self._lock:
            problems = [problem_of(item) for item in inputs]
            traced = all(item.get("objectWriteTraceId") for item in inputs)
            if any(problems) and not (self.multi_status and traced):
                first = next(p for p in problems if p)
                raise _Refusal(400, {k: v for k, v in first.items() if k != "invalid"})
            started = _now()
            results, errors = [], []
            for item, problem in zip(inputs, problems, strict=True):
                if problem:
                    errors.append(_standard_error(problem, item["objectWriteTraceId"]))
                else:
                    results.append(apply(item))
        return _batch_answer(status, results, errors, started)

    def _note_problem(self, item: dict[str, Any]) -> dict[str, Any] | None:
        properties = item.get("properties")
        if not isinstance(properties, dict):
            return _error("Invalid input JSON: `properties` is required", "VALIDATION_ERROR")
        invalid = [
            _invalid(name, f'Property "{name}" does not exist', "PROPERTY_DOESNT_EXIST")
            for name in properties
            if name not in NOTE_PROPERTIES
        ]
        if "hs_timestamp" not in properties:
            invalid.append(_invalid("hs_timestamp", "hs_timestamp is required", "REQUIRED"))
        if invalid:
            problem = _error(
                "Property values were not valid: " + json.dumps(invalid), "VALIDATION_ERROR"
            )
            return {**problem, "invalid": invalid}
        for association in item.get("associations") or []:
            to_id = str((association.get("to") or {}).get("id"))
            types = association.get("types") or []
            valid_type = any(
                t.get("associationCategory") == "HUBSPOT_DEFINED"
                and t.get("associationTypeId") == NOTE_TO_CONTACT
                for t in types
            )
            contact = self.contacts.get(to_id)
            if not valid_type or contact is None or contact["archived"]:
                return _error(
                    f"One or more associations are invalid: note to {to_id}", "VALIDATION_ERROR"
                )
        return None

    def _apply_note(self, item: dict[str, Any]) -> dict[str, Any]:
        now = _now()
        note_id = str(next(self._ids))
        note = {
            "id": note_id,
            "properties": {**item["properties"], "hs_object_id": note_id, "hs_createdate": now},
            "createdAt": now,
            "updatedAt": now,
            "archived": False,
        }
        self.notes[note_id] = note
        for association in item.get("associations") or []:
            for kind in association["types"]:
                self.associations.append(
                    {
                        "from": note_id,
                        "to": str(association["to"]["id"]),
                        "category": kind["associationCategory"],
                        "typeId": kind["associationTypeId"],
                    }
                )
        return dict(note)


# -- HubSpot-shaped bodies -------------------------------------------------------------------


def _error(message: str, category: str) -> dict[str, Any]:
    return {
        "status": "error",
        "message": message,
        "correlationId": str(uuid.uuid4()),
        "category": category,
    }


def _standard_error(problem: dict[str, Any], trace_id: str) -> dict[str, Any]:
    """One `errors[]` entry of a 207: the spec's StandardError (all its required keys)."""
    details = [
        {"message": item["message"], "code": item["error"], "context": {"propertyName": [name]}}
        for item in problem.get("invalid", [])
        for name in [item["name"]]
    ]
    return {
        "status": "error",
        "category": problem["category"],
        "message": problem["message"],
        "errors": details,
        "context": {"objectWriteTraceId": [trace_id]},
        "links": {},
    }


def _invalid(name: str, message: str, code: str) -> dict[str, Any]:
    return {
        "isValid": False,
        "message": message,
        "error": code,
        "name": name,
        "localizedErrorMessage": message,
    }


def _rate_limit_body(policy: str) -> dict[str, Any]:
    limit = "daily" if policy == "DAILY" else policy.lower()
    return {
        "status": "error",
        "message": f"You have reached your {limit} limit.",
        "errorType": "RATE_LIMIT",
        "correlationId": str(uuid.uuid4()),
        "policyName": policy,
    }


def _rate_limit_headers(maximum: int, remaining: int, window_ms: int) -> dict[str, str]:
    return {
        "X-HubSpot-RateLimit-Interval-Milliseconds": str(window_ms),
        "X-HubSpot-RateLimit-Max": str(maximum),
        "X-HubSpot-RateLimit-Remaining": str(remaining),
    }


def _default_body(status: int) -> Any:
    if status in (502, 504):  # Cloudflare's gateway page, not JSON
        return f"<html><body><h1>{status}</h1>Service temporarily unavailable</body></html>"
    if status == 429:
        return _rate_limit_body("TEN_SECONDLY_ROLLING")
    if status >= 500:
        return _error("internal error", "INTERNAL_ERROR")
    return _error(f"fake failure {status}", "VALIDATION_ERROR")


def _inputs(body: dict[str, Any]) -> list[dict[str, Any]]:
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not all(isinstance(i, dict) for i in inputs):
        raise _Refusal(
            400,
            _error("Invalid input JSON: `inputs` must be a list of objects", "VALIDATION_ERROR"),
        )
    if len(inputs) > BATCH_LIMIT:
        # fake text: HubSpot refuses >100 inputs with a VALIDATION_ERROR
        raise _Refusal(
            400,
            _error(
                f"Batch size of {len(inputs)} exceeds the limit of {BATCH_LIMIT} inputs",
                "VALIDATION_ERROR",
            ),
        )
    return inputs


def _batch_answer(
    ok_status: int, results: list[Any], errors: list[Any], started: str
) -> tuple[int, Any]:
    answer: dict[str, Any] = {"status": "COMPLETE", "results": results}
    if errors:
        answer.update(numErrors=len(errors), errors=errors)
    answer.update(startedAt=started, completedAt=_now())
    return (207 if errors else ok_status), answer


def _public(contact: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": contact["id"],
        "properties": dict(contact["properties"]),
        "createdAt": contact["createdAt"],
        "updatedAt": contact.get("updatedAt", contact["createdAt"]),
        "archived": contact["archived"],
    }


def _upserted_contacts(route_path: str, body: Any) -> list[str]:
    """The contacts (by id property and value) a batch upsert writes."""
    if route_path != "/crm/v3/objects/contacts/batch/upsert" or not isinstance(body, dict):
        return []
    inputs = body.get("inputs")
    return [
        f"{item.get('idProperty')}:{_normalize(str(item.get('idProperty')), str(item.get('id')))}"
        for item in (inputs if isinstance(inputs, list) else [])
        if isinstance(item, dict)
    ]


def _normalize(prop: str, value: str) -> str:
    return value.strip().lower() if prop == "email" else value


def _respond(status: int, body: Any, headers: dict[str, str]) -> Response:
    if body is None:
        return Response(status=status, headers=headers)
    if isinstance(body, str):
        return Response(body, status=status, headers=headers, content_type="text/html")
    return Response(
        json.dumps(body),
        status=status,
        headers=headers,
        content_type="application/json;charset=utf-8",
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
