"""`connectors …`: run, inspect and operate leadrelay.

Every command takes `--config` (else $LEADRELAY_CONFIG, else ./connectors.yaml), exits
non-zero on failure, and never prints a secret.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import click

from leadrelay.core import logs
from leadrelay.core.config import Config, ConfigError, load_config, parse_duration
from leadrelay.core.store import DeliveryFilter, EventFilter, Store

CONFIG_OPTION = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="YAML config (default: $LEADRELAY_CONFIG or ./connectors.yaml).",
)


def _load(config_path: str | None) -> Config:
    try:
        return load_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(f"config error: {exc}") from None


def _store(config: Config) -> Store:
    store = Store(config.store)
    try:
        store.migrate()
    except Exception as exc:
        raise click.ClickException(
            f"store {config.masked_store_url()} unavailable: {type(exc).__name__}: "
            f"{(str(exc).splitlines() or [''])[0]}"
        ) from None
    return store


def _when(value: str | None) -> datetime | None:
    """An ISO timestamp, or a duration meaning "that long ago" (`2h`, `7d`)."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except ValueError:
        pass
    try:
        return datetime.now(UTC) - parse_duration(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is neither an ISO time nor a duration like 2h"
        ) from None


def _print_rows(rows: Sequence[dict[str, Any]], columns: Sequence[str], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(list(rows), default=_json_default, indent=2))
        return
    if not rows:
        click.echo("(none)")
        return
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)))
    for r in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def _cell(value: Any, limit: int = 60) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    text = str(value).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(type(value).__name__)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--log-level", default="INFO", show_default=True, help="DEBUG, INFO, WARNING…")
@click.option("--plain-logs", is_flag=True, help="Human-readable logs instead of JSON lines.")
def main(log_level: str, plain_logs: bool) -> None:
    """leadrelay: signed lead webhooks in, HubSpot/Salesforce/Slack/CSV/webhooks out."""
    logs.configure(log_level, json_lines=not plain_logs)


@main.command()
@CONFIG_OPTION
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--threads", default=8, show_default=True, type=int, help="Request threads.")
@click.option("--no-worker", is_flag=True, help="Only receive; run `connectors worker` apart.")
def serve(config_path: str | None, host: str, port: int, threads: int, no_worker: bool) -> None:
    """Run the receiver (and the delivery worker) under gunicorn."""
    from leadrelay.core.server import serve as run_server

    config = _load(config_path)
    _store(config).close()
    run_server(config, host=host, port=port, threads=threads, run_worker=not no_worker)


@main.command()
@CONFIG_OPTION
def worker(config_path: str | None) -> None:
    """Run only the delivery worker (several may run at once on PostgreSQL)."""
    from leadrelay.core.worker import Worker

    config = _load(config_path)
    store = _store(config)
    delivery_worker = Worker(config, store)

    def _stop(_signum: int, _frame: Any) -> None:
        delivery_worker._stopping.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    delivery_worker.start()
    delivery_worker.wait()
    delivery_worker.stop()
    store.close()


@main.command()
@CONFIG_OPTION
def migrate(config_path: str | None) -> None:
    """Create or upgrade the database schema."""
    config = _load(config_path)
    _store(config).close()
    click.echo(f"schema up to date at {config.masked_store_url()}")


@main.command()
@CONFIG_OPTION
@click.option("--status", type=click.Choice(["accepted", "ignored", "quarantined", "replayed"]))
@click.option("--source")
@click.option("--since", help="ISO time or duration ago (2h, 7d).")
@click.option("--until", help="ISO time or duration ago.")
@click.option("--limit", default=50, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
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
    store = _store(_load(config_path))
    rows = store.list_events(
        EventFilter(
            status=status, source=source, since=_when(since), until=_when(until), limit=limit
        )
    )
    _print_rows(
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
        ],
        as_json,
    )


