"""GitProductivity: developers added to / removed from an organization.

Doc: ../shared/provider-docs/gitproductivity.txt. Signature: `X-GitProductivity-Signature:
sha256=<hex>`, HMAC-SHA256 of the raw body (the base class default).

The event name is in `type`. `developer.added` is a new lead, `developer.removed` an
update with status "removed"; repository and metrics events are not about leads and are
ignored. The idempotency key is GitProductivity's own event `id`; a payload without one
falls back to a fingerprint of type, `created_at`, developer id and data.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

from leadrelay.core.providers import fields
from leadrelay.core.providers.base import ParseResult, Provider
from leadrelay.core.providers.names import combine_names
from leadrelay.core.schema import EventType

REMOVED_STATUS = "removed"
_MAPPED_FIELDS = {"developer_id", "name", "first_name", "last_name", "email"}


class GitProductivityProvider(Provider):
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
        provider_event = fields.required_text(payload, "type", "type")
        event_time = fields.text(payload, "created_at", "created_at")
        data = payload.get("data")
        idempotency_key = fields.text(payload, "id", "id") or fields.event_fingerprint(
            provider_event,
            event_time,
            [
                fields.identifying_text(data.get("developer_id"))
                if isinstance(data, dict)
                else None,
                fields.canonical_json(data),
            ],
            payload,
        )
        event_type = self.event_types.get(provider_event)
        if event_type is None:
            return fields.not_a_lead_event(self.event_types, provider_event, idempotency_key)
        data = fields.require_object(payload, "data", "data")

        extra = fields.extra_fields(data, _MAPPED_FIELDS)
        names = combine_names(
            fields.text(data, "name", "data.name"),
            fields.text(data, "first_name", "data.first_name"),
            fields.text(data, "last_name", "data.last_name"),
        )
        lead_fields: dict[str, Any] = {
            "provider_lead_id": fields.text(data, "developer_id", "data.developer_id"),
            "email": fields.email_and_extra(fields.text(data, "email", "data.email"), extra),
            "first_name": names.first_name,
            "last_name": names.last_name,
            "full_name": names.full_name,
            "status": REMOVED_STATUS if provider_event == "developer.removed" else None,
            "extra": extra,
        }
        return fields.build_lead_event(
            provider=self.name,
            source=source,
            idempotency_key=idempotency_key,
            event_type=event_type,
            provider_event=provider_event,
            occurred_at=fields.parse_timestamp(event_time),
            received_at=received_at,
            lead_fields=lead_fields,
            activity=None,
            raw=payload,
        )
