"""GitLeads: GitHub signals (stars, keyword issues/PRs/code) captured as leads.

Doc: docs/provider-docs/gitleads.txt. Signature: `X-GitLeads-Signature:
sha256=<hex>`, HMAC-SHA256 of the raw body (the base class default).

GitLeads sends no event id (`data.id` is the lead's id, shared by its created, enriched
and updated events), so the idempotency key is a fingerprint of event name, `timestamp`,
lead id and the lead data: timestamps have one-second resolution, and two different
updates of one lead within a second must not be mistaken for one retried delivery.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from leadrelay.core.ingest.providers import fields
from leadrelay.core.ingest.providers.envelope import (
    EnvelopeKeys,
    EnvelopeProvider,
    LeadEnvelope,
    LeadReading,
)
from leadrelay.core.schema import Activity, EventType

# GitLeads signal_type -> Activity.kind; an undocumented signal type is passed through as is.
SIGNAL_KINDS: dict[str, str] = {
    "stargazer": "star",
    "keyword_issue": "issue",
    "keyword_pr": "pull_request",
    "keyword_code": "code",
}
_SIGNAL_FIELDS = {"signal_type", "signal_source", "signal_context"}
_MAPPED_FIELDS = {
    "id",
    "github_username",
    "github_profile_url",
    "name",
    "email",
    "bio",
    "company",
    "location",
}


class GitLeadsProvider(EnvelopeProvider):
    name = "gitleads"
    signature_header = "X-GitLeads-Signature"
    event_types: ClassVar[dict[str, EventType | None]] = {
        "lead.created": "lead.created",
        "lead.enriched": "lead.enriched",
        "lead.updated": "lead.updated",
    }
    envelope_keys = EnvelopeKeys(name="event", time="timestamp", body="data", body_id="id")

    def read_lead(self, envelope: LeadEnvelope, payload: dict[str, Any]) -> LeadReading:
        data = envelope.body
        extra = fields.extra_fields(data, _MAPPED_FIELDS)
        lead_fields: dict[str, Any] = {
            "provider_lead_id": fields.text(data, "id", "data.id"),
            **fields.name_fields(data, "data", name_parts=False),
            "email": fields.email_and_extra(fields.text(data, "email", "data.email"), extra),
            "github_username": fields.text(data, "github_username", "data.github_username"),
            "github_url": fields.text(data, "github_profile_url", "data.github_profile_url"),
            "bio": fields.text(data, "bio", "data.bio"),
            "company": fields.text(data, "company", "data.company"),
            "location": fields.text(data, "location", "data.location"),
            "extra": extra,
        }

        activity = None
        signal_type = fields.text(data, "signal_type", "data.signal_type")
        if envelope.event_type == "lead.created" and signal_type is not None:
            signal_context = fields.text(data, "signal_context", "data.signal_context")
            activity = Activity(
                kind=SIGNAL_KINDS.get(signal_type, signal_type),
                text=signal_context,
                context={
                    "signal_source": fields.text(data, "signal_source", "data.signal_source"),
                    "signal_context": signal_context,
                },
            )
            for key in _SIGNAL_FIELDS:
                extra.pop(key, None)
        return lead_fields, activity

    def occurred_at(self, envelope: LeadEnvelope) -> datetime | None:
        # Without a usable event timestamp, the time GitLeads captured the lead stands in.
        return fields.parse_timestamp(envelope.event_time) or fields.timestamp(
            envelope.body, "captured_at", "data.captured_at"
        )
