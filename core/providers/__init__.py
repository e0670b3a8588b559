"""Provider adapters, registered explicitly by name (the `provider:` key in YAML)."""

from __future__ import annotations

from leadrelay.core.providers.base import (
    Ignored,
    Parsed,
    ParseResult,
    Provider,
    SignatureError,
    Unreadable,
)
from leadrelay.core.providers.gitleads import GitLeadsProvider
from leadrelay.core.providers.gitproductivity import GitProductivityProvider
from leadrelay.core.providers.leadhub import LeadHubProvider
from leadrelay.core.providers.leadshark import LeadSharkProvider

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
