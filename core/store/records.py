"""What goes in and out of the store: records, results, filters and their JSON forms."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydantic import ValidationError

from leadrelay.core.schema import LeadEvent


class StoreUnavailable(Exception):
    """The database cannot be reached or written right now (answered 503, retried later)."""


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class IncomingEvent:
    """What the receiver stores for one verified request."""

    event_id: str
    source: str
    provider: str
    status: str  # accepted | ignored | quarantined
    idempotency_key: str
    received_at: datetime
    body: bytes
    headers: dict[str, str]
    type: str | None = None
    provider_event: str | None = None
    lead_key: str | None = None
    occurred_at: datetime | None = None
    normalized: str | None = None
    reason: str | None = None
    connectors: tuple[str, ...] = ()
    # The lead's identifiers, strongest match first (`schema.lead_identifiers`): the
    # store joins the event to the person they name, whose key replaces `lead_key`.
    identifiers: tuple[str, ...] = ()


@dataclass(frozen=True)
class IngestResult:
    event_id: str
    duplicate: bool


@dataclass(frozen=True)
class LeasedDelivery:
    """A delivery this worker holds the lease of."""

    id: int
    event_id: str
    connector: str
    attempts: int
    created_at: datetime
    # The lead whose deliveries to this connector go one at a time, in order (None: any).
    lead_key: str | None = field(default=None, kw_only=True)


@dataclass(frozen=True)
class ClaimedDelivery(LeasedDelivery):
    """A leased delivery with its event, ready to send."""

    event: LeadEvent


@dataclass(frozen=True)
class UnloadableDelivery(LeasedDelivery):
    """A leased delivery whose stored event this code cannot load (e.g. after a downgrade).

    The store hands it over instead of deciding its fate: the retry policy does.
    """

    error: str


@dataclass(frozen=True)
class DeliveryUpdate:
    """The new state of one claimed delivery after a try (decided by the retry policy)."""

    id: int
    status: str  # pending | delivered | skipped | dead
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    outcome: str
    started_at: datetime
    attempt_number: int
    # What the destination answered, kept on the attempt: the error text, or for a
    # delivered try what was written ("updated contact 123"), so a coalesced event's
    # attempt names the write that carried it.
    answer: str | None = None
    # What the connector sent for the event (JSON of its preview, secrets masked); None
    # when nothing was sent (a skip).
    request: str | None = None


@dataclass(frozen=True)
class NewestDelivered:
    """The newest event delivered for one lead to one connector (by `occurred_at`)."""

    occurred_at: datetime
    event_id: str


@dataclass(frozen=True)
class EventFilter:
    status: str | None = None
    source: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100


@dataclass(frozen=True)
class DeliveryFilter:
    status: str | None = None
    source: str | None = None
    connector: str | None = None
    event_id: str | None = None
    delivery_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100


def load_lead_event(
    normalized: str,
    body: bytes,
    lead_key: str | None = None,
    identities: str | None = None,
) -> LeadEvent:
    """The stored event, with the person's key and identities the store resolved."""
    data = json.loads(normalized)
    data["raw"] = json.loads(body)
    lead = data.get("lead")
    if isinstance(lead, dict):
        if lead_key:
            lead["key"] = lead_key
        if identities:
            lead["identities"] = json.loads(identities)
    return LeadEvent.model_validate(data)


def dump_normalized(lead_event: LeadEvent) -> str:
    """The normalized form without `raw` (the body is already stored once)."""
    return lead_event.model_dump_json(exclude={"raw"})


def load_error(exc: ValueError) -> str:
    """Where and what, never the stored values (they are personal data)."""
    if isinstance(exc, ValidationError):
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        return f"{where}: {first['msg']}"
    return describe(exc)


def describe(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    # The first line only: driver messages can go on to echo SQL and parameters.
    return str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
