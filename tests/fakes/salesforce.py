"""A stateful fake of the Salesforce APIs the connector uses, to be served over HTTPS.

Answers like the real REST API (shapes from the REST API Developer Guide):

- SOAP login `POST /services/Soap/u/<version>` (partner WSDL `login`): `loginResponse`
  with `sessionId` and a `serverUrl` pointing back at this server; an `INVALID_LOGIN`
  SOAP fault (HTTP 500) otherwise.
- OAuth 2.0 JWT bearer `POST /services/oauth2/token`: the assertion is verified (RS256,
  registered consumer key, known user, login/test audience, not expired); `invalid_grant`
  or `invalid_client_id` otherwise.
- `GET .../sobjects/Lead/describe` and `.../sobjects/Task/describe`: the fields with their
  real types (string, email, phone, url, picklist, textarea, double, reference, boolean, ...),
  lengths, picklist values and reference targets; `POST .../sobjects/Lead/`,
  `GET|PATCH .../sobjects/Lead/<id>`.
- `GET .../query?q=` for `SELECT f, ... FROM Lead [WHERE c [AND c]*] [ORDER BY f [ASC|DESC]]
  [LIMIT n]` with `f = literal` and `f IN (literal, ...)` conditions; string literals use
  SOQL escapes, so an unescaped quote is a MALFORMED_QUERY, as on the real server.
- sObject Collections: `POST .../composite/sobjects` (create), `PATCH .../composite/sobjects`
  (update), `PATCH .../composite/sobjects/Lead/<ExternalIdField>` (upsert); at most 200
  records, per-record results with `statusCode`/`message`/`fields` errors. The create call
  also takes Task records (WhoId must name a stored Lead; Status a standard value; Subject
  and Description lengths; unknown fields refused), kept in `tasks`.

Request-level errors are `[{"message": ..., "errorCode": ...}]` with the real status codes.
Validation: required fields (LastName, Company, plus any added), text lengths (UTF-16 code
units), email format, unknown fields (INVALID_FIELD), read-only fields
(INVALID_FIELD_FOR_INSERT_UPDATE), malformed ids (MALFORMED_ID). Controls for tests:
`expire_sessions()`, `reject_all_sessions`, `fail_next()` (any status/body/headers, e.g.
403 REQUEST_LIMIT_EXCEEDED or 503), `stall_next()` + `release()` (slow answers),
`reject_record()` (per-record errors such as DUPLICATES_DETECTED or UNABLE_TO_LOCK_ROW).
"""

from __future__ import annotations

import itertools
import re
import secrets
import threading
import time
import xml.etree.ElementTree as ET
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

import jwt
from flask import Flask, Response, jsonify, request

COLLECTION_LIMIT = 200
SOAP_NS = "urn:partner.soap.sforce.com"
JWT_AUDIENCES = ["https://login.salesforce.com", "https://test.salesforce.com"]
_ID_PATTERN = re.compile(r"^[a-zA-Z0-9]{15}([a-zA-Z0-9]{3})?$")
# INVALID_EMAIL_ADDRESS unless: a dot-atom local part of at most 64 characters and a domain
# of non-empty labels (so no leading, trailing or consecutive dots anywhere).
EMAIL_PATTERN = re.compile(
    r"^(?=[^@]{1,64}@)[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}$"
)
_DATE_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass
class FieldSpec:
    name: str
    label: str
    type: str = "string"
    length: int = 0
    required: bool = False
    updateable: bool = True
    external_id: bool = False
    picklist: tuple[str, ...] = ()
    reference_to: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        """The field's entry in an sObject describe (the keys the REST API always sends)."""
        return {
            "name": self.name,
            "label": self.label,
            "type": self.type,
            "length": self.length,
            "nillable": not self.required,
            "createable": self.updateable,
            "updateable": self.updateable,
            "externalId": self.external_id,
            "idLookup": self.external_id or self.name in ("Id", "Email"),
            "picklistValues": [
                {"active": True, "defaultValue": False, "label": value, "value": value}
                for value in self.picklist
            ],
            "referenceTo": list(self.reference_to),
        }


# Field types and lengths from the Lead and Task object references (Salesforce Object
# Reference) and their describe answers: `length` is in UTF-16 units, 0 for non-text types.
_LEAD_STATUSES = ("Open - Not Contacted", "Working - Contacted", "Closed - Converted",
                  "Closed - Not Converted")  # fmt: skip
