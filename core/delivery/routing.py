"""Which connectors get an event: `enabled`, `events`, `sources` and `require`."""

from __future__ import annotations

from collections.abc import Mapping

from leadrelay.core.delivery.contract import ConnectorOptions
from leadrelay.core.schema import LeadEvent


def matches(event: LeadEvent, options: ConnectorOptions) -> bool:
    if event.type not in options.events:
        return False
    if options.sources is not None and event.source not in options.sources:
        return False
    return all(getattr(event.lead, field, None) not in (None, "", []) for field in options.require)


def route(event: LeadEvent, connectors: Mapping[str, ConnectorOptions]) -> tuple[str, ...]:
    """Names of the connectors that should receive `event`, in config order.

    A connector with `enabled: false` gets no new deliveries (its pending ones wait until
    it is enabled again). One disabled at run time after a 410 still gets them: they wait
    with the rest, so re-enabling it loses nothing.
    """
    return tuple(
        name for name, options in connectors.items() if options.enabled and matches(event, options)
    )
