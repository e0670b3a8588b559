"""Provider adapters, registered explicitly by name (the `provider:` key in YAML)."""

from __future__ import annotations

from leadrelay.core.ingest.providers.base import (
    Ignored,
    Parsed,
    ParseResult,
    Provider,
    SignatureError,
    Unreadable,
)
from leadrelay.core.ingest.providers.gitleads import GitLeadsProvider
from leadrelay.core.ingest.providers.gitproductivity import GitProductivityProvider
from leadrelay.core.ingest.providers.leadhub import LeadHubProvider
from leadrelay.core.ingest.providers.leadshark import LeadSharkProvider

PROVIDERS: dict[str, Provider] = {
    provider.name: provider
    for provider in (
        GitLeadsProvider(),
        GitProductivityProvider(),
        LeadSharkProvider(),
        LeadHubProvider(),
    )
}

__all__ = [
    "PROVIDERS",
    "Ignored",
    "ParseResult",
    "Parsed",
    "Provider",
    "SignatureError",
    "Unreadable",
]
