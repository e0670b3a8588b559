"""LeadHub: outbound webhooks of a lead CRM (lead lifecycle, pipeline, forms).

Doc: ../shared/provider-docs/leadhub.txt. Signature: `X-LeadHub-Signature: sha256=<hex>`,
HMAC-SHA256 of the raw body (the base class default).

`lead.created/updated/deleted` map to the same types; `lead.stage_changed` and
`lead.assigned` are updates that also carry an activity (kind `stage_changed` with the
new stage as text, `assigned` with the new owner as text); `form.submitted` is a
`lead.activity` (kind `form_submitted`, the form's name as text). Top-level fields other
than `event`, `occurred_at` and `lead` (for example a `form` object or `previous_stage`)
are kept in the activity's context.

LeadHub sends no event id, so the idempotency key is a fingerprint of event name,
`occurred_at`, lead id and the lead data (second-resolution timestamps: two different
updates within a second stay two events).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

from leadrelay.core.providers import fields
from leadrelay.core.providers.base import ParseResult, Provider
from leadrelay.core.providers.names import combine_names
from leadrelay.core.schema import Activity, EventType

ACTIVITY_KINDS: dict[str, str] = {
    "lead.stage_changed": "stage_changed",
    "lead.assigned": "assigned",
    "form.submitted": "form_submitted",
}
_ENVELOPE_FIELDS = {"event", "occurred_at", "lead"}
# LeadHub lead field -> Lead field, for plain text fields.
_TEXT_FIELDS = {
    "phone": "phone",
    "source": "lead_source",
    "status": "status",
    "stage": "stage",
    "assigned_to": "owner",
    "company": "company",
    "title": "title",
    "website": "website",
    "location": "location",
}
_MAPPED_FIELDS = {"id", "name", "first_name", "last_name", "email", "lead_score", "tags"}
_MAPPED_FIELDS |= set(_TEXT_FIELDS)


class LeadHubProvider(Provider):
    name = "leadhub"
    signature_header = "X-LeadHub-Signature"
    event_types: ClassVar[dict[str, EventType | None]] = {
        "lead.created": "lead.created",
        "lead.updated": "lead.updated",
        "lead.deleted": "lead.deleted",
        "lead.stage_changed": "lead.updated",
        "lead.assigned": "lead.updated",
        "form.submitted": "lead.activity",
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
        event_time = fields.text(payload, "occurred_at", "occurred_at")
        lead = payload.get("lead")
        lead_id = fields.identifying_text(lead.get("id")) if isinstance(lead, dict) else None
        idempotency_key = fields.event_fingerprint(
            provider_event, event_time, [lead_id, fields.canonical_json(lead)], payload
        )
        event_type = self.event_types.get(provider_event)
        if event_type is None:
            return fields.not_a_lead_event(self.event_types, provider_event, idempotency_key)
        lead = fields.require_object(payload, "lead", "lead")

        extra = fields.extra_fields(lead, _MAPPED_FIELDS)
        names = combine_names(
            fields.text(lead, "name", "lead.name"),
            fields.text(lead, "first_name", "lead.first_name"),
            fields.text(lead, "last_name", "lead.last_name"),
        )
        lead_fields: dict[str, Any] = {
            "provider_lead_id": fields.text(lead, "id", "lead.id"),
            "email": fields.email_and_extra(fields.text(lead, "email", "lead.email"), extra),
            "first_name": names.first_name,
            "last_name": names.last_name,
            "full_name": names.full_name,
            "score": fields.number(lead, "lead_score", "lead.lead_score"),
            "tags": fields.text_list(lead, "tags", "lead.tags"),
        }
        for leadhub_field, lead_field in _TEXT_FIELDS.items():
            lead_fields[lead_field] = fields.text(lead, leadhub_field, f"lead.{leadhub_field}")
        lead_fields["extra"] = extra

        return fields.build_lead_event(
            provider=self.name,
            source=source,
            idempotency_key=idempotency_key,
            event_type=event_type,
            provider_event=provider_event,
            occurred_at=fields.parse_timestamp(event_time),
            received_at=received_at,
            lead_fields=lead_fields,
            activity=self._activity(provider_event, payload, lead_fields),
            raw=payload,
        )

    def _activity(
        self, provider_event: str, payload: dict[str, Any], lead_fields: dict[str, Any]
    ) -> Activity | None:
        kind = ACTIVITY_KINDS.get(provider_event)
        if kind is None:
            return None
        context = {
            key: value
            for key, value in payload.items()
            if key not in _ENVELOPE_FIELDS and value is not None
        }
        text = None
        if kind == "stage_changed":
            text = lead_fields["stage"]
        elif kind == "assigned":
            text = lead_fields["owner"]
        elif payload.get("form") is not None:
            form = fields.require_object(payload, "form", "form")
            text = fields.text(form, "name", "form.name")
        return Activity(kind=kind, text=text, context=context)
