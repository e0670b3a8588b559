"""`on_dead`: when a delivery goes dead, the named connector (e.g. Slack) is told."""

from __future__ import annotations

from leadrelay.core.delivery.contract import Permanent, Retryable
from leadrelay.core.delivery.worker import Worker
from tests.conftest import accept_gitleads, make_config, migrated_store
from tests.recording import RecordingConnector


def _accept_one(sqlite_url: str, connectors: dict) -> tuple[Worker, str]:
    config = make_config(sqlite_url, connectors=connectors)
    store = migrated_store(sqlite_url)
    return Worker(config, store), accept_gitleads(config, store, 7)


def test_permanent_failure_notifies_the_on_dead_connector(sqlite_url: str) -> None:
    worker, event_id = _accept_one(
        sqlite_url,
        {
            "crm": {"type": "recording", "on_dead": "alerts", "events": ["lead.created"]},
            # The alerts connector receives no lead events itself, only dead notices.
            "alerts": {"type": "recording", "events": ["lead.deleted"]},
        },
    )
    RecordingConnector.scripts["crm"] = [Permanent("VALIDATION_ERROR: bad email")]

    worker.drain()

    [notice] = RecordingConnector.sent["alerts"]
    assert notice.event_id == event_id
    assert notice.activity is not None
    assert notice.activity.kind == "delivery_dead"
    assert notice.activity.text == "Delivery to crm failed for good: VALIDATION_ERROR: bad email"
    assert notice.activity.context == {"connector": "crm", "event_id": event_id}
    assert RecordingConnector.sent["crm"] == []


def test_retryable_failure_does_not_notify(sqlite_url: str) -> None:
    worker, _ = _accept_one(
        sqlite_url,
        {
            "crm": {"type": "recording", "on_dead": "alerts", "events": ["lead.created"]},
            "alerts": {"type": "recording", "events": ["lead.deleted"]},
        },
    )
    RecordingConnector.scripts["crm"] = [Retryable("503 Service Unavailable")]

    worker.drain()

    assert RecordingConnector.sent["alerts"] == []
    assert RecordingConnector.calls["alerts"] == 0
