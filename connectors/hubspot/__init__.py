"""HubSpot: every lead becomes a contact (batch upsert), every activity a note on it.

Built on the official `hubspot-api-client` SDK: its models build the request bodies, its
API classes send them. Two of the SDK's defaults are wrong for a delivery engine, so:

* urllib3's default `Retry` re-sends on connect errors but never a POST after a read error;
  the SDK gets `retries=False` and leadrelay's engine owns every retry and its schedule.
* The SDK deserializes only the status codes listed in its spec and returns `None` for any
  other 2xx (and raises on a body missing a field it thinks required). Responses are read
  raw (`_preload_content=False`) and parsed here, so a 201 instead of a 200 loses nothing.

What lands in HubSpot
---------------------
Lead fields go to contact properties through `DEFAULT_PROPERTY_MAP`, changed by the
`properties` option (lead field -> HubSpot property; `null` drops a default; `extra.<name>`
reads a provider field kept in `lead.extra`). A field the lead lacks is not sent, so a later,
thinner event never blanks what an earlier one filled. Derived values: `first_name`/`last_name`
from `full_name` when both are missing, `linkedin_url` from `linkedin_username`.
`location` is not mapped by default: providers send free text ("Berlin", "Remote 🌍"), and
pasted into HubSpot's structured `city` it would spoil territory reports; map it yourself
(`properties: {location: city}`) if your leads' locations are clean.

Identity: contacts are upserted by `id_property` (default `email`, matched case-insensitively
as HubSpot does). A lead without that value is upserted by `key_property` (a unique custom
property you create in HubSpot) holding `lead.key`, or skipped with the reason recorded.
`key_property`, when set, is written on every contact. A lead's key changes once it gains an
email (`github:jdoe` -> `email:...`), so a lead first seen without an email and later with
one becomes two contacts; HubSpot's merge joins them.
Two events for the same contact in one batch become one upsert input (later values win), as
HubSpot refuses a batch that names one id twice.

Activities (`lead.activity`, or any event that carries one) become a note associated with
the contact (`HUBSPOT_DEFINED` type 202, note to contact), created after the upsert. Notes
cannot be upserted: a note whose creation timed out after HubSpot stored it is created again
on retry. Contacts themselves are effectively once.

`lead.deleted` is skipped unless `on_delete: archive`, which archives the contact found by
its id property (a contact that is not there is reported delivered: nothing to archive).

Scopes: `crm.objects.contacts.write` (upserts, archives, notes) and
`crm.objects.contacts.read` (`check_connection`, finding contacts to archive).

Outcomes: 2xx per contact (a 207 is split by `objectWriteTraceId`); 429 waits as HubSpot's
`Retry-After` or `X-HubSpot-RateLimit-*` headers say; 423 (records locked) and 477
(account migrating) are waits too; 401 and 403 are permanent and say whether the token or
which scope is wrong; a 400 for a multi-contact batch is split in halves until the contact
HubSpot refuses is found, so one bad email does not dead-letter the other 99 leads.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC
from importlib.metadata import version
from typing import Any, ClassVar, Literal, TypeVar

import urllib3
from hubspot.crm import contacts as hs_contacts
from hubspot.crm.objects import notes as hs_notes
from pydantic import Field, SecretStr, field_validator, model_validator

from leadrelay.connectors.hubspot.pacing import Pacer
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
from leadrelay.core.schema import Lead, LeadEvent

DEFAULT_BASE_URL = "https://api.hubapi.com"

# Lead field -> HubSpot contact property (all HubSpot default properties).
DEFAULT_PROPERTY_MAP: dict[str, str] = {
    "email": "email",
    "first_name": "firstname",
    "last_name": "lastname",
    "title": "jobtitle",
    "company": "company",
    "phone": "phone",
    "website": "website",
    "linkedin_url": "hs_linkedin_url",
}

BATCH_LIMIT = 100  # HubSpot's limit for batch upsert, read, archive and create
NOTE_TO_CONTACT = 202  # HubSpot-defined association type id, note -> contact
NOTE_BODY_LIMIT = 65_536

UPSERT_PATH = "/crm/v3/objects/contacts/batch/upsert"
READ_PATH = "/crm/v3/objects/contacts/batch/read"
ARCHIVE_PATH = "/crm/v3/objects/contacts/batch/archive"
NOTES_PATH = "/crm/v3/objects/notes/batch/create"
CONTACTS_PATH = "/crm/v3/objects/contacts"

# A refusal of one of these statuses may concern a single input of a batch, so the batch is
# split to find it; other 4xx (404, 405, ...) are about the request itself.
_SPLITTABLE_STATUSES = frozenset({400, 409, 413, 422})
# HubSpot's rolling window is ten seconds; the daily limit resets at midnight in the
# account's time zone, which the API does not tell us, so it is polled hourly.
_DEFAULT_RATE_LIMIT_WAIT = 10.0
_ROLLING_WINDOW_PARTS = 10
_DAILY_LIMIT_WAIT = 3600.0
_LOCKED_WAIT = 2.0  # HubSpot: "Locks will last for 2 seconds"
_ERROR_TEXT_LIMIT = 1000

_PROPERTY_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_MAPPABLE_FIELDS = frozenset(Lead.model_fields) - {"extra"}

_NETWORK_ERRORS = (urllib3.exceptions.HTTPError, OSError)
_API_ERRORS = (hs_contacts.ApiException, hs_notes.ApiException)


class HubSpotOptions(CrmOptions):
    """Options of a `type: hubspot` connector (see the module docstring)."""

    type: Literal["hubspot"] = "hubspot"
    access_token: SecretStr
    base_url: str = DEFAULT_BASE_URL
    id_property: str = "email"
    key_property: str | None = None
    properties: dict[str, str | None] = Field(default_factory=dict)
    timeout: float = Field(default=10.0, gt=0, le=300)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must start with https:// (or http:// for a local test server)")
        return value.rstrip("/")

    @field_validator("id_property", "key_property")
    @classmethod
    def _property_name(cls, value: str | None) -> str | None:
        if value is not None and not _PROPERTY_NAME.match(value):
            raise ValueError(f"{value!r} is not a HubSpot internal property name (a-z, 0-9, _)")
        return value

    @field_validator("properties")
    @classmethod
    def _property_map(cls, value: dict[str, str | None]) -> dict[str, str | None]:
        targets: dict[str, str] = {}
        for lead_field, prop in value.items():
            if lead_field not in _MAPPABLE_FIELDS and not lead_field.startswith("extra."):
                raise ValueError(
                    f"{lead_field!r} is not a lead field; use one of "
                    f"{', '.join(sorted(_MAPPABLE_FIELDS))} or extra.<name>"
                )
            if prop is None:
                continue
            if not _PROPERTY_NAME.match(prop):
                raise ValueError(f"{prop!r} is not a HubSpot internal property name (a-z, 0-9, _)")
            if prop in targets:
                raise ValueError(f"{targets[prop]!r} and {lead_field!r} both map to {prop!r}")
            targets[prop] = lead_field
        return value

    @model_validator(mode="after")
    def _id_property_is_filled(self) -> HubSpotOptions:
        if self.id_property != self.key_property and self.id_property not in self.property_map():
            raise ValueError(
                f"id_property {self.id_property!r} is not filled by any lead field: map one to it "
                "in `properties`, or set key_property to the same property"
            )
        return self

    def property_map(self) -> dict[str, str]:
        """HubSpot property -> lead field, defaults overridden by `properties`."""
        claimed = {prop for prop in self.properties.values() if prop is not None}
        result = {
            prop: lead_field
            for lead_field, prop in DEFAULT_PROPERTY_MAP.items()
            if lead_field not in self.properties and prop not in claimed
        }
        result.update({prop: f for f, prop in self.properties.items() if prop is not None})
        return result


# -- what one send is made of ------------------------------------------------------------


@dataclass(frozen=True)
class _Identity:
    """How one lead is found in HubSpot: upsert id property and its value."""

    id_property: str
    value: str

    @property
    def match_key(self) -> str:
        # HubSpot compares emails case-insensitively; custom unique values as they are.
        return self.value.strip().lower() if self.id_property == "email" else self.value


@dataclass(frozen=True)
class _UpsertPlan:
    identity: _Identity
    properties: dict[str, str]


@dataclass(frozen=True)
class _ArchivePlan:
    identity: _Identity


_Plan = _UpsertPlan | _ArchivePlan | Skipped


@dataclass
class _ContactInput:
    trace: str
    identity: _Identity
    properties: dict[str, str]
    event_indices: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class _NoteInput:
    trace: str
    event_index: int
    contact_id: str
    properties: dict[str, str]


@dataclass(frozen=True)
class _Settled:
    """The fate of one batch input: the outcome and, when HubSpot said, the record id."""

    outcome: Outcome
    record_id: str | None = None


@dataclass(frozen=True)
class _Reply:
    status: int
    body: Any
    headers: Mapping[str, str]  # lower-cased names

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class _StopSending(Exception):
    """A failure every further request of this send would meet too (token, rate limit, outage)."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(str(outcome))
        self.outcome = outcome


