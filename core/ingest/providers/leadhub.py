"""LeadHub: outbound webhooks of a lead CRM (lead lifecycle, pipeline, forms).

Doc: docs/provider-docs/leadhub.txt. Signature: `X-LeadHub-Signature: sha256=<hex>`,
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

from typing import Any, ClassVar

from leadrelay.core.ingest.providers import fields
from leadrelay.core.ingest.providers.envelope import (
    EnvelopeKeys,
    EnvelopeProvider,
    LeadEnvelope,
    LeadReading,
)
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


class LeadHubProvider(EnvelopeProvider):
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
    envelope_keys = EnvelopeKeys(name="event", time="occurred_at", body="lead", body_id="id")

    def read_lead(self, envelope: LeadEnvelope, payload: dict[str, Any]) -> LeadReading:
        lead = envelope.body
        extra = fields.extra_fields(lead, _MAPPED_FIELDS)
        lead_fields: dict[str, Any] = {
            **fields.name_fields(lead, "lead"),
            "provider_lead_id": fields.text(lead, "id", "lead.id"),
            "email": fields.email_and_extra(fields.text(lead, "email", "lead.email"), extra),
            "score": fields.number(lead, "lead_score", "lead.lead_score"),
            "tags": fields.text_list(lead, "tags", "lead.tags"),
            "extra": extra,
        }
        for leadhub_field, lead_field in _TEXT_FIELDS.items():
            lead_fields[lead_field] = fields.text(lead, leadhub_field, f"lead.{leadhub_field}")
        return lead_fields, self._activity(envelope.provider_event, payload, lead_fields)

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
