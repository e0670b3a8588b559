"""What the receiver reads of the configuration: its sources and its request limits.

The app's `Config` holds these models; the receiver needs no more than `ReceiverConfig`
describes, so it never imports the app.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from leadrelay.core.delivery.contract import ConnectorOptions
from leadrelay.core.ingest.providers import PROVIDERS


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Strict):
    provider: str
    secrets: list[SecretStr] = Field(default_factory=list)

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, value: str) -> str:
        if value not in PROVIDERS:
            raise ValueError(f"unknown provider {value!r}; one of: {', '.join(sorted(PROVIDERS))}")
        return value

    @field_validator("secrets")
    @classmethod
    def _no_blank_secret(cls, value: list[SecretStr]) -> list[SecretStr]:
        if any(not s.get_secret_value() for s in value):
            raise ValueError("a secret is empty (is its environment variable set?)")
        return value

    def secret_values(self) -> list[str]:
        return [s.get_secret_value() for s in self.secrets]


class ServerConfig(_Strict):
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)


class ReceiverConfig(Protocol):
    """The parts of the configuration the receiver reads (the app's `Config` has them)."""

    @property
    def sources(self) -> Mapping[str, SourceConfig]: ...

    @property
    def connectors(self) -> Mapping[str, ConnectorOptions]: ...

    @property
    def server(self) -> ServerConfig: ...


def unsigned_sources(config: ReceiverConfig) -> list[str]:
    """Sources with no secrets: they accept unsigned requests."""
    return [name for name, source in config.sources.items() if not source.secrets]
