"""click's CliRunner, leaving the root logger as it found it.

`connectors` (the click group) installs its log handler on the root logger at every
invocation; under CliRunner that handler writes to a captured stream that is closed
afterwards, so later tests would log into a closed stream, and pytest's own handlers
would be gone. Tests invoke the CLI in-process through this runner instead.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from click import testing
from click.testing import Result

__all__ = ["CliRunner", "Result", "example_runner"]


class CliRunner(testing.CliRunner):
    def invoke(self, *args: Any, **kwargs: Any) -> Result:
        root = logging.getLogger()
        handlers, level = root.handlers[:], root.level
        try:
            return super().invoke(*args, **kwargs)
        finally:
            root.handlers[:] = handlers
            root.setLevel(level)


def example_runner(folder: Path) -> CliRunner:
    """A runner for the example configs, their CSV and database kept in `folder` (the
    examples read both paths from the environment)."""
    return CliRunner(
        env={
            "LEADRELAY_CSV_PATH": str(folder / "leads.csv"),
            "LEADRELAY_STORE": f"sqlite:///{folder / 'x.db'}",
        }
    )
