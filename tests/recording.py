"""A connector that records what it is sent and answers from a script: the engine's test double."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from leadrelay.core.delivery.contract import Connector, ConnectorOptions, Delivered, Outcome
from leadrelay.core.schema import LeadEvent


class RecordingOptions(ConnectorOptions):
    batch: int = 10


class RecordingConnector(Connector[RecordingOptions]):
    type_name = "recording"
    options_model = RecordingOptions

    # Shared across instances (the worker builds its own): keyed by connector name.
    sent: ClassVar[dict[str, list[LeadEvent]]] = defaultdict(list)
    calls: ClassVar[dict[str, int]] = defaultdict(int)
    scripts: ClassVar[dict[str, list[Outcome | Callable[[LeadEvent], Outcome]]]] = {}
    _lock = threading.Lock()

    def __init__(self, name: str, options: RecordingOptions) -> None:
        super().__init__(name, options)
        self.batch_size = options.batch  # type: ignore[misc]

    @classmethod
    def reset(cls) -> None:
        cls.sent.clear()
        cls.calls.clear()
        cls.scripts.clear()

    def send(self, batch: Sequence[LeadEvent]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        with self._lock:
            self.calls[self.name] += 1
            script = self.scripts.get(self.name)
            for event in batch:
                step = script.pop(0) if script else Delivered()
                outcome = step(event) if callable(step) else step
                if isinstance(outcome, Delivered):
                    self.sent[self.name].append(event)
                outcomes.append(outcome)
        return outcomes

    def preview(self, event: LeadEvent) -> dict[str, Any]:
        return {"event_id": event.event_id}
