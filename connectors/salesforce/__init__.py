"""Salesforce connector: leads into Salesforce Lead records, on `simple-salesforce`.

Authentication (choose one; README "Connectors"):

- `instance_url` + `session_id`: a session obtained elsewhere. It cannot be renewed here, so
  when Salesforce answers INVALID_SESSION_ID the events fail as Permanent "session expired".
- `username` + `password` + `security_token` (+ `domain: login|test`): SOAP login.
  `security_token` may be left out when the org trusts the worker's IP range.
- `consumer_key` + `private_key_file` + `username` (+ `domain`): OAuth 2.0 JWT bearer flow.

The two login modes log in lazily (on the first send that has something to send) and, when
the session has expired (HTTP 401 INVALID_SESSION_ID), log in again once and repeat the
call; if that login is refused, or the fresh session is refused too, the events fail as
Permanent "login failed: ...". `login_url` (default `https://<domain>.salesforce.com`)
points both logins at a My Domain login host or at a test double. The connector logs in
itself (the SDK's own retry-on-401 loop is unbounded for sObject calls and cannot be given
a login URL) and hands simple-salesforce a ready session id and instance.

Writes:

- With `external_id_field` (a Text field marked External ID on the object): sObject
  Collections upsert, up to 200 records per call, keyed by the lead's stable `key`
  (`email:jane@example.com`, `github:jdoe`, ...). Retries update the same record: effectively
  once.
- Without it: the Lead is looked up by Email (SOQL, values escaped with
  `simple_salesforce.format_soql`; converted leads are ignored, the most recently modified
  match wins), then updated, or created when none exists, again through sObject Collections
  (200 per call). Leads without an email cannot be matched and are Skipped with a reason.
  Two workers racing on the same new email can create two Leads: at-least-once.
- Several events for the same lead in one batch are applied in order, one per round trip,
  so a batch never creates the same lead twice.

Field mapping (Salesforce field -> lead field; `field_map` adds or overrides entries, a
`null` value drops a default): FirstName, LastName, Company, Title, Email, Phone,
City <- location, Website, LeadSource <- lead_source, Description <- `profile_summary`
(bio, LinkedIn and GitHub links, tags). Sources may also be `extra.<key>`,
`activity.<field>` and `event.<source|provider|type|provider_event|occurred_at>`.
Empty values are not sent, so an event never blanks a field another event filled.

Salesforce requires LastName and Company on a Lead; when the lead lacks them they are filled
from documented fallbacks (unless `field_map` sets them to null):

- LastName: `last_name`; else `full_name` (without a leading `first_name`; a one-word name
  becomes the LastName and FirstName is left out); else the email's local part; else the
  GitHub username; else the LinkedIn username; else `fallback_last_name`.
- Company: `company`; else the email's domain unless it is a free-mail or no-reply domain
  (gmail.com, outlook.com, users.noreply.github.com, ...); else `fallback_company`.

Text values are cut to Salesforce's standard field lengths (FirstName 40, LastName 80,
Company 255, Title 128, Phone 40, City 40, Website 255, Description 32000, ...), counted in
UTF-16 code units as Salesforce counts them, never splitting a character. Email is never
cut (a cut address is a different address): one longer than 80 characters is left out of
Email and noted in Description. Custom fields are not cut; Salesforce's STRING_TOO_LONG
comes back as a Permanent outcome.

Activities (`lead.activity`, or any event that carries one) also log a completed Task on the
written Lead (or Contact: `Task.WhoId`; other objects get none), after the record:
Subject = what the lead did ("Starred a repository"), Description = the activity's text,
URL and campaign, ActivityDate = when it happened. `activity_tasks: false` turns this off.
A Task cannot be upserted, so one whose creation succeeded but whose answer was lost is
logged again on retry (at-least-once, like HubSpot's notes); a refused Task makes the event
Permanent with the record's own result in the message.

`lead.deleted` is Skipped unless `on_delete: archive`; archiving never deletes: the matching
record (by external id or Email) gets `Status = archive_status` (default
"Closed - Not Converted", a standard Lead status); when there is no such record the event is
Skipped.

Outcomes: REQUEST_LIMIT_EXCEEDED (and HTTP 429) -> RateLimited after Retry-After or
`rate_limit_delay` seconds; UNABLE_TO_LOCK_ROW, SERVER_UNAVAILABLE, other 5xx, 408, network
errors and timeouts -> Retryable; every other error code (REQUIRED_FIELD_MISSING,
STRING_TOO_LONG, INVALID_FIELD, DUPLICATES_DETECTED, MALFORMED_ID, INVALID_TYPE, ...) ->
Permanent with Salesforce's own code and message. No secret (session id, password, security
token) appears in any outcome or repr.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import jwt
import requests
from pydantic import Field, FilePath, SecretStr, field_validator, model_validator
from requests.adapters import HTTPAdapter
from simple_salesforce import Salesforce, SalesforceLogin, format_soql
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceError,
    SalesforceExpiredSession,
)
from simple_salesforce.login import token_login

from leadrelay.core.delivery.contract import (
    ConnectionCheckFailed,
    Connector,
    CrmOptions,
    Delivered,
    Outcome,
    Permanent,
    RateLimited,
    Retryable,
    Skipped,
    activity_label,
    parse_retry_after,
    scrub,
)
from leadrelay.core.schema import Activity, Lead, LeadEvent

COLLECTION_LIMIT = 200  # sObject Collections accept at most 200 records per call
COLLECTIONS_PATH = "composite/sobjects"
# Values per `IN (...)` lookup: keeps the query URL far below the REST API's 16 KB URI limit.
LOOKUP_CHUNK = 50
DEFAULT_API_VERSION = "59.0"

# Standard field lengths (characters), from the Lead object reference.
FIELD_LENGTHS: dict[str, int] = {
    "Salutation": 40,
    "FirstName": 40,
    "MiddleName": 40,
    "LastName": 80,
    "Suffix": 40,
    "Title": 128,
    "Company": 255,
    "Street": 255,
    "City": 40,
    "State": 80,
    "PostalCode": 20,
    "Country": 80,
    "Email": 80,
    "Phone": 40,
    "MobilePhone": 40,
    "Fax": 40,
    "Website": 255,
    "LeadSource": 255,
    "Description": 32000,
}

# A Task's WhoId names a Lead or a Contact; other objects get no Task.
TASK_WHO_OBJECTS = frozenset({"lead", "contact"})  # API names ignore case
TASK_FIELD_LENGTHS = {"Subject": 255, "Description": 32000}

PROFILE_SUMMARY = "profile_summary"
DEFAULT_FIELD_MAP: dict[str, str] = {
    "FirstName": "first_name",
    "LastName": "last_name",
    "Company": "company",
    "Title": "title",
    "Email": "email",
    "Phone": "phone",
    "City": "location",
    "Website": "website",
    "LeadSource": "lead_source",
    "Description": PROFILE_SUMMARY,
}

# Domains that say nothing about the lead's employer.
FREE_MAIL_DOMAINS = frozenset(
    {
        "gmail.com", "googlemail.com", "yahoo.com", "yahoo.co.uk", "yahoo.fr", "ymail.com",
        "hotmail.com", "hotmail.co.uk", "hotmail.fr", "outlook.com", "live.com", "msn.com",
        "icloud.com", "me.com", "mac.com", "aol.com", "proton.me", "protonmail.com", "pm.me",
        "gmx.com", "gmx.de", "gmx.net", "web.de", "yandex.com", "yandex.ru", "mail.ru",
        "qq.com", "163.com", "126.com", "zoho.com", "fastmail.com", "hey.com",
        "tutanota.com", "duck.com", "users.noreply.github.com", "noreply.github.com",
    }
)  # fmt: skip

RATE_LIMIT_CODES = frozenset({"REQUEST_LIMIT_EXCEEDED"})
RETRYABLE_CODES = frozenset(
    {
        "UNABLE_TO_LOCK_ROW",
        "SERVER_UNAVAILABLE",
        "REQUEST_RUNNING_TOO_LONG",
        "QUERY_TIMEOUT",
        "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    }
)

_API_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_EVENT_SOURCES = frozenset({"source", "provider", "type", "provider_event", "occurred_at"})
_LEAD_SOURCES = frozenset(Lead.model_fields) - {"extra"}
_ACTIVITY_SOURCES = frozenset(Activity.model_fields) - {"context"}


def _valid_source(source: str) -> bool:
    prefix, dot, rest = source.partition(".")
    if not dot:
        return source in _LEAD_SOURCES or source == PROFILE_SUMMARY
    if prefix == "extra":
        return bool(rest)
    if prefix == "activity":
        return rest in _ACTIVITY_SOURCES
    return prefix == "event" and rest in _EVENT_SOURCES


class SalesforceOptions(CrmOptions):
    """Options of a `type: salesforce` connector (see the module docstring)."""

    type: str = "salesforce"
    # auth: session
    instance_url: str | None = None
    session_id: SecretStr | None = None
    # auth: username/password (SOAP) and JWT
    username: str | None = None
    password: SecretStr | None = None
    security_token: SecretStr | None = None
    consumer_key: str | None = None
    private_key_file: FilePath | None = None
    domain: str = Field(default="login", pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]*$")
    login_url: str | None = None
    # what to write
    object: str = "Lead"
    external_id_field: str | None = None
    api_version: str = DEFAULT_API_VERSION
    field_map: dict[str, str | None] = Field(default_factory=dict)
    fallback_last_name: str = Field(default="[not provided]", min_length=1)
    fallback_company: str = Field(default="[not provided]", min_length=1)
    archive_status: str = Field(default="Closed - Not Converted", min_length=1)
    # Activity events also log a completed Task on the Lead or Contact (Task.WhoId).
    activity_tasks: bool = True
    # transport
    verify: bool | str = True  # CA bundle path, or False (never in production)
    timeout: float = Field(default=30.0, gt=0)
    rate_limit_delay: float = Field(default=60.0, ge=0)

    @field_validator("object", "external_id_field")
    @classmethod
    def _api_name(cls, value: str | None) -> str | None:
        if value is not None and not _API_NAME.match(value):
            raise ValueError(f"{value!r} is not a Salesforce API name")
        return value

    @field_validator("api_version")
    @classmethod
    def _version(cls, value: str) -> str:
        value = value.removeprefix("v")
        if not re.fullmatch(r"\d{2,3}\.0", value):
            raise ValueError(f"{value!r} is not an API version like 59.0")
        return value

    @field_validator("instance_url", "login_url")
    @classmethod
    def _https_url(cls, value: str | None) -> str | None:
        # simple-salesforce only speaks HTTPS: an http:// URL would be silently upgraded.
        if value is not None:
            if not re.fullmatch(r"https://[^/\s?#]+/?", value):
                raise ValueError(
                    "must be an https:// URL with no path, like https://acme.my.salesforce.com"
                )
            value = value.rstrip("/")
        return value

    @field_validator("verify")
    @classmethod
    def _ca_bundle_exists(cls, value: bool | str) -> bool | str:
        # requests raises OSError (not a RequestException) for a missing bundle: refuse early.
        if isinstance(value, str) and not Path(value).exists():
            raise ValueError(f"CA bundle {value!r} does not exist")
        return value

    @field_validator("field_map")
    @classmethod
    def _field_map(cls, value: dict[str, str | None]) -> dict[str, str | None]:
        for sf_field, source in value.items():
            if not _API_NAME.match(sf_field):
                raise ValueError(f"{sf_field!r} is not a Salesforce field API name")
            if source is not None and not _valid_source(source):
                raise ValueError(
                    f"{sf_field}: {source!r} is not a lead field, {PROFILE_SUMMARY}, "
                    "extra.<key>, activity.<field> or event.<field>"
                )
        return value

    @model_validator(mode="after")
    def _one_auth_mode(self) -> SalesforceOptions:
        modes = []
        if self.session_id is not None or self.instance_url is not None:
            modes.append("session")
        if self.password is not None or self.security_token is not None:
            modes.append("password")
        if self.consumer_key is not None or self.private_key_file is not None:
            modes.append("jwt")
        if len(modes) != 1:
            raise ValueError(
                "choose exactly one way to authenticate: instance_url + session_id, "
                "or username + password + security_token, "
                "or consumer_key + private_key_file + username"
            )
        required = {
            "session": ("instance_url", "session_id"),
            "password": ("username", "password"),
            "jwt": ("consumer_key", "private_key_file", "username"),
        }[modes[0]]
        missing = [name for name in required if getattr(self, name) is None]
        if missing:
            raise ValueError(f"{modes[0]} authentication also needs: {', '.join(missing)}")
        if modes[0] == "session" and self.username is not None:
            raise ValueError("username is not used with session_id; remove one of them")
        return self

    @property
    def auth_mode(self) -> Literal["session", "password", "jwt"]:
        if self.session_id is not None:
            return "session"
        return "password" if self.password is not None else "jwt"

    @property
    def effective_login_url(self) -> str:
        return self.login_url or f"https://{self.domain}.salesforce.com"

    def mapping(self) -> dict[str, str | None]:
        return {**DEFAULT_FIELD_MAP, **self.field_map}


# -- record building ----------------------------------------------------------------------


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def cut(text: str, limit: int) -> str:
    """`text` cut to `limit` UTF-16 code units without splitting a character."""
    if utf16_len(text) <= limit:
        return text
    kept, used = [], 0
    for char in text:
        width = 2 if ord(char) > 0xFFFF else 1
        if used + width > limit:
            break
        kept.append(char)
        used += width
    return "".join(kept)


def _clean(value: Any) -> Any:
    """A value as Salesforce should receive it, or None for "nothing to send"."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return ", ".join(str(item) for item in value if item not in (None, "")) or None
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True) if value else None
    return value  # numbers and booleans go to number/checkbox fields as they are


