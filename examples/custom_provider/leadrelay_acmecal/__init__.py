"""A complete third-party provider: `provider: acmecal`, meetings booked in a scheduler.

Install next to leadrelay (`pip install ./examples/custom_provider`) and configure:

    sources:
      meetings: {provider: acmecal, secrets: ["${ACMECAL_SECRET}"]}

AcmeCal (a made-up scheduler) signs `X-AcmeCal-Signature: <hex HMAC-SHA256 of the raw
body>`, which the base class verifies once `signature_header` and `signature_prefix` say
so; a scheme of its own would override `verify` and `sign`. `read` turns one payload into a
lead event, `Ignored` or `Unreadable`; the `fields` helpers apply leadrelay's reading
policy (numbers as text, blanks as unknown, a wrong type raises ShapeError, which the base
class turns into a quarantined event). A provider that needs per-source YAML keys declares
`options_model` and `for_source` (see leadrelay's generic_hmac.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

from leadrelay.core.ingest.providers import ParseResult, Provider, fields
from leadrelay.core.schema import Activity, EventType


class AcmeCalProvider(Provider):
    name = "acmecal"
    signature_header = "X-AcmeCal-Signature"
    signature_prefix = ""
    event_types: ClassVar[dict[str, EventType | None]] = {
        "booking.created": "lead.activity",
        "booking.cancelled": None,  # known, not about a lead: answered "ignored"
    }

    def read(
        self,
        payload: dict[str, Any],
        *,
        source: str,
        received_at: datetime,
        headers: Mapping[str, str],
    ) -> ParseResult:
        provider_event = fields.required_text(payload, "event", "event")
        # AcmeCal's booking id is the same on every retry of one event.
        booking_id = fields.required_text(payload, "id", "id")
        idempotency_key = f"{provider_event}:{booking_id}"
        event_type = self.event_types.get(provider_event)
        if event_type is None:
            return fields.not_a_lead_event(self.event_types, provider_event, idempotency_key)
        invitee = fields.require_object(payload, "invitee", "invitee")
        extra = fields.extra_fields(invitee, {"email", "name", "company"})
        lead_fields = {
            **fields.name_fields(invitee, "invitee"),
            "email": fields.email_and_extra(fields.text(invitee, "email", "invitee.email"), extra),
            "company": fields.text(invitee, "company", "invitee.company"),
            "extra": extra,
        }
        activity = Activity(
            kind="meeting_booked",
            text=fields.text(payload, "meeting_type", "meeting_type"),
            url=fields.text(payload, "url", "url"),
        )
        return fields.build_lead_event(
            provider=self.name,
            source=source,
            idempotency_key=idempotency_key,
            event_type=event_type,
            provider_event=provider_event,
            occurred_at=fields.timestamp(payload, "created_at", "created_at"),
            received_at=received_at,
            lead_fields=lead_fields,
            activity=activity,
            raw=payload,
        )
