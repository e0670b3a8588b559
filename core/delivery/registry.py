"""Connector types by name, from the connectors' entry-point group (`ENTRY_POINT_GROUP`).

Built-in connectors are entry points of the `leadrelay` distribution, like third-party
ones, so nothing in `core/` imports the built-in connectors' package. A class is imported
on first use, so a deployment that only writes CSV never imports the Salesforce SDK. When
a plugin reuses a built-in name, the built-in wins.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint

from leadrelay.core.delivery.contract import Connector
from leadrelay.core.plugins import entry_points_by_name

ENTRY_POINT_GROUP = "leadrelay.connectors"


class UnknownConnectorType(LookupError):
    pass


def _entry_points() -> dict[str, EntryPoint]:
    return entry_points_by_name(ENTRY_POINT_GROUP)


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
