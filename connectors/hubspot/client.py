"""HubSpot's API through its SDK: request bodies, calls, and what each answer means.

Responses are read raw (`_preload_content=False`) and parsed here, and the SDK's urllib3
pool gets `retries=False` (the package docstring says why).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import urllib3
from hubspot.crm import contacts as hs_contacts
from hubspot.crm.objects import notes as hs_notes

from leadrelay.connectors._http import Failure, parse_retry_after, scrub, status_failure
from leadrelay.connectors.hubspot.mapping import ContactInput, Identity, NoteInput
from leadrelay.connectors.hubspot.options import HubSpotOptions
from leadrelay.connectors.hubspot.pacing import Pacer
from leadrelay.core.delivery.contract import Outcome, Permanent, RateLimited, Retryable

NOTE_TO_CONTACT = 202  # HubSpot-defined association type id, note -> contact

UPSERT_PATH = "/crm/v3/objects/contacts/batch/upsert"
READ_PATH = "/crm/v3/objects/contacts/batch/read"
UPDATE_PATH = "/crm/v3/objects/contacts/batch/update"
ARCHIVE_PATH = "/crm/v3/objects/contacts/batch/archive"
NOTES_PATH = "/crm/v3/objects/notes/batch/create"
CONTACTS_PATH = "/crm/v3/objects/contacts"

# HubSpot's rolling window is ten seconds; the daily limit resets at midnight in the
# account's time zone, which the API does not tell us, so it is polled hourly.
_DEFAULT_RATE_LIMIT_WAIT = 10.0
_ROLLING_WINDOW_PARTS = 10
_DAILY_LIMIT_WAIT = 3600.0
_LOCKED_WAIT = 2.0  # HubSpot: "Locks will last for 2 seconds"
_ERROR_TEXT_LIMIT = 1000
_MISSING_ACCOUNT_WAIT = 3600.0  # 477: the account is being migrated

_NETWORK_ERRORS = (urllib3.exceptions.HTTPError, OSError)
_API_ERRORS = (hs_contacts.ApiException, hs_notes.ApiException)


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any
    headers: Mapping[str, str]  # lower-cased names

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class StopSending(Exception):
    """A failure every further request of this send would meet too (token, rate limit, outage)."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(str(outcome))
        self.outcome = outcome


