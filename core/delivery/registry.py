"""Connector types by name, from the `leadrelay.connectors` entry-point group.

Built-in connectors are entry points of the `leadrelay` distribution, like third-party
ones, so nothing in `core/` imports `leadrelay.connectors`. A class is imported on first
use, so a deployment that only writes CSV never imports the Salesforce SDK. When a plugin
reuses a built-in name, the built-in wins.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

from leadrelay.core.delivery.contract import Connector

ENTRY_POINT_GROUP = "leadrelay.connectors"
_BUILTIN_DISTRIBUTION = "leadrelay"


class UnknownConnectorType(LookupError):
    pass


def _entry_points() -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        builtin = ep.dist is not None and ep.dist.name == _BUILTIN_DISTRIBUTION
        if builtin or ep.name not in found:
            found[ep.name] = ep
    return found


def available_types() -> list[str]:
    return sorted(_entry_points())


def connector_class(type_name: str) -> type[Connector]:
    """The class registered for a connector type."""
    ep = _entry_points().get(type_name)
    if ep is None:
        raise UnknownConnectorType(
            f"unknown connector type {type_name!r}; available: {', '.join(available_types())}"
        )
    try:
        cls = ep.load()
    except Exception as exc:
        raise UnknownConnectorType(
            f"connector type {type_name!r} could not be loaded: {type(exc).__name__}: {exc}"
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, Connector)):
        raise UnknownConnectorType(f"{type_name!r} does not name a Connector subclass")
    return cls
