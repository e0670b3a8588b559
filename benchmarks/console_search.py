"""7. Console search on 1 million stored events (SQLite, the default store).

Fills a store through `Store.submit_many` (the real insert path, with the search indexes of
migration 0003 maintained as rows go in) with events spread over 30 days, then times the
console's queries (`leadrelay.core.store.console_queries`) as an operator uses them: search by
email, lead key, provider lead id and event id (hits and a miss), the newest page, a
filtered page, a page deep in the keyset, and the overview's counts and hourly chart.
Target: every search answers in < 200 ms (p95 of the repeats).
"""

from __future__ import annotations

import json
import random
import statistics
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from benchmarks.common import BenchContext
from leadrelay.core.store import console_queries as queries
from leadrelay.core.store.store import IncomingEvent, Store, utcnow

FULL_EVENTS = 1_000_000
SOURCES = ("gitleads", "leadhub", "leadshark", "gitproductivity")
TARGET_MS = 200.0
REPEATS = 20
_GROUP = 5_000


def _record(n: int, received_at: Any) -> IncomingEvent:
    email = f"Person{n}@Example.com"
    lead = {"key": f"email:{email.lower()}", "provider_lead_id": f"lead_{n}", "email": email}
    normalized = json.dumps({"event_id": f"evt_bench_{n:09d}", "lead": lead})
    return IncomingEvent(
        event_id=f"evt_bench_{n:09d}",
        source=SOURCES[n % len(SOURCES)],
        provider="gitleads",
        status="quarantined" if n % 500 == 0 else "accepted",
        idempotency_key=f"bench-{n}",
        received_at=received_at,
        body=b'{"event":"lead.created"}',
        headers={},
        type="lead.created",
        provider_event="lead.created",
        lead_key=lead["key"],
        normalized=normalized,
    )


def fill(store: Store, count: int) -> float:
    """Store `count` events received over the last 30 days; returns events per second."""
    now = utcnow()
    step = timedelta(days=30) / count
    started = time.perf_counter()
    for first in range(0, count, _GROUP):
        store.submit_many(
            [
                _record(n, now - timedelta(days=30) + step * n)
                for n in range(first, min(first + _GROUP, count))
            ]
        )
    return count / (time.perf_counter() - started)


def _timed(call: Callable[[], object], repeats: int) -> dict[str, float]:
    call()  # warm the page cache and the statement cache
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {
        "p50_ms": round(statistics.median(samples), 2),
        "p95_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.95))], 2),
        "max_ms": round(samples[-1], 2),
    }


def run(ctx: BenchContext) -> dict[str, Any]:
    count = ctx.count(FULL_EVENTS, floor=1_000)
    store = Store(f"sqlite:///{ctx.directory('console') / 'console.db'}")
    try:
        store.migrate()
        fill_rate = fill(store, count)
        rng = random.Random(7)

        def search(text: Callable[[], str]) -> Callable[[], object]:
            return lambda: queries.search_events(store, queries.EventQuery(search=text()))

        middle = queries.search_events(
            store, queries.EventQuery(search=f"evt_bench_{count // 2:09d}")
        ).rows[0]
        deep = queries.EventCursor(middle["received_at"], middle["event_id"])
        now = utcnow()
        searches = {
            "email": search(lambda: f"PERSON{rng.randrange(count)}@example.com"),
            "lead_key": search(lambda: f"email:person{rng.randrange(count)}@example.com"),
            "provider_lead_id": search(lambda: f"lead_{rng.randrange(count)}"),
            "event_id": search(lambda: f"evt_bench_{rng.randrange(count):09d}"),
            "miss": search(lambda: f"nobody{rng.randrange(count)}@example.com"),
        }
        pages = {
            "newest_page": lambda: queries.search_events(store, queries.EventQuery()),
            "source_status_page": lambda: queries.search_events(
                store, queries.EventQuery(source="leadhub", status="quarantined")
            ),
            "deep_keyset_page": lambda: queries.search_events(
                store, queries.EventQuery(after=deep)
            ),
            "overview_counts": lambda: queries.event_counts_by_source(
                store, now - timedelta(hours=24)
            ),
            "overview_chart": lambda: queries.events_per_hour(store, now),
        }
        timings = {name: _timed(call, REPEATS) for name, call in {**searches, **pages}.items()}
        found = queries.search_events(store, queries.EventQuery(search="person3@EXAMPLE.com"))
        if [row["event_id"] for row in found.rows] != ["evt_bench_000000003"]:
            raise AssertionError(f"search found {found.rows!r}")
    finally:
        store.close()
    search_p95 = max(timings[name]["p95_ms"] for name in searches)
    return {
        "events": count,
        "fill_events_per_s": round(fill_rate),
        "timings": timings,
        "search_p95_ms": search_p95,
        "target_ms": TARGET_MS,
        "met": search_p95 < TARGET_MS,
    }