def profile_summary(lead: Lead) -> str | None:
    lines = []
    if lead.bio:
        lines.append(lead.bio.strip())
    if lead.linkedin_url:
        lines.append(f"LinkedIn: {lead.linkedin_url}")
    github = lead.github_url or (
        f"https://github.com/{lead.github_username}" if lead.github_username else None
    )
    if github:
        lines.append(f"GitHub: {github}")
    if lead.tags:
        lines.append("Tags: " + ", ".join(lead.tags))
    return "\n".join(lines) or None


def _source_value(event: LeadEvent, source: str) -> Any:
    lead = event.lead
    if source == PROFILE_SUMMARY:
        return profile_summary(lead)
    prefix, dot, rest = source.partition(".")
    if not dot:
        return getattr(lead, source)
    if prefix == "extra":
        return lead.extra.get(rest)
    if prefix == "activity":
        return getattr(event.activity, rest) if event.activity else None
    return getattr(event, rest)


def _email_parts(email: str | None) -> tuple[str | None, str | None]:
    if not email or "@" not in email:
        return None, None
    local, _, domain = email.strip().rpartition("@")
    return local or None, domain.lower() or None


def fallback_names(lead: Lead) -> tuple[str | None, str]:
    """(FirstName, LastName) for a lead, LastName never empty (see module docstring)."""
    first = _clean(lead.first_name)
    last = _clean(lead.last_name)
    if last:
        return first, last
    full = _clean(lead.full_name)
    if full:
        if first and full.startswith(first + " ") and full[len(first) :].strip():
            return first, full[len(first) :].strip()
        if first and full == first:
            return None, full  # a one-word name: Salesforce needs it as LastName
        return first, full
    local, _ = _email_parts(lead.email)
    for candidate in (local, lead.github_username, lead.linkedin_username):
        if _clean(candidate):
            return first, _clean(candidate)
    return first, ""