InputT = TypeVar("InputT", _ContactInput, _NoteInput)
ChunkT = TypeVar("ChunkT")


# -- the connector -----------------------------------------------------------------------


class HubSpotConnector(Connector[HubSpotOptions]):
    type_name: ClassVar[str] = "hubspot"
    options_model: ClassVar[type[HubSpotOptions]] = HubSpotOptions
    batch_size: ClassVar[int] = BATCH_LIMIT
    delivery_guarantee: ClassVar[str] = "once"

    def __init__(self, name: str, options: HubSpotOptions) -> None:
        super().__init__(name, options)
        self._property_map = options.property_map()
        user_agent = f"leadrelay (hubspot-api-client-python; {version('hubspot-api-client')})"
        self._contacts_config = self._configure(hs_contacts.Configuration())
        self._contacts_client = hs_contacts.ApiClient(self._contacts_config)
        self._contacts_client.user_agent = user_agent
        self._notes_config = self._configure(hs_notes.Configuration())
        self._notes_client = hs_notes.ApiClient(self._notes_config)
        self._notes_client.user_agent = user_agent
        self._contacts_batch = hs_contacts.BatchApi(self._contacts_client)
        self._contacts_basic = hs_contacts.BasicApi(self._contacts_client)
        self._notes_batch = hs_notes.BatchApi(self._notes_client)
        self.pacer = Pacer()

    def _configure(self, config: Any) -> Any:
        config.host = self.options.base_url
        config.access_token = self.options.access_token.get_secret_value()
        config.retries = False  # leadrelay's engine retries, on its own schedule
        return config

    # -- public contract ----------------------------------------------------------------

    def send(self, batch: Sequence[LeadEvent]) -> list[Outcome]:
        plans = [self._plan(event) for event in batch]
        outcomes: dict[int, Outcome] = {
            index: plan for index, plan in enumerate(plans) if isinstance(plan, Skipped)
        }
        try:
            for kind, indices in _phases(plans):
                if kind is _UpsertPlan:
                    self._run_upserts(batch, plans, indices, outcomes)
                else:
                    self._run_archives(plans, indices, outcomes)
        except _StopSending as stop:
            # Events settled before the stop keep their outcome; the rest share its fate.
            for index in range(len(batch)):
                outcomes.setdefault(index, stop.outcome)
        return [outcomes[index] for index in range(len(batch))]

    def preview(self, event: LeadEvent) -> dict[str, Any]:
        plan = self._plan(event)
        if isinstance(plan, Skipped):
            return {
                "connector": self.name,
                "type": self.type_name,
                "requests": [],
                "skipped": plan.reason,
            }
        requests: list[dict[str, Any]] = []
        if isinstance(plan, _ArchivePlan):
            requests.append(self._request("POST", READ_PATH, self._read_body([plan.identity])))
            requests.append(
                self._request(
                    "POST",
                    ARCHIVE_PATH,
                    self._archive_body(["<id of the contact found by the read>"]),
                )
            )
        else:
            contact = _ContactInput("0", plan.identity, plan.properties, [0])
            requests.append(self._request("POST", UPSERT_PATH, self._upsert_body([contact])))
            if event.activity is not None:
                note = self._note_input(0, event, "<id of the contact returned by the upsert>")
                requests.append(self._request("POST", NOTES_PATH, self._notes_body([note])))
        return {"connector": self.name, "type": self.type_name, "requests": requests}

    def check_connection(self) -> None:
        """Read one contact (token and read scope), then send an empty batch upsert.

        The empty upsert writes nothing; HubSpot checks scopes before the body, so a 403
        there names a missing write scope. A 400 about the empty input means it got past it.
        """
        probes: list[tuple[str, Callable[..., Any], set[int]]] = [
            (
                f"GET {CONTACTS_PATH}?limit=1",
                lambda **kw: self._contacts_basic.get_page(limit=1, archived=False, **kw),
                set(),
            ),
            (
                f"POST {UPSERT_PATH} with no inputs",
                lambda **kw: self._contacts_batch.upsert(self._upsert_body([]), **kw),
                {400},  # refused for being empty: the token and its scopes passed
            ),
        ]
        for label, request, also_fine in probes:
            try:
                reply = self._call(request)
            except _StopSending as stop:
                raise ConnectionCheckFailed(f"{label}: {_outcome_text(stop.outcome)}") from None
            if not reply.ok and reply.status not in also_fine:
                raise ConnectionCheckFailed(f"{label}: {self._failure(reply)}")

    def close(self) -> None:
        for client in (self._contacts_client, self._notes_client):
            client.close()
            client.rest_client.pool_manager.clear()

    # -- planning ---------------------------------------------------------------------------

    def _plan(self, event: LeadEvent) -> _Plan:
        lead = event.lead
        if event.type == "lead.deleted" and self.options.on_delete == "skip":
            return Skipped(
                "lead.deleted: CRM connectors never delete on their own "
                "(set on_delete: archive to archive the HubSpot contact)"
            )
        identity = self._identity(lead)
        if identity is None:
            return Skipped(
                f"lead {lead.key} has no {self.options.id_property} (the HubSpot id_property) and "
                "no key_property is configured to upsert it by its lead key"
            )
        if event.type == "lead.deleted":
            return _ArchivePlan(identity)
        return _UpsertPlan(identity, self._contact_properties(lead))

    def _identity(self, lead: Lead) -> _Identity | None:
        id_property = self.options.id_property
        if id_property == self.options.key_property:
            return _Identity(id_property, lead.key)
        value = self._lead_values(lead).get(self._property_map[id_property])
        if value is not None and _format(value):
            return _Identity(id_property, _format(value))
        if self.options.key_property:
            return _Identity(self.options.key_property, lead.key)
        return None

    def _lead_values(self, lead: Lead) -> dict[str, Any]:
        values: dict[str, Any] = {name: getattr(lead, name) for name in _MAPPABLE_FIELDS}
        values.update({f"extra.{name}": value for name, value in lead.extra.items()})
        if lead.first_name is None and lead.last_name is None and lead.full_name:
            first, _, rest = lead.full_name.strip().partition(" ")
            values["first_name"], values["last_name"] = first, rest.strip() or None
        if lead.linkedin_url is None and lead.linkedin_username:
            values["linkedin_url"] = f"https://www.linkedin.com/in/{lead.linkedin_username}"
        return values

    def _contact_properties(self, lead: Lead) -> dict[str, str]:
        values = self._lead_values(lead)
        properties = {}
        for prop, lead_field in self._property_map.items():
            text = _format(values.get(lead_field))
            if text:
                properties[prop] = text
        if self.options.key_property:
            properties[self.options.key_property] = lead.key
        return properties

    # -- upserts and notes ------------------------------------------------------------------

    def _run_upserts(
        self,
        batch: Sequence[LeadEvent],
        plans: Sequence[_Plan],
        indices: list[int],
        outcomes: dict[int, Outcome],
    ) -> None:
        # One input per contact: HubSpot refuses a batch that names one id twice.
        inputs: dict[tuple[str, str], _ContactInput] = {}
        for index in indices:
            plan = plans[index]
            assert isinstance(plan, _UpsertPlan)
            key = (plan.identity.id_property, plan.identity.match_key)
            contact = inputs.get(key)
            if contact is None:
                contact = inputs[key] = _ContactInput(str(len(inputs)), plan.identity, {})
            contact.properties.update(plan.properties)
            contact.event_indices.append(index)

        by_property: dict[str, list[_ContactInput]] = {}
        for contact in inputs.values():
            by_property.setdefault(contact.identity.id_property, []).append(contact)

        settled: dict[str, _Settled] = {}
        stopped: _StopSending | None = None
        try:
            for group in by_property.values():
                for chunk in _chunks(group, BATCH_LIMIT):
                    reply = self._post_upserts(chunk)
                    settled.update(
                        self._settle(chunk, reply, self._post_upserts, self._read_upserts)
                    )
        except _StopSending as stop:
            stopped = stop

        notes: list[_NoteInput] = []
        contact_results: dict[int, _Settled] = {}
        for contact in inputs.values():
            result = settled.get(contact.trace)
            if result is None:
                continue
            for index in contact.event_indices:
                contact_results[index] = result
                activity = batch[index].activity
                if not isinstance(result.outcome, Delivered) or activity is None:
                    outcomes[index] = result.outcome
                elif result.record_id is None:
                    outcomes[index] = Retryable(
                        "HubSpot accepted the contact but did not return its id, so the "
                        "activity note could not be attached yet"
                    )
                else:
                    notes.append(self._note_input(index, batch[index], result.record_id))
        if stopped is not None:
            raise stopped

        for chunk in _chunks(notes, BATCH_LIMIT):
            reply = self._post_notes(chunk)
            settled_notes = self._settle(chunk, reply, self._post_notes, self._read_notes)
            for note in chunk:
                note_result = settled_notes[note.trace]
                contact_outcome = contact_results[note.event_index].outcome
                assert isinstance(contact_outcome, Delivered)
                if isinstance(note_result.outcome, Delivered):
                    outcomes[note.event_index] = Delivered(
                        f"{contact_outcome.detail}; {note_result.outcome.detail}"
                    )
                elif isinstance(note_result.outcome, Permanent):
                    outcomes[note.event_index] = Permanent(
                        f"{contact_outcome.detail}, but HubSpot refused the activity note: "
                        f"{note_result.outcome.error}"
                    )
                else:
                    outcomes[note.event_index] = note_result.outcome

    def _post_upserts(self, chunk: list[_ContactInput]) -> _Reply:
        body = self._upsert_body(chunk)
        return self._call(lambda **kw: self._contacts_batch.upsert(body, **kw))

    def _read_upserts(self, chunk: list[_ContactInput], reply: _Reply) -> dict[str, _Settled]:
        by_trace = {contact.trace: contact for contact in chunk}
        by_id = {contact.identity.match_key: contact for contact in chunk}
        id_property = chunk[0].identity.id_property

        def find(result: Mapping[str, Any]) -> _ContactInput | None:
            trace = str(result.get("objectWriteTraceId"))
            if trace in by_trace:
                return by_trace[trace]
            value = (result.get("properties") or {}).get(id_property)
            return by_id.get(_Identity(id_property, value).match_key) if value else None

        def delivered(result: Mapping[str, Any]) -> _Settled:
            record_id = str(result["id"]) if result.get("id") is not None else None
            created = result.get("new")
            verb = "created" if created else "updated" if created is False else "upserted"
            return _Settled(Delivered(f"{verb} contact {record_id}"), record_id)

        return self._read_batch_reply(chunk, reply, find, delivered, by_id, id_property)

    def _post_notes(self, chunk: list[_NoteInput]) -> _Reply:
        body = self._notes_body(chunk)
        return self._call(lambda **kw: self._notes_batch.create(body, **kw))

    def _read_notes(self, chunk: list[_NoteInput], reply: _Reply) -> dict[str, _Settled]:
        by_trace = {note.trace: note for note in chunk}
        # HubSpot does not echo objectWriteTraceId on created records; a note is known by
        # its body and timestamp, which it returns as sent.
        by_content: dict[tuple[str, str], list[_NoteInput]] = {}
        for note in chunk:
            content = (note.properties["hs_note_body"], note.properties["hs_timestamp"])
            by_content.setdefault(content, []).append(note)

        def find(result: Mapping[str, Any]) -> _NoteInput | None:
            if str(result.get("objectWriteTraceId")) in by_trace:
                return by_trace[str(result.get("objectWriteTraceId"))]
            properties = result.get("properties") or {}
            same = by_content.get((properties.get("hs_note_body"), properties.get("hs_timestamp")))
            return same.pop(0) if same else None

        def delivered(result: Mapping[str, Any]) -> _Settled:
            return _Settled(Delivered(f"added note {result.get('id')}"), str(result.get("id")))

        return self._read_batch_reply(chunk, reply, find, delivered, {}, None)

    def _read_batch_reply(
        self,
        chunk: list[InputT],
        reply: _Reply,
        find: Callable[[Mapping[str, Any]], InputT | None],
        delivered: Callable[[Mapping[str, Any]], _Settled],
        by_id: Mapping[str, InputT],
        id_property: str | None,
    ) -> dict[str, _Settled]:
        """Split a 2xx batch answer (200, 201 or 207) back onto its inputs."""
        body = reply.body if isinstance(reply.body, dict) else {}
        settled: dict[str, _Settled] = {}
        unplaced_results = []
        for result in body.get("results") or []:
            if not isinstance(result, dict):
                continue
            target = find(result)
            if target is None:
                unplaced_results.append(result)
            else:
                settled[target.trace] = delivered(result)

        untied_errors: list[str] = []
        for error in body.get("errors") or []:
            if not isinstance(error, dict):
                continue
            context = error.get("context") or {}
            targets = [t for t in chunk if t.trace in (context.get("objectWriteTraceId") or [])]
            if not targets and id_property is not None:
                ids = context.get("ids") or []
                targets = [by_id[key] for key in _match_keys(id_property, ids) if key in by_id]
            outcome = self._input_error(error)
            if targets:
                for target in targets:
                    settled[target.trace] = _Settled(outcome)
            else:
                untied_errors.append(_outcome_text(outcome))

        missing = [item for item in chunk if item.trace not in settled]
        if len(missing) == len(unplaced_results) == 1 and not untied_errors:
            settled[missing[0].trace] = delivered(unplaced_results[0])
            missing = []
        said_nothing = "results" not in body and "errors" not in body
        if not untied_errors and (said_nothing or len(unplaced_results) == len(missing)):
            # A 2xx with no per-record answer, or one result per record without saying
            # which is whose: HubSpot took them all.
            for item in missing:
                settled[item.trace] = _Settled(
                    Delivered(f"HubSpot accepted it (HTTP {reply.status})")
                )
        else:
            reason = f"HubSpot answered {reply.status} without a result for this record" + (
                f"; errors it did not tie to a record: {'; '.join(untied_errors)}"
                if untied_errors
                else ""
            )
            for item in missing:
                settled[item.trace] = _Settled(Retryable(self._clean(reason)))
        return settled

    def _settle(
        self,
        chunk: list[InputT],
        reply: _Reply,
        post: Callable[[list[InputT]], _Reply],
        read: Callable[[list[InputT], _Reply], dict[str, _Settled]],
    ) -> dict[str, _Settled]:
        """Per-input results of one batch call; a refused batch is halved to find the culprit."""
        if reply.ok:
            return read(chunk, reply)
        self._stop_if_batch_wide(reply)
        refusal = Permanent(self._failure(reply))
        if reply.status not in _SPLITTABLE_STATUSES or len(chunk) == 1:
            return {item.trace: _Settled(refusal) for item in chunk}
        middle = len(chunk) // 2
        halves = [chunk[:middle], chunk[middle:]]
        replies = [post(half) for half in halves]
        if all(not r.ok and self._failure(r) == refusal.error for r in replies):
            # Both halves refused with the very same words: the refusal is about the
            # request as a whole (a property HubSpot does not have), not about one record.
            return {item.trace: _Settled(refusal) for item in chunk}
        settled: dict[str, _Settled] = {}
        for half, half_reply in zip(halves, replies, strict=True):
            settled.update(self._settle(half, half_reply, post, read))
        return settled

    # -- archives ----------------------------------------------------------------------------

    def _run_archives(
        self, plans: Sequence[_Plan], indices: list[int], outcomes: dict[int, Outcome]
    ) -> None:
        by_property: dict[str, dict[str, _Identity]] = {}
        for index in indices:
            plan = plans[index]
            assert isinstance(plan, _ArchivePlan)
            identity = plan.identity
            by_property.setdefault(identity.id_property, {}).setdefault(
                identity.match_key, identity
            )
        results: dict[tuple[str, str], Outcome] = {}

        def settle_events() -> None:
            for index in indices:
                plan = plans[index]
                assert isinstance(plan, _ArchivePlan)
                key = (plan.identity.id_property, plan.identity.match_key)
                if key in results:
                    outcomes[index] = results[key]

        try:
            found: dict[tuple[str, str], str] = {}
            for identities in by_property.values():
                for chunk in _chunks(list(identities.values()), BATCH_LIMIT):
                    found.update(self._find_contacts(chunk, results))
            for id_chunk in _chunks(sorted(set(found.values())), BATCH_LIMIT):
                reply = self._archive(id_chunk)
                if not reply.ok:
                    self._stop_if_batch_wide(reply)
                for key, record_id in found.items():
                    if record_id in id_chunk:
                        results[key] = (
                            Delivered(f"archived contact {record_id}")
                            if reply.ok
                            else Permanent(self._failure(reply))
                        )
        finally:
            settle_events()

    def _archive(self, record_ids: list[str]) -> _Reply:
        body = self._archive_body(record_ids)
        return self._call(lambda **kw: self._contacts_batch.archive(body, **kw))

    def _find_contacts(
        self, chunk: list[_Identity], results: dict[tuple[str, str], Outcome]
    ) -> dict[tuple[str, str], str]:
        """HubSpot ids of the contacts to archive; records an outcome for those not found."""
        id_property = chunk[0].id_property
        body = self._read_body(chunk)
        reply = self._call(lambda **kw: self._contacts_batch.read(body, **kw))
        keys = {(identity.id_property, identity.match_key) for identity in chunk}
        if not reply.ok:
            self._stop_if_batch_wide(reply)
            refusal = Permanent(self._failure(reply))
            results.update(dict.fromkeys(keys, refusal))
            return {}
        found: dict[tuple[str, str], str] = {}
        payload = reply.body if isinstance(reply.body, dict) else {}
        for result in payload.get("results") or []:
            value = (result.get("properties") or {}).get(id_property)
            if isinstance(value, str) and result.get("id") is not None:
                found[(id_property, _Identity(id_property, value).match_key)] = str(result["id"])
        for error in payload.get("errors") or []:
            if error.get("category") == "OBJECT_NOT_FOUND":
                continue
            for key in _match_keys(id_property, (error.get("context") or {}).get("ids") or []):
                results[(id_property, key)] = self._input_error(error)
        for key in keys - found.keys() - results.keys():
            results[key] = Delivered(
                f"no HubSpot contact with {id_property} {key[1]}: nothing to archive"
            )
        return found

    # -- request bodies (the SDK's own models, shared by send and preview) -----------------

    def _upsert_body(self, chunk: list[_ContactInput]) -> Any:
        config = self._contacts_config
        return hs_contacts.BatchInputSimplePublicObjectBatchInputUpsert(
            inputs=[
                hs_contacts.SimplePublicObjectBatchInputUpsert(
                    id_property=contact.identity.id_property,
                    id=contact.identity.value,
                    properties=contact.properties,
                    object_write_trace_id=contact.trace,
                    local_vars_configuration=config,
                )
                for contact in chunk
            ],
            local_vars_configuration=config,
        )

    def _read_body(self, chunk: list[_Identity]) -> Any:
        config = self._contacts_config
        return hs_contacts.BatchReadInputSimplePublicObjectId(
            id_property=chunk[0].id_property,
            inputs=[
                hs_contacts.SimplePublicObjectId(id=identity.value, local_vars_configuration=config)
                for identity in chunk
            ],
            properties=[chunk[0].id_property],
            properties_with_history=[],
            local_vars_configuration=config,
        )

    def _archive_body(self, record_ids: list[str]) -> Any:
        config = self._contacts_config
        return hs_contacts.BatchInputSimplePublicObjectId(
            inputs=[
                hs_contacts.SimplePublicObjectId(id=record_id, local_vars_configuration=config)
                for record_id in record_ids
            ],
            local_vars_configuration=config,
        )

    def _note_input(self, index: int, event: LeadEvent, contact_id: str) -> _NoteInput:
        assert event.activity is not None
        when = event.occurred_at or event.received_at
        when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
        return _NoteInput(
            trace=str(index),
            event_index=index,
            contact_id=contact_id,
            properties={
                "hs_note_body": note_body(event),
                "hs_timestamp": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            },
        )

    def _notes_body(self, chunk: list[_NoteInput]) -> Any:
        config = self._notes_config
        return hs_notes.BatchInputSimplePublicObjectBatchInputForCreate(
            inputs=[
                hs_notes.SimplePublicObjectBatchInputForCreate(
                    properties=note.properties,
                    object_write_trace_id=note.trace,
                    associations=[
                        hs_notes.PublicAssociationsForObject(
                            to=hs_notes.PublicObjectId(
                                id=note.contact_id, local_vars_configuration=config
                            ),
                            types=[
                                hs_notes.AssociationSpec(
                                    association_category="HUBSPOT_DEFINED",
                                    association_type_id=NOTE_TO_CONTACT,
                                    local_vars_configuration=config,
                                )
                            ],
                            local_vars_configuration=config,
                        )
                    ],
                    local_vars_configuration=config,
                )
                for note in chunk
            ],
            local_vars_configuration=config,
        )

    def _request(self, method: str, path: str, body: Any) -> dict[str, Any]:
        return {
            "method": method,
            "path": path,
            "url": self.options.base_url + path,
            "body": self._contacts_client.sanitize_for_serialization(body),
        }

    # -- HTTP and classification -------------------------------------------------------------

    def _call(self, request: Callable[..., Any]) -> _Reply:
        """Run one SDK call and return HubSpot's answer, whatever its status.

        Raises _StopSending for network failures: nothing reached HubSpot, and nothing will
        for the rest of this send.
        """
        self.pacer.wait()
        try:
            response = request(_preload_content=False, _request_timeout=self.options.timeout)
        except _API_ERRORS as error:
            reply = _Reply(error.status or 0, _parse_body(error.body), _lower(error.headers))
            self._note_budget(reply.headers)
            return reply
        except AttributeError as error:
            # The SDK turns a TLS failure into ApiException(status=0, body=None), then
            # crashes calling body.decode(); the ApiException is the context.
            if isinstance(error.__context__, _API_ERRORS):
                reason = error.__context__.reason
                raise _StopSending(
                    Retryable(self._clean(f"TLS error talking to HubSpot: {reason}"))
                ) from None
            raise
        except _NETWORK_ERRORS as error:
            raise _StopSending(Retryable(self._network_text(error))) from None
        try:
            data = response.data
        except _NETWORK_ERRORS as error:
            raise _StopSending(Retryable(self._network_text(error))) from None
        finally:
            response.release_conn()
        reply = _Reply(response.status, _parse_body(data), _lower(response.headers))
        self._note_budget(reply.headers)
        return reply

    def _note_budget(self, headers: Mapping[str, str]) -> None:
        # An answer without the headers (or with unreadable ones) leaves the pace as it was.
        with suppress(KeyError, ValueError):
            self.pacer.note(
                int(headers["x-hubspot-ratelimit-remaining"]),
                int(headers["x-hubspot-ratelimit-max"]),
                float(headers["x-hubspot-ratelimit-interval-milliseconds"]) / 1000,
            )

    def _network_text(self, error: BaseException) -> str:
        where = f"HubSpot at {self.options.base_url}"
        if isinstance(error, urllib3.exceptions.NewConnectionError):
            text = f"cannot connect to {where}: {str(error).rpartition(': ')[2]}"
        elif isinstance(error, urllib3.exceptions.TimeoutError):
            text = f"{where} did not answer within {self.options.timeout:g}s"
        else:
            text = f"network error talking to {where}: {type(error).__name__}: {error}"
        return self._clean(text)

    def _stop_if_batch_wide(self, reply: _Reply) -> None:
        """Raise for answers that every further request would get too."""
        status = reply.status
        if status == 429:
            delay, why = _rate_limit_wait(reply)
            raise _StopSending(RateLimited(self._clean(f"{why}: {self._failure(reply)}"), delay))
        if status == 423:
            raise _StopSending(RateLimited(self._failure(reply), _LOCKED_WAIT))
        if status == 477:
            delay = parse_retry_after(reply.headers.get("retry-after"), default=3600.0)
            raise _StopSending(RateLimited(self._failure(reply), delay))
        if status in (401, 403):
            raise _StopSending(Permanent(self._failure(reply)))
        if status == 408 or status >= 500 or status == 0:
            raise _StopSending(Retryable(self._failure(reply)))

    def _failure(self, reply: _Reply) -> str:
        """HubSpot's own words for a refused request, with what leadrelay makes of them."""
        said = _hubspot_words(reply.body, reply.status)
        if reply.status == 401:
            text = f"HubSpot rejected the access token (token invalid or expired): {said}"
        elif reply.status == 403:
            scopes = _required_scopes(reply.body)
            if scopes:
                text = (
                    "the HubSpot access token is missing a scope this call needs "
                    f"(one of: {', '.join(scopes)}); add it to the app and reissue the token. "
                    f"HubSpot said: {said}"
                )
            else:
                text = f"HubSpot refused access (403): {said}"
        else:
            text = f"HubSpot answered {reply.status}: {said}"
        return self._clean(text)

    def _input_error(self, error: Mapping[str, Any]) -> Outcome:
        """One entry of a batch answer's `errors`."""
        said = self._clean(_hubspot_words(error, None))
        if error.get("category") == "RATE_LIMITS":
            return RateLimited(said, _DEFAULT_RATE_LIMIT_WAIT)
        return Permanent(said)

    def _clean(self, text: str) -> str:
        return scrub(text, self.options.access_token)[:_ERROR_TEXT_LIMIT]


