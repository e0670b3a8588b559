"""`python -m benchmarks.run`: run the benchmarks, write results.json and results.md.

    .venv/bin/python -m benchmarks.run                 # everything, full scale (~6 min)
    BENCH_SCALE=0.1 .venv/bin/python -m benchmarks.run # a quick pass
    .venv/bin/python -m benchmarks.run --only ingest,latency --profile

A benchmark that fails is recorded with its error and the others still run; the exit
status is then 1. Every process started is stopped on the way out, including on Ctrl-C
and SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks import (
    attacks,
    console_search,
    delivery,
    ingest,
    latency,
    memory,
    scaleout,
    sustained,
)
from benchmarks.common import BenchContext, load_average, machine_info
from benchmarks.load import choose_loader
from benchmarks.report import markdown

BENCHMARKS: dict[str, Callable[[BenchContext], dict[str, Any]]] = {
    "ingest": ingest.run,
    "sustained": sustained.run,
    "delivery": delivery.run,
    "latency": latency.run,
    "scaleout": scaleout.run,
    "memory": memory.run,
    "console": console_search.run,
    "attacks": attacks.run,
}
HEADLINE = {
    "ingest": ["ratio_to_bare_flask", "cpu_ratio_to_bare_flask"],
    "sustained": ["ratio_to_bare_flask", "cpu_us_per_accepted_event"],
    "delivery": ["fraction_of_rate_limit_bound"],
    "latency": ["p50_ms", "p99_ms"],
    "scaleout": ["ratio_4_to_1"],
    "memory": ["peak_rss_mb"],
    "console": ["search_p95_ms"],
    "attacks": ["worst_refusal_cpu_ms", "worst_slow_client_ms"],
}
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
OUT_DIR = Path(__file__).resolve().parent


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument(
        "--scale",
        type=float,
        default=float(os.environ.get("BENCH_SCALE", "1")),
        help="multiplies every duration and count (default $BENCH_SCALE or 1)",
    )
    parser.add_argument(
        "--only", default=",".join(BENCHMARKS), help=f"comma list of {', '.join(BENCHMARKS)}"
    )
    parser.add_argument("--loader", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("LEADRELAY_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL),
    )
    parser.add_argument("--profile", action="store_true", help="py-spy the ingest run")
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    unknown = set(args.only.split(",")) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    if args.scale <= 0:
        parser.error("--scale must be positive")
    return args


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the selected benchmarks and write the result files; returns the results."""
    args = parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the fakes' access log
    work_dir = Path(tempfile.mkdtemp(prefix="leadrelay-bench-"))
    ctx = BenchContext(
        work_dir=work_dir,
        scale=args.scale,
        loader=choose_loader(args.loader),
        connections=args.connections,
        postgres_url=args.postgres_url,
        profile=args.profile,
    )
    results: dict[str, Any] = {
        "machine": machine_info(),
        "scale": args.scale,
        "loader": ctx.loader,
        "connections": ctx.connections,
        "load_average_before": load_average(),
    }
    try:
        for name in args.only.split(","):
            started = time.monotonic()
            print(f"[bench] {name} …", file=sys.stderr, flush=True)
            try:
                results[name] = BENCHMARKS[name](ctx)
            except Exception as exc:
                traceback.print_exc()
                results[name] = {"error": f"{type(exc).__name__}: {str(exc)[:500]}"}
            results[name]["seconds"] = round(time.monotonic() - started, 1)
            _compare_sustained_to_bare_flask(results)
            print(f"[bench] {name}: {_headline(name, results[name])}", file=sys.stderr)
    finally:
        results["load_average_after"] = load_average()
        if args.keep:
            print(f"[bench] work directory kept: {work_dir}", file=sys.stderr)
        else:
            shutil.rmtree(work_dir, ignore_errors=True)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out_dir / "results.md").write_text(markdown(results))
    return results


# Deploy default (delivery in-process) against bare Flask's rate measured by `ingest`.
SUSTAINED_TARGET_RATIO = 0.35


def _compare_sustained_to_bare_flask(results: dict[str, Any]) -> None:
    """Once both have run: the deploy default's rate and CPU against bare Flask's."""
    sustained, ingest_section = results.get("sustained"), results.get("ingest")
    if not sustained or not ingest_section or "error" in sustained or "error" in ingest_section:
        return
    if "backlog_met" in sustained:
        return
    bare = ingest_section["bare_flask"]
    ratio = sustained["accepted_per_s"] / bare["req_per_s"] if bare["req_per_s"] else 0.0
    sustained["ratio_to_bare_flask"] = round(ratio, 3)
    sustained["cpu_ratio_to_bare_flask"] = (
        round(sustained["cpu_us_per_accepted_event"] / bare["cpu_us_per_request"], 2)
        if bare["cpu_us_per_request"]
        else 0.0
    )
    sustained["target_ratio"] = SUSTAINED_TARGET_RATIO
    sustained["backlog_met"] = sustained["met"]
    sustained["met"] = sustained["met"] and ratio >= SUSTAINED_TARGET_RATIO


def _headline(name: str, section: dict[str, Any]) -> str:
    if "error" in section:
        return f"FAILED {section['error']}"
    shown = {key: section.get(key) for key in HEADLINE.get(name, [])}
    if "met" in section:
        shown["met"] = section["met"]
    return json.dumps(shown)


def _stop_on_signal(signum: int, _frame: Any) -> None:
    # Unwinds through every `finally`, which stops the processes each benchmark started.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _stop_on_signal)
    results = run(argv)
    failed = [name for name in BENCHMARKS if "error" in results.get(name, {})]
    print(markdown(results))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