def fallback_company(lead: Lead) -> str | None:
    company = _clean(lead.company)
    if company:
        return company
    _, domain = _email_parts(lead.email)
    if domain and domain not in FREE_MAIL_DOMAINS and not domain.endswith(".noreply.github.com"):
        return domain
    return None


def task_record(event: LeadEvent, who_id: str) -> dict[str, Any]:
    """The completed Task logged for an activity event on the record `who_id`."""
    activity = event.activity
    assert activity is not None
    details = [
        activity.text,
        activity.url,
        f"Campaign: {activity.campaign}" if activity.campaign else None,
        f"{event.provider} {event.provider_event or event.type}, via leadrelay",
    ]
    when = event.occurred_at or event.received_at
    return {
        "WhoId": who_id,
        "Subject": cut(activity_label(activity.kind), TASK_FIELD_LENGTHS["Subject"]),
        "Description": cut("\n".join(filter(None, details)), TASK_FIELD_LENGTHS["Description"]),
        "Status": "Completed",
        "Priority": "Normal",
        "ActivityDate": when.date().isoformat(),
    }


# -- delivery plumbing --------------------------------------------------------------------


@dataclass
class _Item:
    """One event on its way: where its outcome goes and what to send."""

    index: int
    record: dict[str, Any]
    identity: str  # matching value (external id or email), as sent
    archive: bool
    record_id: str | None = None  # once Salesforce has written it

    @property
    def identity_key(self) -> str:
        return self.identity.lower()  # Salesforce matches both case-insensitively


