"""Prometheus metrics, multiprocess-safe under gunicorn.

When PROMETHEUS_MULTIPROC_DIR is set (deploy/gunicorn.conf.py sets it), every process
writes its samples there and `/metrics` aggregates them; otherwise the default registry
of this process is served. Queue depth and the oldest pending age are read from the
store at scrape time, so every process reports the same truth.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

WEBHOOKS = Counter(
    "leadrelay_webhooks_received",
    "Webhook requests by source and answer (accepted, duplicate, ignored, quarantined or an "
    "error code)",
    ["source", "answer"],
)
SIGNATURE_FAILURES = Counter(
    "leadrelay_signature_failures",
    "Requests refused for a missing, malformed or mismatched signature",
    ["source", "reason"],
)
DELIVERY_ATTEMPTS = Counter(
    "leadrelay_delivery_attempts",
    "Delivery attempts by connector and outcome",
    ["connector", "outcome"],
)
DELIVERY_LATENCY = Histogram(
    "leadrelay_delivery_latency_seconds",
    "Time from receipt of an event to its successful delivery",
    ["connector"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86400),
)
INGEST_GROUP_SIZE = Histogram(
    "leadrelay_ingest_group_size",
    "Events committed per ingest transaction (group commit)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)


class QueueCollector(Collector):
    """Queue depth by connector and status, and the age of the oldest pending delivery."""

    def __init__(self, read_stats: Callable[[], dict[str, Any]]) -> None:
        self._read_stats = read_stats

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            stats = self._read_stats()
        except Exception:  # a scrape must not fail because the store is down
            return
        depth = GaugeMetricFamily(
            "leadrelay_deliveries",
            "Deliveries by connector and status",
            labels=["connector", "status"],
        )
        for (connector, status), count in sorted(stats["counts"].items()):
            depth.add_metric([connector, status], count)
        yield depth
        yield GaugeMetricFamily(
            "leadrelay_oldest_pending_delivery_age_seconds",
            "Age of the oldest delivery still pending",
            value=stats["oldest_pending_age_s"],
        )
        yield GaugeMetricFamily(
            "leadrelay_journaled_events",
            "Acknowledged events not moved into the store's tables yet",
            value=stats["journaled"],
        )


def render(extra: Collector | None = None) -> tuple[bytes, str]:
    """The Prometheus text exposition for this process (or all gunicorn processes)."""
    from prometheus_client import REGISTRY

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY)
    if extra is not None:
        store_registry = CollectorRegistry()
        store_registry.register(extra)
        body += generate_latest(store_registry)
    return body, CONTENT_TYPE_LATEST