class HubSpotApi:
    """One connector's SDK clients, and the words and outcomes of HubSpot's answers."""

    def __init__(self, options: HubSpotOptions) -> None:
        self.options = options
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

    def close(self) -> None:
        for client in (self._contacts_client, self._notes_client):
            client.close()
            client.rest_client.pool_manager.clear()

    # -- calls -------------------------------------------------------------------------------

    def upsert(self, chunk: list[ContactInput]) -> Reply:
        body = self.upsert_body(chunk)
        return self.call(lambda **kw: self._contacts_batch.upsert(body, **kw))

    def update(self, chunk: list[ContactInput]) -> Reply:
        """Update contacts known by their HubSpot id (`RECORD_ID` identities)."""
        body = self.update_body(chunk)
        return self.call(lambda **kw: self._contacts_batch.update(body, **kw))

    def create_notes(self, chunk: list[NoteInput]) -> Reply:
        body = self.notes_body(chunk)
        return self.call(lambda **kw: self._notes_batch.create(body, **kw))

    def read(self, chunk: list[Identity]) -> Reply:
        body = self.read_body(chunk)
        return self.call(lambda **kw: self._contacts_batch.read(body, **kw))

    def archive(self, record_ids: list[str]) -> Reply:
        body = self.archive_body(record_ids)
        return self.call(lambda **kw: self._contacts_batch.archive(body, **kw))

    def first_contact_page(self) -> Reply:
        return self.call(lambda **kw: self._contacts_basic.get_page(limit=1, archived=False, **kw))

    # -- request bodies (the SDK's own models, shared by send and preview) -----------------

    def upsert_body(self, chunk: list[ContactInput]) -> Any:
        return self._contacts_body(
            chunk,
            hs_contacts.BatchInputSimplePublicObjectBatchInputUpsert,
            hs_contacts.SimplePublicObjectBatchInputUpsert,
            by_id_property=True,
        )

    def update_body(self, chunk: list[ContactInput]) -> Any:
        # By record id, so no idProperty: HubSpot refuses hs_object_id as one.
        return self._contacts_body(
            chunk,
            hs_contacts.BatchInputSimplePublicObjectBatchInput,
            hs_contacts.SimplePublicObjectBatchInput,
            by_id_property=False,
        )

    def _contacts_body(
        self, chunk: list[ContactInput], batch_model: Any, input_model: Any, *, by_id_property: bool
    ) -> Any:
        config = self._contacts_config
        return batch_model(
            inputs=[
                input_model(
                    id=contact.identity.value,
                    properties=contact.properties,
                    object_write_trace_id=contact.trace,
                    local_vars_configuration=config,
                    **({"id_property": contact.identity.id_property} if by_id_property else {}),
                )
                for contact in chunk
            ],
            local_vars_configuration=config,
        )

    def read_body(self, chunk: list[Identity]) -> Any:
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

    def archive_body(self, record_ids: list[str]) -> Any:
        config = self._contacts_config
        return hs_contacts.BatchInputSimplePublicObjectId(
            inputs=[
                hs_contacts.SimplePublicObjectId(id=record_id, local_vars_configuration=config)
                for record_id in record_ids
            ],
            local_vars_configuration=config,
        )

    def notes_body(self, chunk: list[NoteInput]) -> Any:
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

    def preview_request(self, method: str, path: str, body: Any) -> dict[str, Any]:
        return {
            "method": method,
            "path": path,
            "url": self.options.base_url + path,
            "body": self._contacts_client.sanitize_for_serialization(body),
        }

    # -- answers and their outcomes -------------------------------------------------------------

    def call(self, request: Callable[..., Any]) -> Reply:
        """Run one SDK call and return HubSpot's answer, whatever its status.

        Raises StopSending for network failures: nothing reached HubSpot, and nothing will
        for the rest of this send.
        """
        self.pacer.wait()
        try:
            response = request(_preload_content=False, _request_timeout=self.options.timeout)
        except _API_ERRORS as error:
            reply = Reply(error.status or 0, _parse_body(error.body), _lower(error.headers))
            self._note_budget(reply.headers)
            return reply
        except AttributeError as error:
            # The SDK turns a TLS failure into ApiException(status=0, body=None), then
            # crashes calling body.decode(); the ApiException is the context.
            if isinstance(error.__context__, _API_ERRORS):
                reason = error.__context__.reason
                raise StopSending(
                    Retryable(self.clean(f"TLS error talking to HubSpot: {reason}"))
                ) from None
            raise
        except _NETWORK_ERRORS as error:
            raise StopSending(Retryable(self._network_text(error))) from None
        try:
            data = response.data
        except _NETWORK_ERRORS as error:
            raise StopSending(Retryable(self._network_text(error))) from None
        finally:
            response.release_conn()
        reply = Reply(response.status, _parse_body(data), _lower(response.headers))
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
        return self.clean(text)

    def stop_if_batch_wide(self, reply: Reply) -> None:
        """Raise for answers that every further request would get too."""
        status = reply.status
        if status == 429:
            delay, why = rate_limit_wait(reply)
            raise StopSending(RateLimited(self.clean(f"{why}: {self.failure(reply)}"), delay))
        if status == 423:
            raise StopSending(RateLimited(self.failure(reply), _LOCKED_WAIT))
        if status == 477:
            delay = parse_retry_after(reply.headers.get("retry-after"), _MISSING_ACCOUNT_WAIT)
            raise StopSending(RateLimited(self.failure(reply), delay))
        if status in (401, 403):
            raise StopSending(Permanent(self.failure(reply)))
        if status_failure(status) is Failure.RETRY:
            raise StopSending(Retryable(self.failure(reply)))

    def failure(self, reply: Reply) -> str:
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
        return self.clean(text)

    def input_error(self, error: Mapping[str, Any]) -> Outcome:
        """One entry of a batch answer's `errors`."""
        said = self.clean(_hubspot_words(error, None))
        if error.get("category") == "RATE_LIMITS":
            return RateLimited(said, _DEFAULT_RATE_LIMIT_WAIT)
        return Permanent(said)

    def clean(self, text: str) -> str:
        return scrub(text, self.options.access_token)[:_ERROR_TEXT_LIMIT]


# -- reading answers -------------------------------------------------------------------------


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


def rate_limit_wait(reply: Reply) -> tuple[float, str]:
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
