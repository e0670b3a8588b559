"""Entry points by name, the built-in distribution's winning over plugins' of the same name.

Connectors and providers are both found this way, so a built-in and a third-party one are
loaded alike. Imports nothing of ours.
"""

from __future__ import annotations

import functools
import sys
from importlib.metadata import EntryPoint, entry_points

BUILTIN_DISTRIBUTION = "leadrelay"


def entry_points_by_name(group: str) -> dict[str, EntryPoint]:
    """The group's entry points by name; a built-in wins over a plugin of the same name."""
    return _entry_points_on(group, tuple(sys.path))


# Scanning every installed distribution takes milliseconds and loading one config asks
# several times. `path` is part of the key: a plugin put on sys.path later is still found.
@functools.lru_cache(maxsize=8)
def _entry_points_on(group: str, path: tuple[str, ...]) -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=group):
        builtin = ep.dist is not None and ep.dist.name == BUILTIN_DISTRIBUTION
        if builtin or ep.name not in found:
            found[ep.name] = ep
    return found
