"""A complete third-party connector: `type: jsonl` appends each lead event as one JSON line.

Install next to leadrelay (`pip install ./examples/custom_connector`) and configure:

    connectors:
      lake: {type: jsonl, path: ./leads.jsonl}
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from leadrelay.core.delivery.contract import (
    Connector,
    ConnectorOptions,
    Delivered,
    Outcome,
    Retryable,
)
from leadrelay.core.schema import LeadEvent


class JsonLinesOptions(ConnectorOptions):
    type: Literal["jsonl"] = "jsonl"
    path: Path


class JsonLinesConnector(Connector[JsonLinesOptions]):
    type_name = "jsonl"
    options_model = JsonLinesOptions
    batch_size = 100

    def preview(self, event: LeadEvent) -> dict[str, Any]:
        return event.model_dump(mode="json", exclude={"raw"})

    def send(self, batch: Sequence[LeadEvent]) -> list[Outcome]:
        lines = "".join(json.dumps(self.preview(e), ensure_ascii=False) + "\n" for e in batch)
        try:
            with open(self.options.path, "a", encoding="utf-8") as handle:
                handle.write(lines)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            # Transient from leadrelay's point of view: it retries, then dead-letters.
            return [Retryable(f"cannot append to {self.options.path}: {exc.strerror}")] * len(batch)
        return [Delivered()] * len(batch)
