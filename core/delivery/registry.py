"""Explicit registry of connector types.

Built-ins are listed here by import path (imported on first use, so a deployment that
only writes CSV never imports the Salesforce SDK). Third-party connectors register
through the `leadrelay.connectors` entry-point group: `name = "package.module:Class"`.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from leadrelay.core.delivery.contract import Connector

BUILTIN_CONNECTORS: dict[str, str] = {
    "hubspot": "leadrelay.connectors.hubspot:HubSpotConnector",
    "salesforce": "leadrelay.connectors.salesforce:SalesforceConnector",
    "slack": "leadrelay.connectors.slack:SlackConnector",
    "csv": "leadrelay.connectors.csv_file:CsvConnector",
    "webhook": "leadrelay.connectors.webhook:WebhookConnector",
}

ENTRY_POINT_GROUP = "leadrelay.connectors"


class UnknownConnectorType(LookupError):
    pass


def available_types() -> list[str]:
    plugins = {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return sorted(set(BUILTIN_CONNECTORS) | plugins)


def connector_class(type_name: str) -> type[Connector]:
    """The class for a connector type; built-ins win over plugins of the same name."""
    target = BUILTIN_CONNECTORS.get(type_name)
    if target is not None:
        module_name, _, attr = target.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise UnknownConnectorType(
                f"connector type {type_name!r} could not be loaded: {exc}"
            ) from None
    else:
        matches = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == type_name]
        if not matches:
            raise UnknownConnectorType(
                f"unknown connector type {type_name!r}; available: {', '.join(available_types())}"
            )
        try:
            cls = matches[0].load()
        except Exception as exc:
            raise UnknownConnectorType(
                f"plugin connector {type_name!r} could not be loaded: {type(exc).__name__}: {exc}"
            ) from None
    if not (isinstance(cls, type) and issubclass(cls, Connector)):
        raise UnknownConnectorType(f"{type_name!r} does not name a Connector subclass")
    return cls