class _BatchFailure(Exception):
    """A failure that applies to a whole call, hence to every event it carried."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(getattr(outcome, "error", ""))
        self.outcome = outcome


class _SalesforceAdapter(HTTPAdapter):
    """Applies the connector's timeout and CA bundle to every request, logins included.

    simple-salesforce's login helpers post without a timeout, and requests lets the
    REQUESTS_CA_BUNDLE environment variable override `Session.verify`; both are settled here.
    """

    def __init__(self, timeout: float, verify: bool | str) -> None:
        super().__init__(max_retries=0)  # retries belong to the delivery engine
        self._timeout = timeout
        self._verify = verify

    def send(self, request: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout
        if self._verify is not True:
            kwargs["verify"] = self._verify
        return super().send(request, **kwargs)


T = TypeVar("T")


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _rounds(items: list[_Item]) -> list[list[_Item]]:
    """Split items so no round holds two for the same lead; order per lead is kept."""
    rounds: list[list[_Item]] = []
    seen: dict[str, int] = {}
    for item in items:
        position = seen.get(item.identity_key, 0)
        seen[item.identity_key] = position + 1
        if position == len(rounds):
            rounds.append([])
        rounds[position].append(item)
    return rounds


@dataclass
class _ErrorDetail:
    code: str
    message: str
    fields: list[str] = field(default_factory=list)

    def text(self) -> str:
        suffix = f" (fields: {', '.join(self.fields)})" if self.fields else ""
        return f"Salesforce {self.code}: {self.message}{suffix}"


def _error_details(content: Any) -> _ErrorDetail:
    """The first error of a REST error body (`[{"errorCode", "message", "fields"}]`)."""
    if isinstance(content, bytes):
        content = content.decode("utf-8", "replace")
    if isinstance(content, list) and content and isinstance(content[0], dict):
        content = content[0]
    if isinstance(content, dict):
        code = content.get("errorCode") or content.get("statusCode") or content.get("error")
        message = content.get("message") or content.get("error_description") or ""
        fields = content.get("fields") or []
        return _ErrorDetail(str(code or "UNKNOWN_ERROR"), str(message), [str(f) for f in fields])
    return _ErrorDetail("UNKNOWN_ERROR", str(content)[:500])


# -- the connector ------------------------------------------------------------------------


class SalesforceConnector(Connector[SalesforceOptions]):
    """Leads into Salesforce (Lead by default); see the module docstring for the rules."""

    type_name: ClassVar[str] = "salesforce"
    options_model: ClassVar[type[SalesforceOptions]] = SalesforceOptions
    batch_size: ClassVar[int] = COLLECTION_LIMIT

    def __init__(self, name: str, options: SalesforceOptions) -> None:
        super().__init__(name, options)
        self._http = requests.Session()
        self._http.mount("https://", _SalesforceAdapter(options.timeout, options.verify))
        self._http.hooks["response"].append(self._remember_response)
        self._last_retry_after: str | None = None
        self._last_status: int | None = None
        self._client: Salesforce | None = None
        self._session_id: str | None = None
        self._lock = threading.Lock()  # one login and one batch at a time per connector

    # -- public API ---------------------------------------------------------------------

    def send(self, batch: Sequence[LeadEvent]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(batch)
        items: list[_Item] = []
        for index, event in enumerate(batch):
            prepared = self._prepare(index, event)
            if isinstance(prepared, _Item):
                items.append(prepared)
            else:
                outcomes[index] = prepared
        if items:
            with self._lock:
                try:
                    for round_items in _rounds(items):
                        for chunk in _chunks(round_items, COLLECTION_LIMIT):
                            results = self._call(lambda client, c=chunk: self._deliver(client, c))
                            for index, outcome in results.items():
                                outcomes[index] = outcome
                except _BatchFailure as failure:
                    # Stop at the first call-wide failure: the next call would meet it too.
                    for item in items:
                        if outcomes[item.index] is None:
                            outcomes[item.index] = failure.outcome
                # Also after a failure: records written before it are Delivered and would
                # not be retried, so their Tasks are logged now (or their outcome becomes
                # the Task's failure, and the retry writes them again).
                self._log_tasks(batch, items, outcomes)
        return [
            outcome if outcome is not None else Retryable("no result from Salesforce")
            for outcome in outcomes
        ]

    def preview(self, event: LeadEvent) -> dict[str, Any]:
        plan = self._record_plan(event)
        writes = plan["action"] not in ("skip", "archive")
        if event.activity is not None and writes and self._logs_tasks():
            written_id = f"<Id of the {self.options.object} written above>"
            plan["then_log_task"] = {
                "method": "POST",
                "path": self._api_path(COLLECTIONS_PATH),
                "body": self._collection_body([task_record(event, written_id)], "Task"),
            }
        return plan

    def _record_plan(self, event: LeadEvent) -> dict[str, Any]:
        prepared = self._prepare(0, event)
        if not isinstance(prepared, _Item):
            return {"action": "skip", "reason": getattr(prepared, "reason", "")}
        collections = self._api_path(COLLECTIONS_PATH)
        if self.options.external_id_field and not prepared.archive:
            return {
                "action": "upsert",
                "method": "PATCH",
                "path": f"{collections}/{self.options.object}/{self.options.external_id_field}",
                "body": self._collection_body([prepared.record]),
            }
        lookup = {
            "method": "GET",
            "path": self._api_path("query"),
            "q": self._lookup_soql([prepared]),
        }
        found_id = f"<Id of the {self.options.object} found>"
        if prepared.archive:
            return {
                "action": "archive",
                "lookup": lookup,
                "if_found": {
                    "method": "PATCH",
                    "path": collections,
                    "body": self._collection_body([self._archive_record(found_id)]),
                },
                "if_not_found": {"action": "skip"},
            }
        return {
            "action": "find_by_email",
            "lookup": lookup,
            "if_found": {
                "method": "PATCH",
                "path": collections,
                "body": self._collection_body([{**prepared.record, "id": found_id}]),
            },
            "if_not_found": {
                "method": "POST",
                "path": collections,
                "body": self._collection_body([prepared.record]),
            },
        }

    def check_connection(self) -> None:
        describe = self._describe(self.options.object)
        fields = {f["name"].lower(): f for f in describe.get("fields", [])}
        problems = []
        if not describe.get("createable") or not describe.get("updateable"):
            problems.append(f"this user cannot create and update {self.options.object} records")
        ext = self.options.external_id_field
        if ext:
            spec = fields.get(ext.lower())
            if spec is None:
                problems.append(f"{self.options.object} has no field {ext}")
            elif not spec.get("externalId"):
                problems.append(f"{ext} is not marked as an External ID field")
        mapped = [name for name, source in self.options.mapping().items() if source is not None]
        unknown = [name for name in mapped if name.lower() not in fields]
        if unknown:
            problems.append(
                f"{self.options.object} has no field(s) {', '.join(unknown)}; "
                "fix them or drop them with field_map: {Field: null}"
            )
        if self._logs_tasks() and not self._describe("Task").get("createable"):
            problems.append(
                "this user cannot create Task records, which activity events log; grant "
                "Create on Task or set activity_tasks: false"
            )
        if problems:
            raise ConnectionCheckFailed("; ".join(problems))

    def _describe(self, sobject: str) -> dict[str, Any]:
        path = f"sobjects/{sobject}/describe"
        with self._lock:
            try:
                return self._call(lambda client: client.restful(path)) or {}
            except _BatchFailure as failure:
                raise ConnectionCheckFailed(getattr(failure.outcome, "error", "failed")) from None

    def close(self) -> None:
        self._http.close()

    # -- preparing records --------------------------------------------------------------

    def _prepare(self, index: int, event: LeadEvent) -> _Item | Skipped:
        archive = event.type == "lead.deleted"
        if archive and self.options.on_delete != "archive":
            return Skipped("lead.deleted: CRM records are never deleted (on_delete: skip)")
        record = self.build_record(event)
        ext = self.options.external_id_field
        if ext:
            return _Item(index, record, record[ext], archive)
        email = _clean(event.lead.email)
        if not email:
            return Skipped("lead has no email to find it by; set external_id_field to upsert it")
        if utf16_len(email) > FIELD_LENGTHS["Email"]:
            return Skipped(
                "email is longer than Salesforce's 80-character Email field, so the lead "
                "cannot be found by it; set external_id_field to upsert it"
            )
        return _Item(index, record, email, archive)

    def build_record(self, event: LeadEvent) -> dict[str, Any]:
        """The field values sent for `event` (no `attributes`, no `id`)."""
        mapping = self.options.mapping()
        record: dict[str, Any] = {}
        for sf_field, source in mapping.items():
            value = _clean(_source_value(event, source)) if source else None
            if value is not None:
                record[sf_field] = value
        lead = event.lead
        if mapping.get("LastName") is not None and not record.get("LastName"):
            first, last = fallback_names(lead)
            record["LastName"] = last or self.options.fallback_last_name
            if first is None and mapping.get("FirstName") == "first_name":
                record.pop("FirstName", None)  # a one-word name went to LastName
        if mapping.get("Company") is not None and not record.get("Company"):
            record["Company"] = fallback_company(lead) or self.options.fallback_company
        email = record.get("Email")
        if isinstance(email, str) and utf16_len(email) > FIELD_LENGTHS["Email"]:
            del record["Email"]
            note = f"Email (too long for the Email field): {email}"
            record["Description"] = "\n".join(filter(None, [record.get("Description"), note]))
        for sf_field, value in record.items():
            limit = FIELD_LENGTHS.get(sf_field)
            if limit is not None and isinstance(value, str):
                record[sf_field] = cut(value, limit)
        if self.options.external_id_field:
            record[self.options.external_id_field] = lead.key
        return record

    def _archive_record(self, record_id: str) -> dict[str, Any]:
        return {"id": record_id, "Status": self.options.archive_status}

    def _api_path(self, path: str) -> str:
        return f"/services/data/v{self.options.api_version}/{path}"

    def _collection_body(
        self, records: Sequence[dict[str, Any]], sobject: str | None = None
    ) -> dict[str, Any]:
        kind = sobject or self.options.object
        typed = [{"attributes": {"type": kind}, **record} for record in records]
        return {"allOrNone": False, "records": typed}

    def _identity_field(self) -> str:
        return self.options.external_id_field or "Email"

    def _lookup_soql(self, items: Sequence[_Item]) -> str:
        field_name = self._identity_field()
        converted = " AND IsConverted = false" if self.options.object == "Lead" else ""
        return format_soql(
            "SELECT Id, {field:literal} FROM {object:literal} "
            "WHERE {field:literal} IN {values}{converted:literal} "
            "ORDER BY LastModifiedDate DESC",
            field=field_name,
            object=self.options.object,
            values=sorted({item.identity for item in items}),
            converted=converted,
        )

    # -- talking to Salesforce ----------------------------------------------------------

    def _deliver(self, client: Salesforce, chunk: Sequence[_Item]) -> dict[int, Outcome]:
        """Send one chunk (≤ 200 items, one per lead); one outcome per item."""
        outcomes: dict[int, Outcome] = {}
        upserts: list[_Item] = []
        matched: list[_Item] = []  # found by a lookup first: Email mode, and archiving
        for item in chunk:
            upserting = self.options.external_id_field and not item.archive
            (upserts if upserting else matched).append(item)
        if upserts:
            path = f"{COLLECTIONS_PATH}/{self.options.object}/{self.options.external_id_field}"
            outcomes.update(
                self._collection(client, "PATCH", path, upserts, [i.record for i in upserts])
            )
        if not matched:
            return outcomes
        found = self._lookup(client, matched)
        updates: list[tuple[_Item, dict[str, Any]]] = []
        creates: list[_Item] = []
        for item in matched:
            record_id = found.get(item.identity_key)
            if record_id is None and item.archive:
                outcomes[item.index] = Skipped(
                    f"no {self.options.object} with {self._identity_field()} "
                    f"{item.identity!r} in Salesforce; nothing to archive"
                )
            elif record_id is None:
                creates.append(item)
            elif item.archive:
                updates.append((item, self._archive_record(record_id)))
            else:
                updates.append((item, {**item.record, "id": record_id}))
        if updates:
            outcomes.update(
                self._collection(
                    client,
                    "PATCH",
                    COLLECTIONS_PATH,
                    [u[0] for u in updates],
                    [u[1] for u in updates],
                )
            )
        if creates:
            outcomes.update(
                self._collection(
                    client, "POST", COLLECTIONS_PATH, creates, [i.record for i in creates]
                )
            )
        return outcomes

    def _log_tasks(
        self, batch: Sequence[LeadEvent], items: Sequence[_Item], outcomes: list[Outcome | None]
    ) -> None:
        """A completed Task on each written record whose event carries an activity.

        After the record, since the Task points at it. A Task cannot be upserted: if its
        creation fails the event's outcome is the Task's (a retry writes the record again,
        which is idempotent, and creates the Task), so a Task whose answer was lost after
        Salesforce stored it is created twice: at-least-once, like HubSpot's notes.
        """
        if not self._logs_tasks():
            return
        pending = [
            item
            for item in items
            if item.record_id
            and not item.archive
            and batch[item.index].activity is not None
            and isinstance(outcomes[item.index], Delivered)
        ]
        for chunk in _chunks(pending, COLLECTION_LIMIT):
            records = [task_record(batch[item.index], item.record_id or "") for item in chunk]
            results: Sequence[dict[str, Any] | Outcome]
            try:
                results = self._call(
                    lambda client, r=records: self._send_records(
                        client, "POST", COLLECTIONS_PATH, r, "Task"
                    )
                )
            except _BatchFailure as failure:
                results = [failure.outcome] * len(chunk)
            for item, result in zip(chunk, results, strict=True):
                written = outcomes[item.index]
                assert isinstance(written, Delivered)
                outcomes[item.index] = self._with_task(written, result)

    def _logs_tasks(self) -> bool:
        return self.options.activity_tasks and self.options.object.lower() in TASK_WHO_OBJECTS

    def _with_task(self, written: Delivered, result: dict[str, Any] | Outcome) -> Outcome:
        if isinstance(result, dict):
            if result.get("success"):
                return Delivered(f"{written.detail}; logged Task {result.get('id')}")
            result = self._record_failure(result)
        if isinstance(result, Permanent):
            return Permanent(f"{written.detail}, but Salesforce refused its Task: {result.error}")
        return result

    def _lookup(self, client: Salesforce, items: Sequence[_Item]) -> dict[str, str]:
        """Lower-cased identity -> Id of the matching record (most recently modified)."""
        field_name = self._identity_field().lower()
        found: dict[str, str] = {}
        for chunk in _chunks(items, LOOKUP_CHUNK):
            result = client.query_all(self._lookup_soql(chunk))
            for row in result.get("records", []):
                value = next((v for k, v in row.items() if k.lower() == field_name), None)
                if isinstance(value, str):
                    found.setdefault(value.lower(), row["Id"])
        return found

    def _collection(
        self,
        client: Salesforce,
        method: str,
        path: str,
        items: Sequence[_Item],
        records: Sequence[dict[str, Any]],
    ) -> dict[int, Outcome]:
        results = self._send_records(client, method, path, records)
        return {
            item.index: self._record_outcome(item, result, method)
            for item, result in zip(items, results, strict=True)
        }

    def _send_records(
        self,
        client: Salesforce,
        method: str,
        path: str,
        records: Sequence[dict[str, Any]],
        sobject: str | None = None,
    ) -> list[dict[str, Any]]:
        """One sObject Collections call; its per-record results, one per record."""
        body = json.dumps(self._collection_body(records, sobject))
        results = client.restful(path, method=method, data=body)
        if not isinstance(results, list) or len(results) != len(records):
            raise _BatchFailure(
                Retryable(
                    f"Salesforce answered {path} with {len(results or [])} results "
                    f"for {len(records)} records"
                )
            )
        return results

    def _record_outcome(self, item: _Item, result: dict[str, Any], method: str) -> Outcome:
        if result.get("success"):
            item.record_id = result.get("id")
            if item.archive:
                verb = "archived"
            elif "created" in result:
                verb = "created" if result["created"] else "updated"
            else:
                verb = "created" if method == "POST" else "updated"
            return Delivered(f"{verb} {self.options.object} {result.get('id')}")
        return self._record_failure(result)

    def _record_failure(self, result: dict[str, Any]) -> Outcome:
        """The outcome of a record Salesforce refused, from its first error."""
        errors = result.get("errors") or [{}]
        return self._outcome_for(_error_details(errors[0]), status=None)

    def _outcome_for(self, detail: _ErrorDetail, status: int | None) -> Outcome:
        text = self._scrub(detail.text() if status is None else f"HTTP {status}: {detail.text()}")
        if detail.code in RATE_LIMIT_CODES or status == 429:
            retry_after = parse_retry_after(self._last_retry_after, self.options.rate_limit_delay)
            return RateLimited(text, retry_after)
        if (
            detail.code in RETRYABLE_CODES
            or status == 408
            or (status is not None and status >= 500)
        ):
            return Retryable(text)
        return Permanent(text)

    def _call(self, operation: Callable[[Salesforce], T]) -> T:
        """Run `operation` with a session; on INVALID_SESSION_ID log in again once."""
        try:
            try:
                return operation(self._logged_in())
            except SalesforceExpiredSession as expired:
                detail = _error_details(expired.content)
                if self.options.auth_mode == "session":
                    raise _BatchFailure(
                        Permanent(
                            self._scrub(
                                f"session expired: {detail.code}: {detail.message}; a session_id "
                                "cannot be renewed: configure a new one, or username/password "
                                "or JWT"
                            )
                        )
                    ) from None
                self._client = None
                client = self._logged_in()
                try:
                    return operation(client)
                except SalesforceExpiredSession as again:
                    detail = _error_details(again.content)
                    raise _BatchFailure(
                        Permanent(
                            self._scrub(
                                "login failed: Salesforce refused the new session too: "
                                f"{detail.code}: {detail.message}"
                            )
                        )
                    ) from None
        except SalesforceError as exc:
            raise _BatchFailure(
                self._outcome_for(_error_details(exc.content), exc.status)
            ) from None
        except requests.exceptions.InvalidJSONError as exc:  # a 2xx that is not the promised JSON
            raise _BatchFailure(
                Retryable(self._scrub(f"unreadable Salesforce answer: {exc}"))
            ) from None
        except requests.Timeout as exc:
            raise _BatchFailure(
                Retryable(self._scrub(f"timeout after {self.options.timeout:g}s: {exc}"))
            ) from None
        except requests.RequestException as exc:
            raise _BatchFailure(Retryable(self._scrub(f"cannot reach Salesforce: {exc}"))) from None

    def _logged_in(self) -> Salesforce:
        if self._client is not None:
            return self._client
        options = self.options
        if options.auth_mode == "session":
            assert options.session_id is not None
            assert options.instance_url is not None
            session_id = options.session_id.get_secret_value()
            client = Salesforce(
                instance_url=options.instance_url,
                session_id=session_id,
                session=self._http,
                version=options.api_version,
            )
        else:
            session_id, instance = self._login()
            client = Salesforce(
                instance=instance,
                session_id=session_id,
                session=self._http,
                version=options.api_version,
            )
        self._session_id = session_id
        self._client = client
        return client

    def _login(self) -> tuple[str, str]:
        """(session id, instance host) from a fresh login; _BatchFailure if refused."""
        try:
            if self.options.auth_mode == "password":
                return self._soap_login()
            return self._jwt_login()
        except SalesforceAuthenticationFailed as exc:
            code, message = exc.code, exc.auth_message
            status = self._last_status
            text = self._scrub(f"login failed: {code or status}: {message.strip()[:500]}")
            # SOAP faults (INVALID_LOGIN too) arrive as HTTP 500, so the status alone says
            # nothing; without a fault code, a 5xx/408 is an outage rather than a refusal.
            has_fault_code = isinstance(code, str) and code not in RETRYABLE_CODES
            if not has_fault_code and status is not None and (status >= 500 or status == 408):
                raise _BatchFailure(Retryable(text)) from None
            raise _BatchFailure(Permanent(text)) from None

    def _soap_login(self) -> tuple[str, str]:
        options = self.options
        token = options.security_token.get_secret_value() if options.security_token else ""
        assert options.password is not None
        session_id, instance = SalesforceLogin(
            username=options.username,
            password=options.password.get_secret_value(),
            security_token=token,
            sf_version=options.api_version,
            session=self._http,
            domain=options.domain,
            scratch_url=options.effective_login_url,
        )
        return session_id, instance

    def _jwt_login(self) -> tuple[str, str]:
        # simple-salesforce would post to https://<domain>.salesforce.com only; building the
        # assertion here lets `login_url` name a My Domain host. The audience stays the
        # login/test host, as Salesforce requires for the JWT bearer flow.
        options = self.options
        assert options.private_key_file is not None
        assert options.consumer_key is not None
        audience = (
            "https://test.salesforce.com"
            if options.domain == "test"
            else "https://login.salesforce.com"
        )
        try:
            key = Path(options.private_key_file).read_bytes()
        except OSError as exc:
            raise _BatchFailure(
                Permanent(f"login failed: cannot read private_key_file: {exc.strerror}")
            ) from None
        claims = {
            "iss": options.consumer_key,
            "sub": options.username,
            "aud": audience,
            "exp": int(time.time()) + 180,
        }
        try:
            assertion = jwt.encode(claims, key, algorithm="RS256")
        except (ValueError, TypeError, jwt.PyJWTError):
            raise _BatchFailure(
                Permanent("login failed: private_key_file is not a usable RSA private key (PEM)")
            ) from None
        return token_login(
            f"{options.effective_login_url}/services/oauth2/token",
            {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion},
            options.domain,
            options.consumer_key,
            None,
            None,
            self._http,
        )

    def _remember_response(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        # The SDK's exceptions keep neither headers nor (for logins) the status code.
        self._last_status = response.status_code
        self._last_retry_after = response.headers.get("Retry-After")

    def _scrub(self, text: str) -> str:
        options = self.options
        secrets: list[str | SecretStr | None] = [
            options.session_id,
            options.password,
            options.security_token,
            self._session_id,
        ]
        if options.password and options.security_token:
            secrets.append(
                options.password.get_secret_value() + options.security_token.get_secret_value()
            )
        return scrub(text, *secrets)
