"""`connectors events`, `deliveries`, `replay` and `enable`: what is stored, and acting on it.

None of them creates a database: a missing one is an error naming the fix.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from leadrelay.core.app.cli_common import (
    CONFIG_OPTION,
    existing_store,
    known_connector,
    load,
    log_options,
    when,
)
from leadrelay.core.app.cli_output import plural, print_rows
from leadrelay.core.app.config import Config
from leadrelay.core.schema import LEAD_EVENT_TYPES
from leadrelay.core.store.store import DeliveryFilter, EventFilter


@click.command()
@CONFIG_OPTION
@click.option("--status", type=click.Choice(["accepted", "ignored", "quarantined", "replayed"]))
@click.option("--source")
@click.option("--since", help="ISO time or duration ago (2h, 7d).")
@click.option("--until", help="ISO time or duration ago.")
@click.option("--limit", default=50, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
@log_options
def events(
    config_path: str | None,
    status: str | None,
    source: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List received events, newest first."""
    store = existing_store(load(config_path))
    rows = store.list_events(
        EventFilter(status=status, source=source, since=when(since), until=when(until), limit=limit)
    )
    print_rows(
        rows,
        [
            "event_id",
            "received_at",
            "source",
            "status",
            "type",
            "provider_event",
            "lead_key",
            "reason",
            "identity_conflict",
        ],
        as_json,
    )


def _attempt_lines(attempt_log: list[dict[str, Any]]) -> list[str]:
    lines = []
    for a in attempt_log:
        when = a["started_at"].strftime("%Y-%m-%d %H:%M:%S")
        error = f": {a['error']}" if a.get("error") else ""
        lines.append(f"    attempt {a['number']} at {when} by {a['worker']}: {a['outcome']}{error}")
    return lines or ["    (no attempts yet)"]


@click.command()
@CONFIG_OPTION
@click.option("--status", type=click.Choice(["pending", "delivered", "skipped", "dead"]))
@click.option("--source")
@click.option("--connector")
@click.option("--event", "event_id")
@click.option("--id", "delivery_id", type=int, help="One delivery, with its full last error.")
@click.option("--since", help="ISO time or duration ago (2h, 7d).")
@click.option("--until", help="ISO time or duration ago.")
@click.option("--limit", default=50, show_default=True, type=int)
@click.option("--attempts", "with_attempts", is_flag=True, help="Show each try under its row.")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
@log_options
def deliveries(
    config_path: str | None,
    status: str | None,
    source: str | None,
    connector: str | None,
    event_id: str | None,
    delivery_id: int | None,
    since: str | None,
    until: str | None,
    limit: int,
    with_attempts: bool,
    as_json: bool,
) -> None:
    """List deliveries and their state; `waiting` says what a pending one waits for (a
    disabled connector, or the lead's earlier delivery, which goes first)."""
    config = load(config_path)
    store = existing_store(config)
    rows = store.list_deliveries(
        DeliveryFilter(
            status=status,
            source=source,
            connector=connector,
            event_id=event_id,
            delivery_id=delivery_id,
            since=when(since),
            until=when(until),
            limit=limit,
        )
    )
    if delivery_id is not None and not rows:
        raise click.ClickException(f"no delivery with id {delivery_id}")
    runtime_disabled = store.disabled_connectors()
    for row in rows:
        options = config.connectors.get(row["connector"])
        row["waiting"] = None
        if row["status"] == "pending":
            if options is None:
                row["waiting"] = "connector not in config"
            elif not options.enabled:
                row["waiting"] = "connector disabled in config"
            elif row["connector"] in runtime_disabled:
                row["waiting"] = f"connector disabled: {runtime_disabled[row['connector']]}"
            elif row["waits_for"] is not None:
                row["waiting"] = f"for delivery {row['waits_for']} (same lead, sent first)"
        if with_attempts or delivery_id is not None:
            row["attempt_log"] = store.attempts_of(row["id"])
    if delivery_id is not None and not as_json:
        [row] = rows
        for key in ("id", "event_id", "connector", "status", "attempts", "next_attempt_at"):
            click.echo(f"{key}: {row[key]}")
        if row["waiting"]:
            click.echo(f"waiting: {row['waiting']}")
        click.echo(f"last_error: {row['last_error'] or '-'}")
        click.echo("attempts:")
        click.echo("\n".join(_attempt_lines(row["attempt_log"])))
        return
    columns = [
        "id",
        "event_id",
        "connector",
        "status",
        "attempts",
        "next_attempt_at",
        "waiting",
        "last_error",
    ]
    details = (
        {i: _attempt_lines(row["attempt_log"]) for i, row in enumerate(rows)}
        if with_attempts
        else None
    )
    print_rows(rows, columns, as_json, details)