_LEAD_SOURCES = ("Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other")
_TASK_STATUSES = ("Not Started", "In Progress", "Completed", "Waiting on someone else",
                  "Deferred")  # fmt: skip


def standard_lead_fields() -> list[FieldSpec]:
    return [
        FieldSpec("Id", "Lead ID", "id", 18, updateable=False),
        FieldSpec("Salutation", "Salutation", "picklist", 40, picklist=("Mr.", "Ms.", "Dr.")),
        FieldSpec("FirstName", "First Name", "string", 40),
        FieldSpec("LastName", "Last Name", "string", 80, required=True),
        FieldSpec("Company", "Company", "string", 255, required=True),
        FieldSpec("Title", "Title", "string", 128),
        FieldSpec("Email", "Email", "email", 80),
        FieldSpec("Phone", "Phone", "phone", 40),
        FieldSpec("MobilePhone", "Mobile Phone", "phone", 40),
        FieldSpec("Street", "Street", "textarea", 255),
        FieldSpec("City", "City", "string", 40),
        FieldSpec("State", "State/Province", "string", 80),
        FieldSpec("PostalCode", "Zip/Postal Code", "string", 20),
        FieldSpec("Country", "Country", "string", 80),
        FieldSpec("Latitude", "Latitude", "double"),
        FieldSpec("Longitude", "Longitude", "double"),
        FieldSpec("Website", "Website", "url", 255),
        FieldSpec("LeadSource", "Lead Source", "picklist", 255, picklist=_LEAD_SOURCES),
        FieldSpec("Status", "Lead Status", "picklist", 255, picklist=_LEAD_STATUSES),
        FieldSpec("NumberOfEmployees", "Employees", "int"),
        FieldSpec("AnnualRevenue", "Annual Revenue", "currency"),
        FieldSpec("HasOptedOutOfEmail", "Email Opt Out", "boolean"),
        FieldSpec("Description", "Description", "textarea", 32000),
        FieldSpec("OwnerId", "Owner ID", "reference", 18, reference_to=("Group", "User")),
        FieldSpec("IsConverted", "Converted", "boolean", updateable=False),
        FieldSpec("LastModifiedDate", "Last Modified Date", "datetime", updateable=False),
    ]


TASK_FIELDS: dict[str, FieldSpec] = {
    spec.name: spec
    for spec in [
        FieldSpec("Id", "Activity ID", "id", 18, updateable=False),
        FieldSpec("WhoId", "Name ID", "reference", 18, reference_to=("Contact", "Lead")),
        FieldSpec("WhatId", "Related To ID", "reference", 18, reference_to=("Account",)),
        FieldSpec("Subject", "Subject", "combobox", 255),
        FieldSpec("Description", "Description", "textarea", 32000),
        FieldSpec("Status", "Status", "picklist", 40, required=True, picklist=_TASK_STATUSES),
        FieldSpec(
            "Priority",
            "Priority",
            "picklist",
            40,
            required=True,
            picklist=("High", "Normal", "Low"),
        ),
        FieldSpec("ActivityDate", "Due Date Only", "date"),
        FieldSpec("OwnerId", "Assigned To ID", "reference", 18, reference_to=("User",)),
    ]
}


@dataclass
class Fault:
    status: int
    body: Any
    headers: dict[str, str]
    path_contains: str
    method: str | None = None


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    body: Any


@dataclass
class _User:
    password: str
    security_token: str


class SoqlError(ValueError):
    pass


@dataclass
class _Query:
    fields: list[str]
    sobject: str
    conditions: list[tuple[str, list[Any]]] = field(default_factory=list)
    order_by: tuple[str, bool] | None = None  # (field, descending)
    limit: int | None = None


_SOQL_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f"}
_TOKEN = re.compile(r"\s*(?:(?P<string>')|(?P<punct>[(),=])|(?P<word>[A-Za-z0-9_.:+-]+))")


