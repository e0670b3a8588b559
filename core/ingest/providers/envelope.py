"""The adapter template for providers that wrap one lead object in an event envelope.

GitLeads, GitProductivity and LeadHub all send an event name, the event's time, perhaps
an event id of their own, and the lead as one object beside them; only the keys differ.
Their adapters declare those keys (`envelope_keys`) and read the lead object
(`read_lead`); the event name, the idempotency key and the ignored events are handled
here, the same way for all three.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from leadrelay.core.ingest.providers import fields
from leadrelay.core.ingest.providers.base import Ignored, ParseResult, Provider
from leadrelay.core.schema import Activity, EventType

# What `read_lead` answers: the Lead fields and the event's activity (or None).
LeadReading = tuple[dict[str, Any], Activity | None]


@dataclass(frozen=True)
class EnvelopeKeys:
    """Where a provider's payload keeps each part of its envelope."""

    name: str
    time: str
    body: str
    body_id: str
    # None: the provider sends no event id, so the key is a fingerprint.
    event_id: str | None = None


@dataclass(frozen=True)
class LeadEnvelope:
    """The envelope of one lead event, read before the lead itself."""

    provider_event: str
    event_type: EventType
    event_time: str | None
    idempotency_key: str
    body: dict[str, Any]


def read_envelope(
    payload: Mapping[str, Any],
    event_types: Mapping[str, EventType | None],
    keys: EnvelopeKeys,
) -> LeadEnvelope | Ignored:
    """The envelope of a lead event, or Ignored for any other event.

    The idempotency key is the provider's own event id when it sends one, else a
    fingerprint of the event name, its time, the body's id and the body. It is computed
    first so that ignored events are deduplicated too; only a lead event must carry its
    body as an object.
    """
    provider_event = fields.required_text(payload, keys.name, keys.name)
    event_time = fields.text(payload, keys.time, keys.time)
    idempotency_key = fields.text(payload, keys.event_id, keys.event_id) if keys.event_id else None
    if idempotency_key is None:
        body = payload.get(keys.body)
        body_id = (
            fields.identifying_text(body.get(keys.body_id)) if isinstance(body, dict) else None
        )
        idempotency_key = fields.event_fingerprint(
            provider_event, event_time, [body_id, fields.canonical_json(body)], payload
        )
    event_type = event_types.get(provider_event)
    if event_type is None:
        return fields.not_a_lead_event(event_types, provider_event, idempotency_key)
    return LeadEnvelope(
        provider_event=provider_event,
        event_type=event_type,
        event_time=event_time,
        idempotency_key=idempotency_key,
        body=fields.require_object(payload, keys.body, keys.body),
    )


class EnvelopeProvider(Provider):
    """A provider whose events carry their lead as one object in an envelope.

    Subclasses set `envelope_keys` beside the other class attributes and implement
    `read_lead`; they override `occurred_at` when the envelope's time is not the whole
    story.
    """

    envelope_keys: ClassVar[EnvelopeKeys]

    def read(
        self,
        payload: dict[str, Any],
        *,
        source: str,
        received_at: datetime,
        headers: Mapping[str, str],
    ) -> ParseResult:
        envelope = read_envelope(payload, self.event_types, self.envelope_keys)
        if isinstance(envelope, Ignored):
            return envelope
        lead_fields, activity = self.read_lead(envelope, payload)
        return fields.build_lead_event(
            provider=self.name,
            source=source,
            idempotency_key=envelope.idempotency_key,
            event_type=envelope.event_type,
            provider_event=envelope.provider_event,
            occurred_at=self.occurred_at(envelope),
            received_at=received_at,
            lead_fields=lead_fields,
            activity=activity,
            raw=payload,
            event_time=envelope.event_time,
        )

    @abstractmethod
    def read_lead(self, envelope: LeadEnvelope, payload: dict[str, Any]) -> LeadReading:
        """The Lead fields and the activity of a lead event; may raise ShapeError."""

    def occurred_at(self, envelope: LeadEnvelope) -> datetime | None:
        """When the event happened: the envelope's time, when it parses."""
        return fields.parse_timestamp(envelope.event_time)
