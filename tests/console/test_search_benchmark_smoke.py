"""The console search benchmark at a tiny scale, so `make bench` cannot find it broken.

Asserts what it reports, never a timing (those belong to `make bench` on a quiet machine).
"""

from __future__ import annotations

from pathlib import Path

from benchmarks import console_search
from benchmarks.common import BenchContext


def test_the_search_benchmark_runs_and_reports_every_query(tmp_path: Path) -> None:
    result = console_search.run(BenchContext(work_dir=tmp_path, scale=0.001))
    assert result["events"] == 1_000
    assert set(result["timings"]) == {
        "email",
        "lead_key",
        "provider_lead_id",
        "event_id",
        "miss",
        "newest_page",
        "source_status_page",
        "deep_keyset_page",
        "overview_counts",
        "overview_chart",
    }
    assert result["search_p95_ms"] == max(
        result["timings"][name]["p95_ms"]
        for name in ("email", "lead_key", "provider_lead_id", "event_id", "miss")
    )