def _tokens(soql: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    position = 0
    while position < len(soql):
        if soql[position:].strip() == "":
            break
        match = _TOKEN.match(soql, position)
        if not match:
            raise SoqlError(f"unexpected token: '{soql[position:].strip()[:20]}'")
        if match.group("string"):
            position = match.end()
            chars = []
            while True:
                if position >= len(soql):
                    raise SoqlError("unterminated string literal")
                char = soql[position]
                if char == "\\":
                    if position + 1 >= len(soql):
                        raise SoqlError("invalid escape at end of query")
                    nxt = soql[position + 1]
                    chars.append(_SOQL_ESCAPES.get(nxt, nxt))
                    position += 2
                elif char == "'":
                    position += 1
                    break
                else:
                    chars.append(char)
                    position += 1
            tokens.append(("string", "".join(chars)))
        elif match.group("punct"):
            tokens.append(("punct", match.group("punct")))
            position = match.end()
        else:
            tokens.append(("word", match.group("word")))
            position = match.end()
    return tokens


def parse_soql(soql: str) -> _Query:
    """The small SOQL subset the connector sends; anything else is MALFORMED_QUERY."""
    tokens = _tokens(soql)
    pos = 0

    def peek(offset: int = 0) -> tuple[str, Any] | None:
        return tokens[pos + offset] if pos + offset < len(tokens) else None

    def keyword(word: str) -> bool:
        token = peek()
        return token is not None and token[0] == "word" and token[1].upper() == word

    def expect_keyword(word: str) -> None:
        nonlocal pos
        if not keyword(word):
            found = peek()
            raise SoqlError(f"unexpected token: '{found[1] if found else 'EOF'}', expected {word}")
        pos += 1

    def name() -> str:
        nonlocal pos
        token = peek()
        if token is None or token[0] != "word":
            raise SoqlError(f"unexpected token: '{token[1] if token else 'EOF'}'")
        pos += 1
        return str(token[1])

    def literal() -> Any:
        nonlocal pos
        token = peek()
        if token is None:
            raise SoqlError("unexpected end of query")
        pos += 1
        if token[0] == "string":
            return token[1]
        if token[0] == "word":
            lowered = token[1].lower()
            if lowered in ("true", "false"):
                return lowered == "true"
            if lowered == "null":
                return None
            if re.fullmatch(r"-?\d+(\.\d+)?", token[1]):
                return float(token[1])
        raise SoqlError(f"unexpected token: '{token[1]}'")

    def punct(char: str) -> bool:
        nonlocal pos
        token = peek()
        if token == ("punct", char):
            pos += 1
            return True
        return False

    expect_keyword("SELECT")
    fields = [name()]
    while punct(","):
        fields.append(name())
    expect_keyword("FROM")
    query = _Query(fields=fields, sobject=name())
    if keyword("WHERE"):
        pos += 1
        while True:
            column = name()
            if punct("="):
                query.conditions.append((column, [literal()]))
            elif keyword("IN"):
                pos += 1
                if not punct("("):
                    raise SoqlError("expected ( after IN")
                values = [literal()]
                while punct(","):
                    values.append(literal())
                if not punct(")"):
                    raise SoqlError("expected ) to close IN")
                query.conditions.append((column, values))
            else:
                raise SoqlError(f"unexpected token after {column}")
            if not keyword("AND"):
                break
            pos += 1
    if keyword("ORDER"):
        pos += 1
        expect_keyword("BY")
        column = name()
        descending = False
        if keyword("DESC") or keyword("ASC"):
            descending = str(tokens[pos][1]).upper() == "DESC"
            pos += 1
        query.order_by = (column, descending)
    if keyword("LIMIT"):
        pos += 1
        query.limit = int(literal())
    if pos != len(tokens):
        raise SoqlError(f"unexpected token: '{tokens[pos][1]}'")
    return query


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _errors(message: str, code: str, status: int) -> tuple[Response, int]:
    return jsonify([{"message": message, "errorCode": code}]), status


class _RequestError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class FakeSalesforce:
    """State plus a Flask app (`.app`); serve it with `serve(fake.app, https=True)`."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.fields: dict[str, FieldSpec] = {f.name.lower(): f for f in standard_lead_fields()}
        self.leads: dict[str, dict[str, Any]] = {}  # Id -> record (canonical field names)
        self._modified: dict[str, int] = {}  # Id -> modification sequence
        self._sequence = itertools.count(1)
        self.users: dict[str, _User] = {}
        self.jwt_clients: dict[str, bytes] = {}  # consumer key -> public key (PEM)
        self.sessions: set[str] = set()
        self.reject_all_sessions = False
        self.logins = 0
        self.calls: list[Call] = []
        self._faults: deque[Fault] = deque()
        self._stalls = 0
        self._released = threading.Event()
        self._rejections: dict[str, dict[str, Any]] = {}  # lower-cased email -> error
        self.tasks: dict[str, dict[str, Any]] = {}  # Id -> Task record
        self._task_rejection: dict[str, Any] | None = None
        self.tasks_createable = True  # what Task's describe says about this user
        self.app = self._build_app()

    # -- controls for tests -------------------------------------------------------------

    def add_user(self, username: str, password: str, security_token: str = "") -> None:
        self.users[username] = _User(password, security_token)

    def add_jwt_client(self, consumer_key: str, public_key_pem: bytes) -> None:
        self.jwt_clients[consumer_key] = public_key_pem

    def issue_session(self) -> str:
        session_id = "00D000000000001!" + secrets.token_urlsafe(24)
        with self.lock:
            self.sessions.add(session_id)
        return session_id

    def expire_sessions(self) -> None:
        with self.lock:
            self.sessions.clear()

    def add_field(
        self,
        name: str,
        *,
        length: int = 255,
        required: bool = False,
        external_id: bool = False,
        updateable: bool = True,
    ) -> None:
        label = name.removesuffix("__c").replace("_", " ")
        self.fields[name.lower()] = FieldSpec(
            name, label, "string", length, required, updateable, external_id
        )

    def fail_next(
        self,
        status: int,
        body: Any,
        *,
        headers: dict[str, str] | None = None,
        times: int = 1,
        path_contains: str = "/services/data/",
        method: str | None = None,
    ) -> None:
        """Answer the next `times` matching requests with this status/body/headers."""
        with self.lock:
            for _ in range(times):
                self._faults.append(Fault(status, body, headers or {}, path_contains, method))

    def stall_next(self, times: int = 1) -> None:
        """Hold the next data requests until `release()` (at most 5 s), then answer them."""
        with self.lock:
            self._stalls += times
            self._released.clear()

    def release(self) -> None:
        self._released.set()

    def reject_record(self, email: str, status_code: str, message: str) -> None:
        """Writes of a record with this Email fail with this per-record error."""
        self._rejections[email.lower()] = {
            "statusCode": status_code,
            "message": message,
            "fields": [],
        }

    def reject_tasks(self, status_code: str, message: str) -> None:
        """Task creates fail with this per-record error from now on."""
        with self.lock:
            self._task_rejection = {"statusCode": status_code, "message": message, "fields": []}

    def tasks_of(self, lead_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(task) for task in self.tasks.values() if task.get("WhoId") == lead_id]

    def seed_lead(self, **values: Any) -> str:
        with self.lock:
            return self._insert({k: v for k, v in values.items()})

    def find(self, field_name: str, value: Any) -> list[dict[str, Any]]:
        canonical = self.fields[field_name.lower()].name
        with self.lock:
            return [
                dict(lead) for lead in self.leads.values() if _matches(lead.get(canonical), [value])
            ]

    def data_calls(self, method: str | None = None, path_contains: str = "") -> list[Call]:
        return [
            call
            for call in self.calls
            if call.path.startswith("/services/data/")
            and (method is None or call.method == method)
            and path_contains in call.path
        ]

    # -- state --------------------------------------------------------------------------

    def _new_id(self) -> str:
        return f"00Q{next(self._sequence):012d}AAA"

    def _insert(self, values: dict[str, Any]) -> str:
        lead_id = self._new_id()
        record = {self.fields[k.lower()].name: v for k, v in values.items()}
        record.update({"Id": lead_id, "IsConverted": bool(record.get("IsConverted", False))})
        self.leads[lead_id] = record
        self._touch(lead_id)
        return lead_id

    def _touch(self, lead_id: str) -> None:
        sequence = next(self._sequence)
        self._modified[lead_id] = sequence
        self.leads[lead_id]["LastModifiedDate"] = time.strftime(
            "%Y-%m-%dT%H:%M:%S.000+0000", time.gmtime()
        )

    # -- validation ---------------------------------------------------------------------

    def _canonical(self, values: dict[str, Any]) -> dict[str, Any]:
        """Field names as the schema spells them; unknown fields fail the whole request."""
        canonical: dict[str, Any] = {}
        for key, value in values.items():
            if key == "attributes":
                continue
            spec = self.fields.get(key.lower())
            if spec is None:
                raise _RequestError(
                    400, "INVALID_FIELD", f"No such column '{key}' on sobject of type Lead"
                )
            canonical[spec.name] = value
        return canonical

    def _record_errors(self, values: dict[str, Any], *, inserting: bool) -> list[dict[str, Any]]:
        read_only = [n for n in values if n != "Id" and not self.fields[n.lower()].updateable]
        if read_only:
            return [
                {
                    "statusCode": "INVALID_FIELD_FOR_INSERT_UPDATE",
                    "message": f"Unable to create/update fields: {', '.join(read_only)}. Please "
                    "check the security settings of this field and verify that it is read/write "
                    "for your profile or permission set.",
                    "fields": read_only,
                }
            ]
        missing = [
            spec.name
            for spec in self.fields.values()
            if spec.required
            and (
                (inserting and values.get(spec.name) in (None, ""))
                or (not inserting and spec.name in values and values[spec.name] in (None, ""))
            )
        ]
        if missing:
            return [
                {
                    "statusCode": "REQUIRED_FIELD_MISSING",
                    "message": f"Required fields are missing: [{', '.join(missing)}]",
                    "fields": missing,
                }
            ]
        for name, value in values.items():
            spec = self.fields[name.lower()]
            if isinstance(value, str) and spec.length and _utf16_len(value) > spec.length:
                return [
                    {
                        "statusCode": "STRING_TOO_LONG",
                        "message": f"{spec.label}: data value too large: {value} "
                        f"(max length={spec.length})",
                        "fields": [spec.name],
                    }
                ]
        email = values.get("Email")
        if isinstance(email, str) and email and not EMAIL_PATTERN.match(email):
            return [
                {
                    "statusCode": "INVALID_EMAIL_ADDRESS",
                    "message": f"Email: invalid email address: {email}",
                    "fields": ["Email"],
                }
            ]
        if isinstance(email, str) and email.lower() in self._rejections:
            return [dict(self._rejections[email.lower()])]
        return []

    def _check_task_fields(self, record: dict[str, Any]) -> None:
        unknown = [k for k in record if k != "attributes" and k not in TASK_FIELDS]
        if unknown:
            raise _RequestError(
                400, "INVALID_FIELD", f"No such column '{unknown[0]}' on sobject of type Task"
            )
        date = record.get("ActivityDate")
        if date is not None and not (isinstance(date, str) and _DATE_PATTERN.match(date)):
            raise _RequestError(
                400,
                "JSON_PARSER_ERROR",
                f"Cannot deserialize instance of date from VALUE_STRING value {date}",
            )

    def _create_task(self, record: dict[str, Any]) -> dict[str, Any]:
        who = record.get("WhoId")
        if not isinstance(who, str) or not _ID_PATTERN.match(who):
            return _failure(
                "FIELD_INTEGRITY_EXCEPTION",
                f"Name ID: id value of incorrect type: {who}",
                ["WhoId"],
            )
        if who not in self.leads:
            return _failure("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", ["WhoId"])
        if record.get("Status") not in _TASK_STATUSES:
            return _failure(
                "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                f"Status: bad value for restricted picklist field: {record.get('Status')}",
                ["Status"],
            )
        for name, value in record.items():
            limit = TASK_FIELDS[name].length if name in TASK_FIELDS else 0
            if isinstance(value, str) and limit and _utf16_len(value) > limit:
                return _failure(
                    "STRING_TOO_LONG",
                    f"{name}: data value too large: {value[:40]}... (max length={limit})",
                    [name],
                )
        if self._task_rejection is not None:
            return {"success": False, "errors": [dict(self._task_rejection)]}
        task_id = f"00T{next(self._sequence):012d}AAA"
        self.tasks[task_id] = {k: v for k, v in record.items() if k != "attributes"}
        return {"id": task_id, "success": True, "errors": []}

    def _create(self, values: dict[str, Any]) -> dict[str, Any]:
        if "Id" in values:
            return _failure("INVALID_FIELD", "cannot specify Id in an insert call", ["Id"])
        errors = self._record_errors(values, inserting=True)
        if errors:
            return {"success": False, "errors": errors}
        return {"id": self._insert(values), "success": True, "errors": []}

    def _update(self, lead_id: Any, values: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(lead_id, str) or not _ID_PATTERN.match(lead_id):
            return _failure(
                "MALFORMED_ID", f"Lead ID: id value of incorrect type: {lead_id}", ["Id"]
            )
        if lead_id not in self.leads:
            return _failure("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [])
        changes = {k: v for k, v in values.items() if k != "Id"}
        errors = self._record_errors(changes, inserting=False)
        if errors:
            return {"success": False, "errors": errors}
        self.leads[lead_id].update(changes)
        self._touch(lead_id)
        return {"id": lead_id, "success": True, "errors": []}

    # -- the app ------------------------------------------------------------------------

    def _build_app(self) -> Flask:
        app = Flask("fake_salesforce")

        @app.before_request
        def _record_and_inject() -> Any:
            body: Any = (
                request.get_json(silent=True) if request.is_json else request.get_data(as_text=True)
            )
            with self.lock:
                self.calls.append(Call(request.method, request.path, dict(request.args), body))
                fault = next(
                    (
                        f
                        for f in self._faults
                        if f.path_contains in request.path and f.method in (None, request.method)
                    ),
                    None,
                )
                if fault is not None:
                    self._faults.remove(fault)
                stall = request.path.startswith("/services/data/") and self._stalls > 0
                if stall:
                    self._stalls -= 1
            if stall:
                self._released.wait(timeout=5)
            if fault is not None:
                response = (
                    jsonify(fault.body) if not isinstance(fault.body, str) else Response(fault.body)
                )
                response.status_code = fault.status
                response.headers.update(fault.headers)
                return response
            if request.path.startswith("/services/data/") and not self._authorized():
                return _errors("Session expired or invalid", "INVALID_SESSION_ID", 401)
            return None

        @app.errorhandler(_RequestError)
        def _request_error(error: _RequestError) -> Any:
            return _errors(error.message, error.code, error.status)

        @app.post("/services/Soap/u/<version>")
        def soap_login(version: str) -> Any:
            try:
                # Only the connector under test talks to this loopback fake.
                envelope = ET.fromstring(request.get_data())  # noqa: S314
            except ET.ParseError:
                return _soap_fault(
                    "INVALID_LOGIN",
                    "Invalid username, password, security token; or user locked out.",
                )
            username = envelope.findtext(f".//{{{SOAP_NS}}}username") or ""
            password = envelope.findtext(f".//{{{SOAP_NS}}}password") or ""
            user = self.users.get(username)
            if user is None or password != user.password + user.security_token:
                return _soap_fault(
                    "INVALID_LOGIN",
                    "Invalid username, password, security token; or user locked out.",
                )
            with self.lock:
                self.logins += 1
            session_id = self.issue_session()
            server_url = f"{request.host_url}services/Soap/u/{version}/00D000000000001"
            return Response(_soap_login_response(server_url, session_id), mimetype="text/xml")

        @app.post("/services/oauth2/token")
        def oauth_token() -> Any:
            if request.form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
                return jsonify(
                    error="unsupported_grant_type", error_description="grant type not supported"
                ), 400
            assertion = request.form.get("assertion", "")
            try:
                claims = jwt.decode(assertion, options={"verify_signature": False})
            except jwt.PyJWTError:
                return jsonify(error="invalid_grant", error_description="invalid assertion"), 400
            public_key = self.jwt_clients.get(str(claims.get("iss")))
            if public_key is None:
                return jsonify(
                    error="invalid_client_id", error_description="client identifier invalid"
                ), 400
            try:
                claims = jwt.decode(
                    assertion,
                    public_key,
                    algorithms=["RS256"],
                    audience=JWT_AUDIENCES,
                    options={"require": ["iss", "sub", "aud", "exp"]},
                )
            except jwt.PyJWTError:
                return jsonify(error="invalid_grant", error_description="invalid assertion"), 400
            if claims["sub"] not in self.users:
                return jsonify(error="invalid_grant", error_description="invalid assertion"), 400
            with self.lock:
                self.logins += 1
            return jsonify(
                access_token=self.issue_session(),
                scope="api",
                instance_url=request.host_url.rstrip("/"),
                id="https://login.salesforce.com/id/00D000000000001/005000000000001",
                token_type="Bearer",
            )

        @app.get("/services/data/<version>/sobjects/<sobject>/describe")
        def describe(version: str, sobject: str) -> Any:
            if sobject == "Task":
                return jsonify(
                    name="Task",
                    label="Task",
                    createable=self.tasks_createable,
                    updateable=self.tasks_createable,
                    queryable=True,
                    fields=[spec.describe() for spec in TASK_FIELDS.values()],
                )
            self._check_sobject(sobject)
            return jsonify(
                name="Lead",
                label="Lead",
                createable=True,
                updateable=True,
                queryable=True,
                fields=[spec.describe() for spec in self.fields.values()],
            )

        @app.post("/services/data/<version>/sobjects/<sobject>/")
        def create_one(version: str, sobject: str) -> Any:
            self._check_sobject(sobject)
            values = self._canonical(self._json_object())
            with self.lock:
                result = self._create(values)
            if not result["success"]:
                return _as_request_errors(result), 400
            return jsonify(result), 201

        @app.route(
            "/services/data/<version>/sobjects/<sobject>/<lead_id>", methods=["GET", "PATCH"]
        )
        def one(version: str, sobject: str, lead_id: str) -> Any:
            self._check_sobject(sobject)
            if not _ID_PATTERN.match(lead_id):
                return _errors(
                    f"Lead ID: id value of incorrect type: {lead_id}", "MALFORMED_ID", 400
                )
            with self.lock:
                if lead_id not in self.leads:
                    return _errors("The requested resource does not exist", "NOT_FOUND", 404)
                if request.method == "GET":
                    return jsonify(self._row(self.leads[lead_id], version))
                result = self._update(lead_id, self._canonical(self._json_object()))
            if not result["success"]:
                return _as_request_errors(result), 400
            return Response(status=204)

        @app.get("/services/data/<version>/query/")
        @app.get("/services/data/<version>/query")
        def query(version: str) -> Any:
            try:
                parsed = parse_soql(request.args.get("q", ""))
            except SoqlError as exc:
                return _errors(str(exc), "MALFORMED_QUERY", 400)
            self._check_sobject(parsed.sobject)
            for column in parsed.fields + [c for c, _ in parsed.conditions]:
                if column.lower() not in self.fields:
                    return _errors(
                        f"No such column '{column}' on entity 'Lead'.", "INVALID_FIELD", 400
                    )
            with self.lock:
                rows = [
                    lead
                    for lead in self.leads.values()
                    if all(
                        _matches(lead.get(self.fields[c.lower()].name), values)
                        for c, values in parsed.conditions
                    )
                ]
                if parsed.order_by:
                    column, descending = parsed.order_by
                    if column.lower() == "lastmodifieddate":
                        rows.sort(key=lambda lead: self._modified[lead["Id"]], reverse=descending)
                    else:
                        name = self.fields[column.lower()].name
                        rows.sort(key=lambda lead: str(lead.get(name) or ""), reverse=descending)
                if parsed.limit is not None:
                    rows = rows[: parsed.limit]
                records = [
                    self._row(lead, version, [self.fields[f.lower()].name for f in parsed.fields])
                    for lead in rows
                ]
            return jsonify(totalSize=len(records), done=True, records=records)

        @app.route("/services/data/<version>/composite/sobjects", methods=["POST", "PATCH"])
        def collection(version: str) -> Any:
            records = self._collection_records(sobject=None)
            results = []
            with self.lock:
                for record in records:
                    if record["attributes"]["type"] == "Task":
                        results.append(self._create_task(record))
                        continue
                    lead_id = next((v for k, v in record.items() if k.lower() == "id"), None)
                    values = self._canonical(record)
                    if request.method == "POST":
                        results.append(self._create(values))
                    elif lead_id is None:
                        results.append(
                            _failure("MISSING_ARGUMENT", "Id not specified in an update call", [])
                        )
                    else:
                        results.append(self._update(lead_id, values))
            return jsonify(results)

        @app.patch("/services/data/<version>/composite/sobjects/<sobject>/<external_field>")
        def collection_upsert(version: str, sobject: str, external_field: str) -> Any:
            self._check_sobject(sobject)
            spec = self.fields.get(external_field.lower())
            if spec is None or not spec.external_id:
                return _errors(
                    "Provided external ID field does not exist or is not accessible: "
                    + external_field,
                    "NOT_FOUND",
                    404,
                )
            records = self._collection_records(sobject=sobject)
            canonical = [self._canonical(record) for record in records]
            keys = [str(values.get(spec.name) or "").lower() for values in canonical]
            results = []
            with self.lock:
                for values, key in zip(canonical, keys, strict=True):
                    if not key:
                        results.append(
                            _failure("MISSING_ARGUMENT", f"{spec.name} not specified", [])
                        )
                        continue
                    if keys.count(key) > 1:
                        results.append(
                            _failure(
                                "DUPLICATE_VALUE", f"Duplicate external id specified: {key}", []
                            )
                        )
                        continue
                    matches = [
                        i for i, lead in self.leads.items() if _matches(lead.get(spec.name), [key])
                    ]
                    if len(matches) > 1:
                        results.append(
                            _failure(
                                "DUPLICATE_EXTERNAL_ID",
                                f"{spec.name}: more than one record found for external id field: "
                                f"[{', '.join(matches)}]",
                                [spec.name],
                            )
                        )
                    elif matches:
                        result = self._update(matches[0], values)
                        results.append(
                            {**result, "created": False} if result["success"] else result
                        )
                    else:
                        result = self._create(values)
                        results.append({**result, "created": True} if result["success"] else result)
            return jsonify(results)

        return app

    # -- request helpers ----------------------------------------------------------------

    def _authorized(self) -> bool:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip()
        with self.lock:
            return not self.reject_all_sessions and token in self.sessions

    def _check_sobject(self, sobject: str) -> None:
        if sobject != "Lead":
            raise _RequestError(404, "NOT_FOUND", "The requested resource does not exist")

    def _json_object(self) -> dict[str, Any]:
        if not request.is_json:
            raise _RequestError(
                415, "UNSUPPORTED_MEDIA_TYPE", "Content-Type must be application/json"
            )
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise _RequestError(400, "JSON_PARSER_ERROR", "Cannot deserialize instance of sObject")
        return body

    def _collection_records(self, sobject: str | None) -> list[dict[str, Any]]:
        body = self._json_object()
        records = body.get("records")
        if not isinstance(records, list) or not isinstance(body.get("allOrNone", False), bool):
            raise _RequestError(400, "JSON_PARSER_ERROR", "records must be a list of sObjects")
        if len(records) > COLLECTION_LIMIT:
            raise _RequestError(
                400,
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot submit more than 200 records into this call",
            )
        for record in records:
            record_type = (
                (record.get("attributes") or {}).get("type") if isinstance(record, dict) else None
            )
            if record_type is None or (sobject is not None and record_type != sobject):
                raise _RequestError(400, "INVALID_TYPE", "Must send a concrete entity type.")
            if record_type == "Task" and request.method == "POST":
                self._check_task_fields(record)
                continue
            self._check_sobject(record_type)
        return records

    def _row(
        self, lead: dict[str, Any], version: str, fields: list[str] | None = None
    ) -> dict[str, Any]:
        names = fields if fields is not None else [spec.name for spec in self.fields.values()]
        row: dict[str, Any] = {
            "attributes": {
                "type": "Lead",
                "url": f"/services/data/{version}/sobjects/Lead/{lead['Id']}",
            }
        }
        row.update({name: lead.get(name) for name in names})
        return row


def _matches(stored: Any, values: list[Any]) -> bool:
    # Salesforce compares text case-insensitively in SOQL and for external ids.
    if isinstance(stored, str):
        return any(isinstance(v, str) and v.lower() == stored.lower() for v in values)
    return stored in values


def _failure(code: str, message: str, fields: list[str]) -> dict[str, Any]:
    return {
        "success": False,
        "errors": [{"statusCode": code, "message": message, "fields": fields}],
    }


def _as_request_errors(result: dict[str, Any]) -> Response:
    # Single-record endpoints report errors as a request-level list with `errorCode`.
    return jsonify(
        [
            {"message": e["message"], "errorCode": e["statusCode"], "fields": e["fields"]}
            for e in result["errors"]
        ]
    )


def _soap_login_response(server_url: str, session_id: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns="urn:partner.soap.sforce.com" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        "<soapenv:Body><loginResponse><result>"
        f"<metadataServerUrl>{escape(server_url.replace('/u/', '/m/'))}</metadataServerUrl>"
        "<passwordExpired>false</passwordExpired><sandbox>false</sandbox>"
        f"<serverUrl>{escape(server_url)}</serverUrl>"
        f"<sessionId>{escape(session_id)}</sessionId>"
        "<userId>005000000000001AAA</userId>"
        "<userInfo><organizationId>00D000000000001AAA</organizationId>"
        "<sessionSecondsValid>7200</sessionSecondsValid></userInfo>"
        "</result></loginResponse></soapenv:Body></soapenv:Envelope>"
    )


def _soap_fault(code: str, message: str) -> Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:sf="urn:fault.partner.soap.sforce.com" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        "<soapenv:Body><soapenv:Fault>"
        f"<faultcode>sf:{code}</faultcode>"
        f"<faultstring>{code}: {escape(message)}</faultstring>"
        '<detail><sf:LoginFault xsi:type="sf:LoginFault">'
        f"<sf:exceptionCode>{code}</sf:exceptionCode>"
        f"<sf:exceptionMessage>{escape(message)}</sf:exceptionMessage>"
        "</sf:LoginFault></detail>"
        "</soapenv:Fault></soapenv:Body></soapenv:Envelope>"
    )
    # SOAP faults, INVALID_LOGIN included, come back as HTTP 500.
    return Response(body, status=500, mimetype="text/xml")
