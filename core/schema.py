"""The one lead schema every provider is normalized into and every connector reads.

This module imports nothing else of leadrelay: providers, the store and connectors all
depend on it, never the other way round. Field names are a public contract (the CSV sink
and users' own webhook consumers read them), so they match docs/design.md exactly.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

EventType = Literal[
    "lead.created", "lead.updated", "lead.enriched", "lead.deleted", "lead.activity"
]
LEAD_EVENT_TYPES: tuple[EventType, ...] = (
    "lead.created",
    "lead.updated",
    "lead.enriched",
    "lead.deleted",
    "lead.activity",
)


class _Model(BaseModel):
    # Frozen so an event handed to several connectors cannot be changed by one of them.
    model_config = ConfigDict(frozen=True, extra="forbid")


class Activity(_Model):
    """What the lead did, for `lead.activity` events (and context on others)."""

    kind: str
    text: str | None = None
    url: str | None = None
    campaign: str | None = None
    context: dict[str, Any] = Field(default_factory=dict)


class Lead(_Model):
    """A person, as far as the provider told us. Unknown fields are None, never "".

    `key` is the person's stable identity and `identities` every identifier the store
    knew for the person when the event arrived (docs/design.md, "One lead schema").
    """

    key: str
    identities: list[str] = Field(default_factory=list)
    provider_lead_id: str | None = None
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    full_name: str | None = None
    title: str | None = None
    company: str | None = None
    phone: str | None = None
    location: str | None = None
    website: str | None = None
    linkedin_url: str | None = None
    linkedin_username: str | None = None
    github_username: str | None = None
    github_url: str | None = None
    bio: str | None = None
    tags: list[str] = Field(default_factory=list)
    score: float | None = None
    status: str | None = None
    stage: str | None = None
    owner: str | None = None
    lead_source: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)


class LeadEvent(_Model):
    """One normalized provider event about one lead; `raw` is the provider payload as sent."""

    event_id: str
    idempotency_key: str
    source: str
    provider: str
    type: EventType
    provider_event: str
    occurred_at: datetime | None
    received_at: datetime
    lead: Lead
    activity: Activity | None = None
    raw: dict[str, Any]


def lead_key(
    *,
    provider: str,
    email: str | None = None,
    linkedin_username: str | None = None,
    github_username: str | None = None,
    provider_lead_id: str | None = None,
) -> str | None:
    """The stable identity of a lead, most reliable identifier first (docs/design.md, "Providers").

    Returns None when the provider gave nothing that identifies the person.
    """
    if email:
        return f"email:{email.strip().lower()}"
    if linkedin_username:
        return f"linkedin:{linkedin_username.strip().lower()}"
    if github_username:
        return f"github:{github_username.strip().lower()}"
    if provider_lead_id:
        return f"{provider}:{provider_lead_id}"
    return None


def lead_identifiers(lead: Lead, *, source: str, provider: str) -> tuple[str, ...]:
    """The identifiers that tie an event to a person, strongest match first.

    Strength decides which person an event belongs to when its identifiers name two:
    the provider's own lead id (qualified by source: two accounts of one provider number
    their leads independently), then email, LinkedIn, GitHub. An email can be reused by
    another person far less often than a provider would reuse its own id.
    """
    found = []
    if lead.provider_lead_id:
        found.append(provider_lead_identifier(provider, lead.provider_lead_id, source))
    if lead.email and lead.email.strip():
        found.append(f"email:{lead.email.strip().lower()}")
    if lead.linkedin_username and lead.linkedin_username.strip():
        found.append(f"linkedin:{lead.linkedin_username.strip().lower()}")
    if lead.github_username and lead.github_username.strip():
        found.append(f"github:{lead.github_username.strip().lower()}")
    return tuple(found)


def provider_lead_identifier(provider: str, provider_lead_id: str, source: str) -> str:
    return f"{provider}:{provider_lead_id}@{source}"


def event_id_for(source: str, idempotency_key: str) -> str:
    """Derive the event id from (source, idempotency key).

    Deterministic so that a duplicate delivery of an event is answered with the same
    event id as the first, with no lookup, and two racing receivers agree on it.
    """
    digest = hashlib.sha256(f"{source}\x00{idempotency_key}".encode()).hexdigest()
    return f"evt_{digest[:26]}"


_PART_SEPARATOR = "\x1f"


def fingerprint(*parts: object) -> str:
    """A compact idempotency key from the fields that identify one provider event.

    Parts are joined with a separator, so ("ab", "c") and ("a", "bc") differ. A part that
    holds the separator itself would run into its neighbour, so then (and for a single
    part) the parts are JSON-encoded instead: JSON escapes the separator, so the two forms
    never meet, and the keys of ordinary parts, already stored for dedup, stay the same.
    """
    texts = ["" if p is None else str(p) for p in parts]
    if len(texts) < 2 or any(_PART_SEPARATOR in text for text in texts):
        joined = json.dumps(texts)
    else:
        joined = _PART_SEPARATOR.join(texts)
    return "sha256:" + hashlib.sha256(joined.encode("utf-8", "surrogatepass")).hexdigest()