@click.command()
@CONFIG_OPTION
@click.option("--event", "event_ids", multiple=True, help="An event id (repeatable).")
@click.option("--connector", help="Only this connector's deliveries.")
@click.option("--dead", "dead_only", is_flag=True, help="Only dead deliveries.")
@click.option("--since", help="ISO time or duration ago (2h, 7d).")
@click.option("--until", help="ISO time or duration ago.")
@click.option("--include-delivered", is_flag=True, help="Also resend deliveries that succeeded.")
@click.option(
    "--backfill",
    is_flag=True,
    help="With --connector: create deliveries for stored leads it never got (a connector "
    "added or enabled later). Narrow with --since, --source, --type.",
)
@click.option("--source", help="With --backfill: only events of this source.")
@click.option("--type", "event_type", help="With --backfill: only this lead event type.")
@log_options
def replay(
    config_path: str | None,
    event_ids: tuple[str, ...],
    connector: str | None,
    dead_only: bool,
    since: str | None,
    until: str | None,
    include_delivered: bool,
    backfill: bool,
    source: str | None,
    event_type: str | None,
) -> None:
    """Queue deliveries again; quarantined events are parsed again with the current code.

    Examples: `replay --event evt_…`, `replay --dead --connector crm`,
    `replay --since 2h` (dead and skipped deliveries and quarantined events of the last 2h),
    `replay --connector crm --backfill --since 30d` (leads crm never got).
    """
    config = load(config_path)
    if connector is not None:
        known_connector(config, connector)
    if backfill:
        _backfill(config, connector, since, until, source, event_type, event_ids)
        return
    if source or event_type:
        raise click.UsageError("--source and --type go with --backfill")
    if not (event_ids or dead_only or since or until):
        raise click.UsageError(
            "say what to replay: --event ID, --dead, --since/--until, "
            "or --connector NAME --backfill"
        )
    from leadrelay.core.app.replay import reparse_quarantined

    store = existing_store(config)
    statuses = ["dead"] if dead_only else ["dead", "skipped"]
    if include_delivered:
        statuses.append("delivered")
    quarantined: list[dict[str, Any]] = []
    for event_id in event_ids:
        stored = store.get_event(event_id)
        if stored is None:
            raise click.ClickException(f"no event {event_id} (check the id: `connectors events`)")
        if stored["status"] == "quarantined":
            quarantined.append(stored)
    if (since or until) and not event_ids and not dead_only:
        for row in store.list_events(
            EventFilter(status="quarantined", since=when(since), until=when(until), limit=100_000)
        ):
            stored = store.get_event(row["event_id"])
            if stored is not None:
                quarantined.append(stored)
    with click.progressbar(
        quarantined, label="re-parsing quarantined events", file=sys.stderr
    ) as bar:
        outcomes = [reparse_quarantined(config, store, stored) for stored in bar]
    for outcome in outcomes:
        click.echo(outcome.message)
    requeued = store.requeue(
        event_ids=list(event_ids) or None,
        connector=connector,
        statuses=statuses,
        since=when(since),
        until=when(until),
    )
    click.echo(f"{plural(requeued, 'delivery', 'deliveries')} queued again")
    if requeued == 0 and connector is not None and not event_ids:
        existing = store.list_deliveries(DeliveryFilter(connector=connector, limit=1))
        if not existing:
            click.echo(
                f"{connector} has no deliveries at all; to send it the leads stored before "
                f"it was added or enabled: connectors replay --connector {connector} --backfill"
            )
    stuck = [outcome.message for outcome in outcomes if outcome.stuck]
    if stuck:
        raise click.ClickException(
            f"{len(stuck)} event(s) parse but cannot be stored: " + "; ".join(stuck)
        )


def _backfill(
    config: Config,
    connector: str | None,
    since: str | None,
    until: str | None,
    source: str | None,
    event_type: str | None,
    event_ids: tuple[str, ...],
) -> None:
    from leadrelay.core.app.replay import backfill

    if connector is None:
        raise click.UsageError("--backfill needs --connector NAME")
    if until or event_ids:
        raise click.UsageError("--backfill takes --since, --source and --type only")
    if source is not None and source not in config.sources:
        raise click.ClickException(
            f"no source named {source!r} in {config.path} (sources: {', '.join(config.sources)})"
        )
    if event_type is not None and event_type not in LEAD_EVENT_TYPES:
        raise click.ClickException(
            f"unknown event type {event_type!r}; one of: {', '.join(LEAD_EVENT_TYPES)}"
        )
    store = existing_store(config)
    created = backfill(
        config, store, connector, since=when(since), source=source, event_type=event_type
    )
    click.echo(f"{plural(created, 'delivery', 'deliveries')} created for {connector}")
    if created and not config.connectors[connector].enabled:
        click.echo(f"{connector} is disabled in config: they wait until it is enabled")


@click.command()
@CONFIG_OPTION
@click.argument("connector")
@log_options
def enable(config_path: str | None, connector: str) -> None:
    """Resume a connector that was disabled at run time (e.g. after a 410 Gone)."""
    config = load(config_path)
    known_connector(config, connector)
    store = existing_store(config)
    reason = store.disabled_connectors().get(connector)
    in_config = config.connectors[connector].enabled
    if reason is None:
        click.echo(f"{connector} was not disabled at run time; nothing to do")
    else:
        store.set_connector_disabled(connector, None)
        click.echo(
            f"{connector} enabled (it was disabled: {reason}); its pending deliveries resume"
        )
        dead = store.list_deliveries(DeliveryFilter(connector=connector, status="dead", limit=1))
        if dead:
            click.echo(
                "the delivery that got the refusal is dead; send it again with: "
                f"connectors replay --dead --connector {connector}"
            )
    if not in_config:
        click.echo(
            f"note: {connector} has `enabled: false` in {config.path}; "
            "it sends nothing until that is changed"
        )
