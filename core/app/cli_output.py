"""How the CLI prints: tables, counted nouns, and `connectors test` results."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import click

from leadrelay.core.app.sample_run import SampleResult


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """`1 connector`, `2 connectors`, `0 deliveries` (give `nouns` when not noun + s)."""
    return f"{count} {noun if count == 1 else (nouns or noun + 's')}"


def json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(type(value).__name__)


def cell(value: Any, limit: int | None = 60) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    text = str(value).replace("\n", " ")
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def table(rows: Sequence[Sequence[str]], headers: Sequence[str], indent: str = "") -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    return [indent + line.rstrip() for line in lines]


def print_rows(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str],
    as_json: bool,
    details: dict[int, list[str]] | None = None,
) -> None:
    """A table of `rows` (or JSON); `details[i]` lines are printed under row i."""
    if as_json:
        click.echo(json.dumps(list(rows), default=json_default, indent=2))
        return
    if not rows:
        click.echo("(none)")
        return
    lines = table([[cell(row.get(c)) for c in columns] for row in rows], columns)
    click.echo(lines[0])
    for i, line in enumerate(lines[1:]):
        click.echo(line)
        for extra in (details or {}).get(i, []):
            click.echo(extra)


def print_sample_results(results: Sequence[SampleResult], show_requests: bool, live: bool) -> None:
    """One block per sample: its verdict and lead, then a table of its connectors."""
    for r in results:
        verdict = click.style("ok", fg="green") if r.ok else click.style("FAILED", fg="red")
        click.echo(f"{r.source}/{r.sample}: {r.status} [{verdict}]")
        if r.message:
            click.echo(f"  {r.message}")
        if r.type:
            lead = r.lead or {}
            who = " · ".join(
                str(lead[k]) for k in ("email", "full_name", "title", "company") if lead.get(k)
            )
            click.echo(f"  {r.provider_event} → {r.type}: {who or lead.get('key', '')}")
        if r.connectors:
            rows = [[c.connector, c.type, c.outcome, cell(c.detail, 70)] for c in r.connectors]
            for line in table(rows, ["connector", "type", "result", "detail"], indent="  "):
                click.echo(line)
        if show_requests:
            for c in r.connectors:
                if c.request is None:
                    continue
                click.echo(f"  {c.connector} request:")
                text = json.dumps(c.request, indent=2, ensure_ascii=False, default=json_default)
                click.echo("\n".join("      " + line for line in text.splitlines()))
        click.echo()
    failed = sum(not r.ok for r in results)
    outcomes = [c for r in results for c in r.connectors]
    sent = sum(c.outcome in ("would send", "delivered") for c in outcomes)
    skipped = sum(c.skipped for c in outcomes)
    broken = sum(not c.ok for c in outcomes)
    mode = "live" if live else "dry run"
    click.echo(
        f"{plural(len(results), 'payload')}: {len(results) - failed} ok, {failed} failed; "
        f"connectors: {sent} {'delivered' if live else 'would send'}, {skipped} skipped, "
        f"{broken} failed ({mode})"
    )
    if not show_requests and any(c.request is not None for c in outcomes):
        click.echo("(--show-requests prints each request body; --json prints everything)")
