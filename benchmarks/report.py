"""The markdown table pasted into README.md, from results.json."""

from __future__ import annotations

from typing import Any


def _n(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def _met(section: dict[str, Any]) -> str:
    if "error" in section:
        return "error"
    return "yes" if section.get("met") else "**no**"


def markdown(results: dict[str, Any]) -> str:
    machine = results["machine"]
    lines = [
        "## Benchmarks",
        "",
        f"Machine: {machine['cpu_model']}, {machine['cores']} cores, "
        f"{machine['memory_gib']} GiB, Python {machine['python']}, {machine['os']}; "
        f"run {machine['date']} (scale {results['scale']}, load generator "
        f"`{results['loader']}`, {results['connections']} connections; load average "
        f"before/after {_loadavg(results['load_average_before'])} / "
        f"{_loadavg(results['load_average_after'])}). Reproduce with `make bench`.",
        "",
        "| # | benchmark | result | target | met |",
        "|---|---|---|---|---|",
    ]
    lines += [
        _row("1", "Ingest: gunicorn (deploy config), SQLite synchronous=FULL", results, _ingest),
        _row(
            "2", "Deploy default: ingest + in-process worker delivering to CSV", results, _sustained
        ),
        _row("3", "Delivery to HubSpot fake (50 ms/call, 190 req/10 s)", results, _delivery),
        _row("4", "Receipt → connector call at 100 events/s", results, _latency),
        _row("5", "Scale-out on PostgreSQL, connector 50 ms/batch", results, _scaleout),
        _row("6", "Peak RSS of `connectors serve` under load 1", results, _memory),
        _row("7", "Console search on 1 million events (SQLite)", results, _console),
        _row("8", "Attacks: forged 1 MiB LeadShark bodies, 64 slow clients", results, _attacks),
    ]
    return "\n".join(lines) + "\n"


def _loadavg(values: list[float]) -> str:
    return " ".join(f"{v:.2f}" for v in values) if values else "n/a"


def _row(number: str, title: str, results: dict[str, Any], render: Any) -> str:
    key = render.__name__.lstrip("_")
    section = results.get(key)
    if section is None:
        return f"| {number} | {title} | not run | | |"
    if "error" in section:
        return f"| {number} | {title} | failed: {section['error']} | | error |"
    result, target, met = render(section)
    return f"| {number} | {title} | {result} | {target} | {met} |"


def _ingest(s: dict[str, Any]) -> tuple[str, str, str]:
    lr, bare, only = s["leadrelay"], s["bare_flask"], s["receiver_only"]
    check = s["commit_check"]
    committed = "all" if check["every_2xx_committed"] else "NOT all"
    result = (
        f"{_n(lr['req_per_s'])} req/s (p50 {lr['p50_ms']} ms, p99 {lr['p99_ms']} ms) vs bare "
        f"Flask {_n(bare['req_per_s'])} req/s (p50 {bare['p50_ms']} ms, p99 "
        f"{bare['p99_ms']} ms): **{s['ratio_to_bare_flask']:.2f}x**; {committed} "
        f"{_n(check['answered_2xx'])} 2xx found in the DB. Server CPU per event "
        f"{_n(lr['cpu_us_per_request'])} µs vs bare Flask {_n(bare['cpu_us_per_request'])} µs "
        f"per request: **{s['cpu_ratio_to_bare_flask']:.2f}x** "
        f"({'met' if s['cpu_met'] else 'not met'}). Diagnostic, the receiver with the commit "
        f"left out: {_n(only['req_per_s'])} req/s = {s['receiver_only_ratio_to_bare_flask']:.2f}x,"
        f" {_n(only['cpu_us_per_request'])} µs CPU per event = "
        f"{s['receiver_only_cpu_ratio_to_bare_flask']:.2f}x"
    )
    target = (
        f"≥ {s['target_ratio']}x bare Flask, p99 < {s['target_p99_ms']:g} ms, every 2xx "
        f"committed; CPU per event ≤ {s['target_cpu_ratio']:g}x bare Flask's per request"
    )
    return result, target, _met(s)


def _sustained(s: dict[str, Any]) -> tuple[str, str, str]:
    vs_bare = (
        f" = **{s['ratio_to_bare_flask']:.2f}x** bare Flask" if "ratio_to_bare_flask" in s else ""
    )
    cpu = s.get("delivery_cpu", {})
    result = (
        f"{s['duration_s']:.0f} s: accepted {_n(s['accepted_per_s'])}/s{vs_bare}, delivered "
        f"{_n(s['delivered_per_s'])}/s; backlog at end {_n(s['backlog_end'])} (max "
        f"{_n(s['backlog_max'])}, trend {s['backlog_trend_per_s']:+.1f}/s), cleared "
        f"{_drain(s['drain_after_load_s'])} after the load stopped; ingest p50 "
        f"{s['ingest_p50_ms']} ms, p99 {s['ingest_p99_ms']} ms; server CPU "
        f"{_n(s['cpu_us_per_accepted_event'])} µs per event (receipt and delivery)"
    )
    if cpu:
        result += (
            f"; delivery worker alone {_n(cpu['cpu_us_per_row'])} µs CPU per CSV row "
            f"({_n(cpu['rows'])} rows at {_n(cpu['rows_per_s'])}/s)"
        )
    target = "≥ 0.35x bare Flask; backlog does not grow (cleared ≤ 5 s after the load)"
    return result, target, _met(s)


def _drain(seconds: float | None) -> str:
    return "not within 120 s" if seconds is None else f"in {seconds:g} s"


def _delivery(s: dict[str, Any]) -> tuple[str, str, str]:
    runs = s["by_worker_processes"]
    parts = [
        f"{n} worker process{'es' if n != '1' else ''}: {_n(r['contacts_per_s'])} contacts/s "
        f"= {r['fraction_of_rate_limit_bound']:.0%} of the bound ({r['calls_per_s']} calls/s, "
        f"{r['calls_429']} x 429, worker's own time {r['worker_ms_per_call']:g} ms per call)"
        for n, r in runs.items()
    ]
    result = (
        f"{_n(s['events'])} leads, bound {_n(s['bound_per_s'])}/s. " + "; ".join(parts) + ". "
        f"Deploy default ({s['worker_processes']} processes): **{_n(s['contacts_per_s'])} "
        f"contacts/s = {s['fraction_of_rate_limit_bound']:.0%}**, "
        f"{s['times_one_request_per_lead']}x one request per lead "
        f"({s['one_request_per_lead_per_s']:g}/s)"
    )
    return result, f"≥ {s['target_fraction']:.0%} of the bound", _met(s)


def _latency(s: dict[str, Any]) -> tuple[str, str, str]:
    batching = s["batching_connector"]
    result = (
        f"webhook connector (a call per event): p50 **{s['p50_ms']} ms**, p99 "
        f"**{s['p99_ms']} ms** ({_n(s['delivered'])} of {_n(s['accepted'])} delivered); "
        f"batching connector (HubSpot): p50 {batching['p50_ms']} ms, p99 "
        f"{batching['p99_ms']} ms"
    )
    target = f"p50 < {s['target_p50_ms']:g} ms, p99 < {s['target_p99_ms']:g} ms"
    return result, target, _met(s)


def _scaleout(s: dict[str, Any]) -> tuple[str, str, str]:
    rates = ", ".join(f"{k}: {v:g}/s" for k, v in s["deliveries_per_s"].items())
    result = (
        f"{rates} → **{s['ratio_4_to_1']}x** with 4 workers ({s['ratio_2_to_1']}x with 2); "
        f"{s['duplicate_deliveries']} duplicate deliveries"
    )
    return result, "report", "n/a"


def _memory(s: dict[str, Any]) -> tuple[str, str, str]:
    parts = " + ".join(f"{p['role']} {p['peak_rss_mb']:g}" for p in s["processes"])
    result = (
        f"**{s['peak_rss_mb']:g} MB** ({parts} MB) at {_n(s['load_req_per_s'])} req/s; "
        f"{s['idle_rss_mb']:g} MB idle"
    )
    return result, "report", "n/a"


def _console(s: dict[str, Any]) -> tuple[str, str, str]:
    t = s["timings"]
    searches = ", ".join(
        f"{name} {t[name]['p95_ms']:g}"
        for name in ("email", "lead_key", "provider_lead_id", "event_id", "miss")
    )
    result = (
        f"{_n(s['events'])} events: search p95 **{s['search_p95_ms']:g} ms** ({searches} ms); "
        f"newest page {t['newest_page']['p95_ms']:g} ms, deep keyset page "
        f"{t['deep_keyset_page']['p95_ms']:g} ms, filtered page "
        f"{t['source_status_page']['p95_ms']:g} ms; overview counts "
        f"{t['overview_counts']['p95_ms']:g} ms, chart {t['overview_chart']['p95_ms']:g} ms"
    )
    return result, f"search < {s['target_ms']:g} ms", _met(s)


def _attacks(s: dict[str, Any]) -> tuple[str, str, str]:
    forged = ", ".join(
        f"{shape} {r['median_ms']:g} ms ({r['server_cpu_ms']:g} ms CPU)"
        for shape, r in s["forged_1mib"].items()
    )
    slow = "; ".join(
        f"{label}: /healthz {s[key]['healthz']['max_ms']:g} ms, webhook "
        f"{s[key]['webhook']['max_ms']:g} ms"
        for label, key in (("serve", "slow_clients_serve"), ("deploy", "slow_clients_deploy"))
    )
    cpu = ", ".join(
        f"{worker} {r['server_cpu_us_per_request']:,} µs ({_n(r['req_per_s'])} req/s)"
        for worker, r in s["cpu_per_request"].items()
    )
    result = (
        f"forged 1 MiB refused (median): {forged}; with 64 slow clients (max): {slow}; "
        f"server CPU per accepted request: {cpu}"
    )
    target = (
        f"refusal < {s['target_refusal_ms']:g} ms of server CPU, answers < "
        f"{s['target_slow_client_ms']:g} ms under slow clients"
    )
    return result, target, _met(s)
