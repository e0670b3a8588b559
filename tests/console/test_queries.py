"""The console's store queries on SQLite and PostgreSQL: search through the indexes of
migration 0002, keyset pages, counts."""

from __future__ import annotations

from datetime import timedelta

from leadrelay.core.store import console_queries as queries
from leadrelay.core.store.store import utcnow
from tests.conftest import gitleads_body, make_config, migrated_store, request_record


def test_search_pages_and_counts_agree_on_both_databases(store_url: str) -> None:
    config = make_config(store_url)
    store = migrated_store(store_url)
    try:
        stored = store.submit_many(
            [request_record(config, "gitleads", gitleads_body(n)) for n in range(7)]
        )
        ids = [r.event_id for r in stored]
        for text in ("DEV3@Example.com", "email:dev3@example.com", "lead_3", ids[3]):
            rows = queries.search_events(store, queries.EventQuery(search=text)).rows
            assert [row["event_id"] for row in rows] == [ids[3]], text
        assert queries.search_events(store, queries.EventQuery(search="nobody@x.io")).rows == []

        seen: list[str] = []
        cursor = None
        for _ in range(10):  # bounded: 7 events in pages of 3
            page = queries.search_events(store, queries.EventQuery(limit=3, after=cursor))
            seen += [row["event_id"] for row in page.rows]
            if page.next_cursor is None:
                break
            cursor = queries.EventCursor.decode(page.next_cursor)
        assert sorted(seen) == sorted(ids)
        assert len(seen) == len(ids)

        now = utcnow()
        since = now - timedelta(hours=24)
        assert queries.event_counts_by_source(store, since) == {"gitleads": {"accepted": 7}}
        assert queries.delivery_counts_by_connector(store, since) == {"rec": {"pending": 7}}
        hours = queries.events_per_hour(store, now)
        assert len(hours) == 24
        assert hours[-1][1] == 7
        assert sum(n for _, n in hours) == 7
    finally:
        store.close()
