"""The benchmark harness at a tiny scale, so it cannot rot between `make bench` runs.

Asserts the structure of what it writes, never a timing: the figures of a tiny run on a
busy test machine mean nothing. Part of the default `make test` (about 50 s).
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import run as bench_run
from tests.conftest import postgres_unavailable_reason

HEADLINE_KEYS = {
    "ingest": ("ratio_to_bare_flask",),
    "delivery": ("fraction_of_rate_limit_bound",),
    "latency": ("p50_ms", "p99_ms"),
    "scaleout": ("ratio_4_to_1",),
    "memory": ("peak_rss_mb",),
    "console": ("search_p95_ms",),
}


def _benchmarks() -> list[str]:
    names = list(bench_run.BENCHMARKS)
    if postgres_unavailable_reason():
        names.remove("scaleout")
    return names


def test_every_benchmark_runs_at_a_tiny_scale_and_writes_its_results(tmp_path: Path) -> None:
    names = _benchmarks()
    # The Python load generator is the path a machine without wrk takes; wrk is
    # exercised by every `make bench` here.
    results = bench_run.run(
        [
            "--scale",
            "0.01",
            "--loader",
            "python",
            "--only",
            ",".join(names),
            "--out-dir",
            str(tmp_path),
        ]
    )

    written = json.loads((tmp_path / "results.json").read_text())
    assert written == json.loads(json.dumps(results))
    for name in names:
        assert "error" not in written[name], written[name]
    for name, keys in HEADLINE_KEYS.items():
        if name not in names:
            continue
        for key in keys:
            assert isinstance(written[name][key], int | float), (name, key)
    assert written["machine"]["cores"] >= 1
    assert written["machine"]["python"].count(".") == 2
    assert written["loader"] == "python"

    ingest = written["ingest"]
    assert ingest["commit_check"]["every_2xx_committed"] is True
    assert ingest["commit_check"]["missing_from_db"] == 0
    assert ingest["leadrelay"]["ok"] == ingest["commit_check"]["answered_2xx"] > 0
    assert ingest["bare_flask"]["completed"] > 0
    assert ingest["receiver_only"]["ok"] == ingest["receiver_only"]["completed"] > 0
    assert isinstance(ingest["receiver_only_ratio_to_bare_flask"], float)
    # Server CPU per request, from /proc, for each server measured.
    for server in ("bare_flask", "receiver_only", "leadrelay"):
        assert ingest[server]["server_cpu_s"] > 0, server
        assert ingest[server]["cpu_us_per_request"] > 0, server
    assert isinstance(ingest["cpu_ratio_to_bare_flask"], float)
    assert isinstance(ingest["cpu_met"], bool)

    sustained = written["sustained"]
    assert sustained["accepted"] > 0
    assert sustained["backlog_end"] >= 0
    assert sustained["cpu_us_per_accepted_event"] > 0
    assert isinstance(sustained["ratio_to_bare_flask"], float)
    assert sustained["delivery_cpu"]["rows"] > 0
    assert isinstance(sustained["delivery_cpu"]["cpu_us_per_row"], int)

    delivery = written["delivery"]
    assert delivery["delivered"] == delivery["events"] == delivery["contacts_in_fake"]
    assert delivery["bound_per_s"] == 1900.0

    latency = written["latency"]
    assert latency["delivered"] == latency["accepted"] > 0

    if "scaleout" in names:
        scaleout = written["scaleout"]
        assert set(scaleout["deliveries_per_s"]) == {"1", "2", "4"}
        assert scaleout["duplicate_deliveries"] == 0

    memory = written["memory"]
    assert {p["role"] for p in memory["processes"]} == {"master", "worker"}

    table = (tmp_path / "results.md").read_text()
    assert table.startswith("## Benchmarks")
    table_lines = [line for line in table.splitlines() if line.startswith("|")]
    assert len(table_lines) == 10  # header, separator, eight benchmarks
    assert all(line.count("|") >= 6 for line in table_lines)