@main.command()
@CONFIG_OPTION
@click.option("--status", type=click.Choice(["pending", "delivered", "skipped", "dead"]))
@click.option("--source")
@click.option("--connector")
@click.option("--event", "event_id")
@click.option("--since", help="ISO time or duration ago (2h, 7d).")
@click.option("--until", help="ISO time or duration ago.")
@click.option("--limit", default=50, show_default=True, type=int)
@click.option("--attempts", "with_attempts", is_flag=True, help="Include each try.")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
def deliveries(
    config_path: str | None,
    status: str | None,
    source: str | None,
    connector: str | None,
    event_id: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    with_attempts: bool,
    as_json: bool,
) -> None:
    """List deliveries and their state; `waiting` shows a disabled connector's backlog."""
    config = _load(config_path)
    store = _store(config)
    rows = store.list_deliveries(
        DeliveryFilter(
            status=status,
            source=source,
            connector=connector,
            event_id=event_id,
            since=_when(since),
            until=_when(until),
            limit=limit,
        )
    )
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
        if with_attempts:
            row["attempt_log"] = store.attempts_of(row["id"])
    _print_rows(
        rows,
        [
            "id",
            "event_id",
            "connector",
            "status",
            "attempts",
            "next_attempt_at",
            "waiting",
            "last_error",
        ],
        as_json,
    )


@main.command()
@CONFIG_OPTION
@click.option("--event", "event_ids", multiple=True, help="An event id (repeatable).")
@click.option("--connector", help="Only this connector's deliveries.")
@click.option("--dead", "dead_only", is_flag=True, help="Only dead deliveries.")
@click.option("--since", help="ISO time or duration ago (2h, 7d).")
@click.option("--until", help="ISO time or duration ago.")
@click.option("--include-delivered", is_flag=True, help="Also resend deliveries that succeeded.")
def replay(
    config_path: str | None,
    event_ids: tuple[str, ...],
    connector: str | None,
    dead_only: bool,
    since: str | None,
    until: str | None,
    include_delivered: bool,
) -> None:
    """Queue deliveries again; quarantined events are parsed again with the current code.

    Examples: `replay --event evt_…`, `replay --dead --connector crm`,
    `replay --since 2h` (dead and skipped deliveries and quarantined events of the last 2h).
    """
    from leadrelay.core.replay import reparse_quarantined

    if not (event_ids or dead_only or since or until):
        raise click.UsageError("say what to replay: --event ID, --dead, or --since/--until")
    config = _load(config_path)
    store = _store(config)
    statuses = ["dead"] if dead_only else ["dead", "skipped"]
    if include_delivered:
        statuses.append("delivered")
    quarantined: list[dict[str, Any]] = []
    for event_id in event_ids:
        stored = store.get_event(event_id)
        if stored is None:
            raise click.ClickException(f"no event {event_id}")
        if stored["status"] == "quarantined":
            quarantined.append(stored)
    if (since or until) and not event_ids and not dead_only:
        for row in store.list_events(
            EventFilter(status="quarantined", since=_when(since), until=_when(until), limit=100_000)
        ):
            stored = store.get_event(row["event_id"])
            if stored is not None:
                quarantined.append(stored)
    with click.progressbar(
        quarantined, label="re-parsing quarantined events", file=sys.stderr
    ) as bar:
        messages = [reparse_quarantined(config, store, stored) for stored in bar]
    for message in messages:
        click.echo(message)
    requeued = store.requeue(
        event_ids=list(event_ids) or None,
        connector=connector,
        statuses=statuses,
        since=_when(since),
        until=_when(until),
    )
    click.echo(f"{requeued} deliveries queued again")


@main.command()
@CONFIG_OPTION
@click.argument("connector")
def enable(config_path: str | None, connector: str) -> None:
    """Resume a connector that was disabled at run time (e.g. after a 410 Gone)."""
    config = _load(config_path)
    if connector not in config.connectors:
        raise click.ClickException(f"no connector named {connector!r} in {config.path}")
    store = _store(config)
    store.set_connector_disabled(connector, None)
    click.echo(f"{connector} enabled; its pending deliveries resume")


@main.command()
@CONFIG_OPTION
@click.option("--check-connections", is_flag=True, help="Also log in to each destination.")
def validate(config_path: str | None, check_connections: bool) -> None:
    """Check the config (and optionally each connector's credentials)."""
    from leadrelay.connectors.base import ConnectionCheckFailed
    from leadrelay.core.worker import build_connectors

    config = _load(config_path)
    click.echo(
        f"{config.path}: OK ({len(config.sources)} sources, {len(config.connectors)} connectors)"
    )
    for name in config.sources_without_secrets():
        click.echo(f"warning: source {name} has no secrets and accepts unsigned requests")
    if not check_connections:
        return
    failed = False
    for name, connector in build_connectors(config).items():
        try:
            connector.check_connection()
            click.echo(f"{name} ({connector.type_name}): connection OK")
        except ConnectionCheckFailed as exc:
            failed = True
            click.echo(f"{name} ({connector.type_name}): FAILED: {exc}")
        finally:
            connector.close()
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
