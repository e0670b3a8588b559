"""GitLeads: GitHub signals (stars, keyword issues/PRs/code) captured as leads.

Doc: ../shared/provider-docs/gitleads.txt. Signature: `X-GitLeads-Signature:
sha256=<hex>`, HMAC-SHA256 of the raw body (the base class default).

GitLeads sends no event id (`data.id` is the lead's id, shared by its created, enriched
and updated events), so the idempotency key is a fingerprint of event name, `timestamp`,
lead id and the lead data: timestamps have one-second resolution, and two different
updates of one lead within a second must not be mistaken for one retried delivery.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

from leadrelay.core.providers import fields
from leadrelay.core.providers.base import ParseResult, Provider
from leadrelay.core.providers.names import split_name
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


class GitLeadsProvider(Provider):
    name = "gitleads"
    signature_header = "X-GitLeads-Signature"
    event_types: ClassVar[dict[str, EventType | None]] = {
        "lead.created": "lead.created",
        "lead.enriched": "lead.enriched",
        "lead.updated": "lead.updated",
    }

    def parse(
        self,
        payload: dict[str, Any],
        *,
        source: str,
        received_at: datetime,
        headers: Mapping[str, str] | None = None,
    ) -> ParseResult:
        return fields.parse_guarded(lambda: self._read(payload, source, received_at), payload)

    def _read(self, payload: dict[str, Any], source: str, received_at: datetime) -> ParseResult:
        provider_event = fields.required_text(payload, "event", "event")
        event_time = fields.text(payload, "timestamp", "timestamp")
        data = payload.get("data")
        lead_id = fields.identifying_text(data.get("id")) if isinstance(data, dict) else None
        idempotency_key = fields.event_fingerprint(
            provider_event, event_time, [lead_id, fields.canonical_json(data)], payload
        )
        event_type = self.event_types.get(provider_event)
        if event_type is None:
            return fields.not_a_lead_event(self.event_types, provider_event, idempotency_key)
        data = fields.require_object(payload, "data", "data")
        lead_id = fields.text(data, "id", "data.id")

        extra = fields.extra_fields(data, _MAPPED_FIELDS)
        name = split_name(fields.text(data, "name", "data.name"))
        lead_fields: dict[str, Any] = {
            "provider_lead_id": lead_id,
            "email": fields.email_and_extra(fields.text(data, "email", "data.email"), extra),
            "first_name": name.first_name,
            "last_name": name.last_name,
            "full_name": name.full_name,
            "github_username": fields.text(data, "github_username", "data.github_username"),
            "github_url": fields.text(data, "github_profile_url", "data.github_profile_url"),
            "bio": fields.text(data, "bio", "data.bio"),
            "company": fields.text(data, "company", "data.company"),
            "location": fields.text(data, "location", "data.location"),
        }

        activity = None
        signal_type = fields.text(data, "signal_type", "data.signal_type")
        if event_type == "lead.created" and signal_type is not None:
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
        lead_fields["extra"] = extra

        occurred_at = fields.parse_timestamp(event_time) or fields.timestamp(
            data, "captured_at", "data.captured_at"
        )
        return fields.build_lead_event(
            provider=self.name,
            source=source,
            idempotency_key=idempotency_key,
            event_type=event_type,
            provider_event=provider_event,
            occurred_at=occurred_at,
            received_at=received_at,
            lead_fields=lead_fields,
            activity=activity,
            raw=payload,
        )
