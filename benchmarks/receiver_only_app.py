"""Diagnostic: leadrelay's receiver with the commit left out, under the same server.

Everything a request goes through (HTTP, signature, JSON, provider parse, normalization,
routing, the rows prepared for the store, logs and metrics) except the group commit,
which answers at once without touching the database. Benchmark 1 measures it beside the
real server and bare Flask, so the run itself says how much of the gap to bare Flask is
the receiver's own work and how much is durable storage. Never a way to run leadrelay:
nothing it answers is stored.
"""

from __future__ import annotations

import os

from leadrelay.core import logs
from leadrelay.core.app.config import load_config
from leadrelay.core.ingest.receiver import create_app
from leadrelay.core.store.store import IncomingEvent, IngestResult, Store


class _NoCommitStore(Store):
    def submit(self, record: IncomingEvent) -> IngestResult:
        # The row a real submit binds in the request thread, then no commit.
        self._inbox.entry(record)
        return IngestResult(event_id=record.event_id, duplicate=False)


logs.configure(os.environ.get("LEADRELAY_LOG_LEVEL", "INFO"))
_config = load_config()
app = create_app(_config, _NoCommitStore(_config.store))
