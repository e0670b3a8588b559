"""`connectors …`: run, inspect and operate leadrelay.

Every command takes `--config` (else $LEADRELAY_CONFIG, else ./connectors.yaml), exits
non-zero on failure, and never prints a secret.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import click

from leadrelay.core import logs
from leadrelay.core.app.config import Config, ConfigError, load_config
from leadrelay.core.durations import parse_duration
from leadrelay.core.ingest.settings import unsigned_sources
from leadrelay.core.store.store import DeliveryFilter, EventFilter, Store

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
    from leadrelay.core.app.server import serve as run_server

    config = _load(config_path)
    _store(config).close()
    try:
        run_server(config, host=host, port=port, threads=threads, run_worker=not no_worker)
    except ConfigError as exc:
        raise click.ClickException(f"config error: {exc}") from None


@main.command()
@CONFIG_OPTION
@click.option(
    "--metrics-port",
    type=int,
    default=None,
    help="Serve this worker's Prometheus metrics (delivery counters, latency) on this port.",
)
@click.option("--metrics-host", default="127.0.0.1", show_default=True)
def worker(config_path: str | None, metrics_port: int | None, metrics_host: str) -> None:
    """Run only the delivery worker (several may run at once on PostgreSQL)."""
    from leadrelay.core.app.housekeeping import Housekeeping
    from leadrelay.core.delivery.worker import Worker

    config = _load(config_path)
    store = _store(config)
    delivery_worker = Worker(config, store)
    housekeeping = Housekeeping(config, store)

    def _stop(_signum: int, _frame: Any) -> None:
        delivery_worker.request_stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if metrics_port is not None:
        from prometheus_client import REGISTRY, start_http_server

        from leadrelay.core.metrics import QueueCollector
        from leadrelay.core.store.store import utcnow

        REGISTRY.register(QueueCollector(lambda: store.queue_stats(utcnow())))
        start_http_server(metrics_port, addr=metrics_host)
    delivery_worker.start()
    housekeeping.start()
    delivery_worker.wait()
    housekeeping.stop()
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
    from leadrelay.core.app.replay import reparse_quarantined

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


@main.command("test")
@CONFIG_OPTION
@click.option("--source", "source_names", multiple=True, help="Only these sources (repeatable).")
@click.option("--event", "event_names", multiple=True, help="Only these provider events.")
@click.option(
    "--payload",
    "payload_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Your own payload or captured-request file(s) instead of the bundled samples "
    "(needs exactly one --source).",
)
@click.option("--live", is_flag=True, help="Really send to the connectors (default: dry run).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable results.")
@click.option("--show-requests/--hide-requests", default=True, help="Print what would be sent.")
def test_command(
    config_path: str | None,
    source_names: tuple[str, ...],
    event_names: tuple[str, ...],
    payload_files: tuple[str, ...],
    live: bool,
    as_json: bool,
    show_requests: bool,
) -> None:
    """Run sample payloads through verify → normalize → route → every matching connector.

    Dry run by default: nothing is stored or sent; each connector prints exactly what it
    would send. Exits 1 if any payload fails verification or parsing, or (with --live) any
    connector does not deliver.
    """
    from pathlib import Path

    from leadrelay.core.app.sample_run import run_sample
    from leadrelay.core.app.samples import bundled_sample_files, event_name_of, load_request
    from leadrelay.core.delivery.worker import build_connectors

    config = _load(config_path)
    unknown = [s for s in source_names if s not in config.sources]
    if unknown:
        raise click.UsageError(f"unknown source(s): {', '.join(unknown)}")
    sources = list(source_names) or list(config.sources)
    if payload_files and len(sources) != 1:
        raise click.UsageError(
            "--payload needs exactly one --source (whose provider and secret apply)"
        )
    connectors = build_connectors(config)
    plan: list[tuple[str, Path]] = []
    for source in sources:
        provider = config.sources[source].provider
        files = [Path(p) for p in payload_files] or bundled_sample_files(provider)
        plan += [
            (source, f)
            for f in files
            if not event_names or payload_files or event_name_of(f) in event_names
        ]
    if not plan:
        without_samples = [
            s for s in sources if not bundled_sample_files(config.sources[s].provider)
        ]
        hint = f" (no bundled samples for {', '.join(without_samples)}: pass --payload FILE)"
        raise click.UsageError(
            "no sample payloads matched the given --source/--event"
            + (hint if without_samples else "")
        )
    results = []
    with click.progressbar(
        plan, label="running samples", file=sys.stderr, hidden=len(plan) < 20 or as_json
    ) as bar:
        for source, path in bar:
            secrets = config.sources[source].secret_values()
            try:
                request = load_request(
                    config.sources[source].adapter, path, secrets[0] if secrets else None
                )
            except ValueError as exc:
                raise click.ClickException(str(exc)) from None
            results.append(run_sample(config, connectors, source, request, live=live))
    for connector in connectors.values():
        connector.close()
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in results], indent=2, default=_json_default))
    else:
        _print_sample_results(results, show_requests, live)
    if not all(r.ok for r in results):
        sys.exit(1)


def _print_sample_results(results: Sequence[Any], show_requests: bool, live: bool) -> None:
    for r in results:
        verdict = click.style("ok", fg="green") if r.ok else click.style("FAILED", fg="red")
        click.echo(f"{r.source}/{r.sample}: {r.status} [{verdict}]")
        if r.message:
            click.echo(f"  {r.message}")
        if r.type:
            lead = r.lead or {}
            who = " · ".join(
                str(lead[k]) for k in ("key", "full_name", "title", "company") if lead.get(k)
            )
            click.echo(f"  {r.provider_event} → {r.type}: {who}")
        for c in r.connectors:
            state = "" if c.enabled else ", disabled in config"
            click.echo(f"  → {c.connector} ({c.type}{state}): {c.outcome} {c.detail}".rstrip())
            if show_requests and c.request is not None:
                text = json.dumps(c.request, indent=2, ensure_ascii=False, default=_json_default)
                click.echo("\n".join("      " + line for line in text.splitlines()))
    failed = sum(not r.ok for r in results)
    mode = "live" if live else "dry run"
    click.echo(f"\n{len(results)} payloads, {len(results) - failed} ok, {failed} failed ({mode})")


@main.command()
@CONFIG_OPTION
@click.argument("source")
@click.argument("event", required=False)
@click.option(
    "--url", default="http://127.0.0.1:8000", show_default=True, help="Receiver base URL."
)
@click.option(
    "--get", "send_get", is_flag=True, help="Send the GET a provider's test button sends."
)
@click.option(
    "--payload",
    "payload_file",
    type=click.Path(exists=True, dir_okay=False),
    help="Your own payload or captured-request file instead of a bundled sample "
    "(needed for hmac and standard-webhooks sources).",
)
def trigger(
    config_path: str | None,
    source: str,
    event: str | None,
    url: str,
    send_get: bool,
    payload_file: str | None,
) -> None:
    """POST a correctly signed sample (or --payload) of SOURCE to a running receiver."""
    from pathlib import Path

    import requests

    from leadrelay.core.app.samples import bundled_sample_files, event_name_of, load_request

    config = _load(config_path)
    if source not in config.sources:
        raise click.UsageError(f"unknown source {source!r}; one of: {', '.join(config.sources)}")
    target = f"{url.rstrip('/')}/webhooks/{source}"
    try:
        if send_get:
            response = requests.get(target, timeout=10)
        else:
            source_config = config.sources[source]
            provider = source_config.provider
            samples = bundled_sample_files(provider)
            chosen = [p for p in samples if event is None or event_name_of(p) == event]
            if payload_file:
                chosen = [Path(payload_file)]
            elif not samples:
                raise click.UsageError(f"no bundled {provider} samples: pass --payload FILE")
            elif not chosen:
                names = ", ".join(event_name_of(p) for p in samples)
                raise click.UsageError(f"no {provider} sample for {event!r}; one of: {names}")
            secrets = source_config.secret_values()
            try:
                request = load_request(
                    source_config.adapter, chosen[0], secrets[0] if secrets else None
                )
            except ValueError as exc:
                raise click.ClickException(str(exc)) from None
            response = requests.post(target, data=request.body, headers=request.headers, timeout=10)
    except requests.RequestException as exc:
        raise click.ClickException(f"could not reach {target}: {type(exc).__name__}") from None
    click.echo(f"{response.status_code} {response.text.strip()}")
    if not response.ok:
        sys.exit(1)


@main.command()
@CONFIG_OPTION
@click.option("--check-connections", is_flag=True, help="Also log in to each destination.")
def validate(config_path: str | None, check_connections: bool) -> None:
    """Check the config (and optionally each connector's credentials)."""
    from leadrelay.core.delivery.contract import ConnectionCheckFailed
    from leadrelay.core.delivery.worker import build_connectors

    config = _load(config_path)
    click.echo(
        f"{config.path}: OK ({len(config.sources)} sources, {len(config.connectors)} connectors)"
    )
    for name in unsigned_sources(config):
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


@main.group()
def console() -> None:
    """The operator console (web UI at /console/)."""


@console.command("hash-password")
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from stdin instead of a prompt."
)
def hash_password(password_stdin: bool) -> None:
    """Print an argon2 hash of a password, for `console.users` in the config."""
    from leadrelay.core.app.console.auth import hash_password as argon2_hash

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < 8:
        raise click.ClickException("use a password of at least 8 characters")
    click.echo(argon2_hash(password))


def entry() -> None:
    """Console-script entry: unexpected errors become one line, not a traceback."""
    try:
        main(standalone_mode=True)
    except Exception as exc:  # click handles its own errors and exits before this
        if os.environ.get("LEADRELAY_DEBUG"):
            raise
        click.echo(
            f"error: {type(exc).__name__}: {exc} (set LEADRELAY_DEBUG=1 for a traceback)", err=True
        )
        sys.exit(2)


if __name__ == "__main__":
    entry()
