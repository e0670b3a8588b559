"""GitProductivity: developers added to / removed from an organization.

Doc: docs/provider-docs/gitproductivity.txt. Signature: `X-GitProductivity-Signature:
sha256=<hex>`, HMAC-SHA256 of the raw body (the base class default).

The event name is in `type`. `developer.added` is a new lead, `developer.removed` an
update with status "removed"; repository and metrics events are not about leads and are
ignored. The idempotency key is GitProductivity's own event `id`; a payload without one
falls back to a fingerprint of type, `created_at`, developer id and data.
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
from leadrelay.core.schema import EventType

REMOVED_STATUS = "removed"
_MAPPED_FIELDS = {"developer_id", "name", "first_name", "last_name", "email"}


class GitProductivityProvider(EnvelopeProvider):
    name = "gitproductivity"
    signature_header = "X-GitProductivity-Signature"
    event_types: ClassVar[dict[str, EventType | None]] = {
        "developer.added": "lead.created",
        "developer.removed": "lead.updated",
        "repository.connected": None,
        "repository.disconnected": None,
        "analysis.complete": None,
        "metrics.updated": None,
    }
    envelope_keys = EnvelopeKeys(
        name="type", time="created_at", body="data", body_id="developer_id", event_id="id"
    )

    def read_lead(self, envelope: LeadEnvelope, payload: dict[str, Any]) -> LeadReading:
        data = envelope.body
        extra = fields.extra_fields(data, _MAPPED_FIELDS)
        lead_fields: dict[str, Any] = {
            **fields.name_fields(data, "data"),
            "provider_lead_id": fields.text(data, "developer_id", "data.developer_id"),
            "email": fields.email_and_extra(fields.text(data, "email", "data.email"), extra),
            "status": REMOVED_STATUS if envelope.provider_event == "developer.removed" else None,
            "extra": extra,
        }
        return lead_fields, None