# -- helpers ---------------------------------------------------------------------------------


def note_body(event: LeadEvent) -> str:
    """The note's HTML: what the lead did, escaped (lead text is untrusted)."""
    activity = event.activity
    assert activity is not None
    label = activity_label(activity.kind)
    parts = [
        f"<p><strong>{html.escape(label)}</strong> "
        f"({html.escape(event.provider)} via leadrelay)</p>"
    ]
    if activity.text:
        text = html.escape(activity.text[: NOTE_BODY_LIMIT // 2]).replace("\n", "<br>")
        parts.append(f"<p>{text}</p>")
    if activity.url:
        url = html.escape(activity.url)
        if activity.url.startswith(("https://", "http://")):
            parts.append(f'<p><a href="{url}">{url}</a></p>')
        else:
            parts.append(f"<p>{url}</p>")
    if activity.campaign:
        parts.append(f"<p>Campaign: {html.escape(activity.campaign)}</p>")
    return "".join(parts)[:NOTE_BODY_LIMIT]


def _format(value: Any) -> str:
    """A lead value as the string HubSpot stores; "" for nothing to send."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list | tuple):
        return ";".join(_format(item) for item in value if _format(item))
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return str(value).strip()


def _phases(plans: Sequence[_Plan]) -> Iterator[tuple[type, list[int]]]:
    """Runs of consecutive upserts or archives, so a delete and a re-create keep their order."""
    current: type | None = None
    indices: list[int] = []
    for index, plan in enumerate(plans):
        if isinstance(plan, Skipped):
            continue
        if type(plan) is not current and indices:
            assert current is not None
            yield current, indices
            indices = []
        current = type(plan)
        indices.append(index)
    if indices and current is not None:
        yield current, indices


def _chunks(items: list[ChunkT], size: int) -> Iterator[list[ChunkT]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _match_keys(id_property: str, values: Sequence[Any]) -> list[str]:
    """Normalize the ids an error names the way the inputs they refer to are keyed."""
    return [_Identity(id_property, str(value)).match_key for value in values]


def _parse_body(data: bytes | str | None) -> Any:
    if not data:
        return None
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    try:
        return json.loads(text)
    except ValueError:
        return text


def _lower(headers: Mapping[str, str] | None) -> dict[str, str]:
    return {name.lower(): value for name, value in (headers or {}).items()}


def _hubspot_words(body: Any, status: int | None) -> str:
    """HubSpot's `message` (+ the detail messages and category) from an error body."""
    if isinstance(body, dict):
        message = str(body.get("message") or "").strip()
        details = [
            str(item["message"]).strip()
            for item in body.get("errors") or []
            if isinstance(item, dict) and item.get("message") and item["message"] != message
        ]
        text = "; ".join([message, *details] if message else details)
        category = body.get("category") or body.get("errorType")
        if category:
            text = f"{text} ({category})" if text else str(category)
        if text:
            return text
    if isinstance(body, str) and body.strip():
        return " ".join(body.split())[:300]
    return f"HTTP {status} with no body" if status is not None else "no details given"


def _required_scopes(body: Any) -> list[str]:
    """Scope names from a 403 body (`requiredGranularScopes`, or older `requiredScopes`)."""
    if not isinstance(body, dict):
        return []
    contexts = [body.get("context") or {}]
    contexts += [
        item.get("context") or {} for item in body.get("errors") or [] if isinstance(item, dict)
    ]
    scopes: list[str] = []
    for context in contexts:
        for key in ("requiredGranularScopes", "requiredScopes", "missingScopes"):
            for scope in context.get(key) or []:
                if scope not in scopes:
                    scopes.append(str(scope))
    return scopes


def _rate_limit_wait(reply: _Reply) -> tuple[float, str]:
    """Seconds to wait after a 429, and which limit was hit."""
    headers = reply.headers
    body = reply.body if isinstance(reply.body, dict) else {}
    policy = str(body.get("policyName") or "")
    if headers.get("retry-after"):
        return parse_retry_after(headers["retry-after"], _DEFAULT_RATE_LIMIT_WAIT), (
            f"HubSpot rate limit{f' {policy}' if policy else ''} (Retry-After)"
        )
    if policy == "DAILY" or headers.get("x-hubspot-ratelimit-daily-remaining") == "0":
        return _DAILY_LIMIT_WAIT, "HubSpot daily API limit reached"
    interval = headers.get("x-hubspot-ratelimit-interval-milliseconds")
    if interval and headers.get("x-hubspot-ratelimit-remaining", "0") == "0":
        try:
            # The window rolls: capacity comes back continuously as old calls age out, so
            # a tenth of it (1 s of HubSpot's 10 s) is waited, not the whole window.
            return max(0.0, float(interval) / 1000 / _ROLLING_WINDOW_PARTS), (
                f"HubSpot rate limit {policy or 'per interval'} "
                f"({headers.get('x-hubspot-ratelimit-max', '?')} requests per {interval} ms)"
            )
        except ValueError:
            pass
    if policy == "SECONDLY":
        return 1.0, "HubSpot per-second rate limit"
    return _DEFAULT_RATE_LIMIT_WAIT, f"HubSpot rate limit{f' {policy}' if policy else ''}"


def _outcome_text(outcome: Outcome) -> str:
    if isinstance(outcome, Delivered):
        return outcome.detail
    if isinstance(outcome, Skipped):
        return outcome.reason
    return outcome.error
