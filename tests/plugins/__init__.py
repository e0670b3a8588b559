"""Entry points for tests, registered the way `pip install` registers a plugin.

`importlib.metadata` finds a distribution by its `.dist-info` folder on `sys.path`, so a
folder with METADATA and entry_points.txt is all a test needs: no test edits the
production registry.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest


def write_distribution(
    folder: Path, name: str, entry_points: Mapping[str, Mapping[str, str]]
) -> Path:
    """A `.dist-info` for distribution `name` declaring `entry_points` (group → name → target)."""
    dist_info = folder / f"{name.replace('-', '_')}-0.0.0.dist-info"
    dist_info.mkdir(parents=True, exist_ok=True)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.0.0\n")
    lines = []
    for group, targets in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{ep_name} = {target}" for ep_name, target in targets.items()]
    (dist_info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return folder


def install_plugin(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    entry_points: Mapping[str, Mapping[str, str]],
    name: str = "leadrelay-test-plugin",
) -> None:
    """Register `entry_points` for one test (undone by monkeypatch)."""
    monkeypatch.syspath_prepend(str(write_distribution(tmp_path / "site", name, entry_points)))
