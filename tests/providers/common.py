"""Shared helpers for the provider adapter tests."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from leadrelay.core.ingest.providers import Ignored, Parsed, Provider, Unreadable
from leadrelay.core.ingest.providers.base import ParseResult
from leadrelay.core.ingest.providers.registry import provider_for
from leadrelay.core.schema import LeadEvent

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
RECEIVED_AT = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
# The four named providers, as the registry builds them (they take no per-source options).
BUILTIN_PROVIDERS = ("gitleads", "gitproductivity", "leadhub", "leadshark")
PROVIDERS: dict[str, Provider] = {name: provider_for(name) for name in BUILTIN_PROVIDERS}


def fixture_text(provider: str, event: str) -> str:
    return (FIXTURES / provider / f"{event}.json").read_text(encoding="utf-8")


def fixture(provider: str, event: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(fixture_text(provider, event))
    return payload


def parse(
    provider: str,
    payload: Any,
    *,
    source: str | None = None,
    headers: dict[str, str] | None = None,
) -> ParseResult:
    return PROVIDERS[provider].parse(
        payload, source=source or provider, received_at=RECEIVED_AT, headers=headers
    )


def parse_event(provider: str, payload: Any, **kwargs: Any) -> LeadEvent:
    """Parse and insist on a lead event (the failure shows what came back instead)."""
    result = parse(provider, payload, **kwargs)
    assert isinstance(result, Parsed), result
    return result.event


def assert_read_without_adapter_error(result: object, where: object = None) -> None:
    """A typed result that is not an adapter defect: an adapter that raises is quarantined
    like a payload it cannot read, and only `adapter_error` tells the two apart. `where`
    (the mutation tried, say) goes into the failure message."""
    assert isinstance(result, Parsed | Ignored | Unreadable), (where, result)
    if isinstance(result, Unreadable):
        assert result.adapter_error is None, (where, result)
