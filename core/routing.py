"""Which connectors get an event: `enabled`, `events`, `sources` and `require`."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from leadrelay.connectors.base import ConnectorOptions
from leadrelay.core.schema import LeadEvent


def matches(event: LeadEvent, options: ConnectorOptions) -> bool:
    if event.type not in options.events:
        return False
    if options.sources is not None and event.source not in options.sources:
        return False
    return all(getattr(event.lead, field, None) not in (None, "", []) for field in options.require)


def route(
    event: LeadEvent,
    connectors: Mapping[str, ConnectorOptions],
    disabled: Collection[str] = (),
) -> tuple[str, ...]:
    """Names of the connectors that should receive `event`, in config order.

    A disabled connector (in YAML, or at run time after a 410) gets no new deliveries;
    its pending ones wait until it is enabled again.
    """
    return tuple(
        name
        for name, options in connectors.items()
        if options.enabled and name not in disabled and matches(event, options)
    )
