"""What the receiver reads of the configuration: its sources and its request limits.

The app's `Config` holds these models; the receiver needs no more than `ReceiverConfig`
describes, so it never imports the app.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from leadrelay.core.delivery.contract import ConnectorOptions
from leadrelay.core.ingest.providers import Provider, ProviderOptions
from leadrelay.core.ingest.providers.registry import (
    UnknownProvider,
    provider_class,
    provider_for,
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Strict):
    """One `sources:` entry. Keys beside these go to the provider's own options model
    (generic providers: `signature`, `lead`, ...), so their errors name their key path."""

    provider: str
    secrets: list[SecretStr] = Field(default_factory=list)
    # Overrides server.max_body_bytes for this source (LeadShark payloads are a few KiB:
    # a small limit refuses a large forged body before any work is done on it).
    max_body_bytes: int | None = Field(default=None, ge=1024)
    options: ProviderOptions | None = None
    _adapter: Provider = PrivateAttr()

    @model_validator(mode="before")
    @classmethod
    def _provider_options(cls, data: Any) -> Any:
        if not isinstance(data, dict) or isinstance(data.get("options"), ProviderOptions):
            return data
        try:
            options_model = provider_class(str(data.get("provider"))).options_model
        except UnknownProvider:
            return data  # the `provider` field's validator says why
        if options_model is None:
            return data  # any other key is refused as unknown
        # `options` is built here, never written: in YAML it is an unknown key like any other.
        own = {k: v for k, v in data.items() if k in cls.model_fields and k != "options"}
        rest = {key: value for key, value in data.items() if key not in own}
        return {**own, "options": options_model.model_validate(rest)}

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, value: str) -> str:
        try:
            provider_class(value)
        except UnknownProvider as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("secrets")
    @classmethod
    def _usable_secrets(cls, value: list[SecretStr], info: ValidationInfo) -> list[SecretStr]:
        if any(not s.get_secret_value() for s in value):
            raise ValueError("a secret is empty (is its environment variable set?)")
        provider = info.data.get("provider")
        if provider is None:
            return value
        for index, secret in enumerate(value):
            problem = provider_class(provider).secret_problem(secret.get_secret_value())
            if problem:
                raise ValueError(f"secret {index + 1}: {problem}")
        return value

    @model_validator(mode="after")
    def _build_adapter(self) -> SourceConfig:
        options_model = provider_class(self.provider).options_model
        if options_model is None and self.options is not None:
            raise ValueError(f"provider {self.provider!r} takes no options")
        if options_model is not None and not isinstance(self.options, options_model):
            raise ValueError(f"provider {self.provider!r} needs {options_model.__name__}")
        self._adapter = provider_for(self.provider, self.options)
        return self

    @property
    def adapter(self) -> Provider:
        """The provider that verifies and reads this source's requests."""
        return self._adapter

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


# Values copied from examples and documentation instead of generated.
KNOWN_PLACEHOLDERS = frozenset(
    {
        "changeme",
        "change-me",
        "secret",
        "password",
        "test",
        "example",
        "your-secret",
        "your_secret",
        "replace-me",
        "xxx",
        "todo",
        "whsec_test",
    }
)


@dataclass(frozen=True)
class SecretWarning:
    message: str
    sources: list[str]


def secret_warnings(config: ReceiverConfig) -> list[SecretWarning]:
    """Secrets that weaken a source: shared with another source (each then accepts the
    other's requests), or a well-known placeholder. The messages never hold the secret."""
    warnings = []
    holders: dict[str, list[str]] = {}
    for name, source in config.sources.items():
        for value in source.secret_values():
            holders.setdefault(value, []).append(name)
            if value.strip().lower() in KNOWN_PLACEHOLDERS:
                warnings.append(
                    SecretWarning(
                        f"source {name} uses a placeholder secret: generate a random one",
                        [name],
                    )
                )
    for names in holders.values():
        sharing = sorted(set(names))
        if len(sharing) > 1:
            warnings.append(
                SecretWarning(
                    f"sources {', '.join(sharing)} share a secret: each accepts requests "
                    "signed for the other",
                    sharing,
                )
            )
    return warnings


def unsigned_sources(config: ReceiverConfig) -> list[str]:
    """Sources with no secrets: they accept unsigned requests."""
    return [name for name, source in config.sources.items() if not source.secrets]
