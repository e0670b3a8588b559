"""Provider adapters; `registry` finds them by name (the `provider:` key in YAML)."""

from __future__ import annotations

from leadrelay.core.ingest.providers.base import (
    Ignored,
    Parsed,
    ParseResult,
    Provider,
    ProviderOptions,
    SignatureError,
    Unreadable,
)

__all__ = [
    "Ignored",
    "ParseResult",
    "Parsed",
    "Provider",
    "ProviderOptions",
    "SignatureError",
    "Unreadable",
]
