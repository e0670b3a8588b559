"""Providers by name (the `provider:` key in YAML), from the `leadrelay.providers` group.

The built-in providers are entry points of the `leadrelay` distribution, like third-party
ones, so a plugin provider is used exactly as a built-in one. When a plugin reuses a
built-in name, the built-in wins.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint

from leadrelay.core.ingest.providers.base import Provider, ProviderOptions
from leadrelay.core.plugins import entry_points_by_name

ENTRY_POINT_GROUP = "leadrelay.providers"


class UnknownProvider(LookupError):
    pass


def _entry_points() -> dict[str, EntryPoint]:
    return entry_points_by_name(ENTRY_POINT_GROUP)


def available_providers() -> list[str]:
    return sorted(_entry_points())


def provider_class(name: str) -> type[Provider]:
    """The class registered for a provider name; UnknownProvider says what is wrong."""
    ep = _entry_points().get(name)
    if ep is None:
        raise UnknownProvider(
            f"unknown provider {name!r}; one of: {', '.join(available_providers())}"
        )
    try:
        cls = ep.load()
    except Exception as exc:
        raise UnknownProvider(
            f"provider {name!r} could not be loaded: {type(exc).__name__}: {exc}"
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, Provider)):
        raise UnknownProvider(f"provider {name!r} does not name a Provider subclass")
    if getattr(cls, "name", None) != name:
        raise UnknownProvider(
            f"provider {name!r} names a class whose `name` is {getattr(cls, 'name', None)!r}"
        )
    return cls


def provider_for(name: str, options: ProviderOptions | None = None) -> Provider:
    """The provider for one source: built from its options when the provider takes some."""
    return provider_class(name).for_source(options)
