"""Build normalized events for connector and engine tests without going through a provider."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from leadrelay.core.schema import Activity, Lead, LeadEvent, event_id_for, lead_key
from leadrelay.core.store.records import DeliveryUpdate

_counter = 0


def make_lead(**fields: Any) -> Lead:
    values: dict[str, Any] = {
        "email": "jane@example.com",
        "first_name": "Jane",
        "last_name": "Doe",
        "full_name": "Jane Doe",
        "title": "Staff Engineer",
        "company": "Vercel",
        "github_username": "jdoe",
        "github_url": "https://github.com/jdoe",
    }
    values.update(fields)
    if "key" not in values:
        values["key"] = lead_key(
            provider="gitleads",
            email=values.get("email"),
            linkedin_username=values.get("linkedin_username"),
            github_username=values.get("github_username"),
            provider_lead_id=values.get("provider_lead_id") or "lead_test",
        )
    return Lead(**values)


def make_event(
    *,
    type: str = "lead.created",
    source: str = "gitleads",
    provider: str = "gitleads",
    activity: Activity | None = None,
    idempotency_key: str | None = None,
    raw: dict[str, Any] | None = None,
    **lead_fields: Any,
) -> LeadEvent:
    """A distinct event per call unless `idempotency_key` is given."""
    global _counter
    _counter += 1
    key = idempotency_key or f"test-{_counter}"
    now = datetime(2026, 4, 24, 10, 31, tzinfo=UTC)
    return LeadEvent(
        event_id=event_id_for(source, key),
        idempotency_key=key,
        source=source,
        provider=provider,
        type=type,  # type: ignore[arg-type]
        provider_event=type,
        occurred_at=now,
        received_at=now,
        lead=make_lead(**lead_fields),
        activity=activity,
        raw=raw if raw is not None else {"event": type, "data": {"id": "lead_test"}},
    )


def delivered_update(delivery_id: int, now: datetime) -> DeliveryUpdate:
    """A first try of `delivery_id` that went through, as the retry policy records it."""
    return DeliveryUpdate(
        id=delivery_id,
        status="delivered",
        attempts=1,
        next_attempt_at=now,
        last_error=None,
        outcome="delivered",
        started_at=now,
        attempt_number=1,
    )
