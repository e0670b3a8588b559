"""`connectors …`: run, inspect and operate leadrelay.

Every command takes `--config` (else $LEADRELAY_CONFIG, else ./connectors.yaml), exits
non-zero on failure, and never prints a secret.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from typing import Any

import click

from leadrelay.core import logs
from leadrelay.core.app.cli_common import (
    CONFIG_OPTION,
    check_listening,
    load,
    log_options,
    store_of,
)
from leadrelay.core.app.cli_output import json_default, plural, print_sample_results
from leadrelay.core.app.cli_queue import deliveries, enable, events, replay
from leadrelay.core.app.config import Config, ConfigError
from leadrelay.core.app.identity_cli import forget, identities
from leadrelay.core.app.safety import startup_warnings
from leadrelay.core.app.store_access import StoreProblem, open_existing
from leadrelay.core.ingest.settings import unsigned_sources


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="leadrelay", prog_name="connectors")
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
@log_options
def serve(config_path: str | None, host: str, port: int, threads: int, no_worker: bool) -> None:
    """Run the receiver (and the delivery worker) under gunicorn.

    Refuses a non-loopback --host while a source uses a demo secret from the examples.
    """
    from leadrelay.core.app.server import serve as run_server

    config = load(config_path)
    check_listening(config, host)
    store_of(config).close()
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
@log_options
def worker(config_path: str | None, metrics_port: int | None, metrics_host: str) -> None:
    """Run only the delivery worker (several may run at once on PostgreSQL).

    Refuses a non-loopback --metrics-host while a source uses a demo secret.
    """
    from leadrelay.core.app.housekeeping import Housekeeping
    from leadrelay.core.delivery.worker import Worker

    config = load(config_path)
    check_listening(config, metrics_host if metrics_port is not None else "127.0.0.1")
    store = store_of(config)
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
@log_options
def migrate(config_path: str | None) -> None:
    """Create or upgrade the database schema."""
    config = load(config_path)
    store_of(config).close()
    click.echo(f"schema up to date at {config.masked_store_url()}")


@main.command("test")
@CONFIG_OPTION
@click.option("--source", "source_names", multiple=True, help="Only these sources (repeatable).")
@click.option("--event", "event_names", multiple=True, help="Only these provider events.")
@click.option(
    "--connector", "connector_names", multiple=True, help="Only these connectors (repeatable)."
)
@click.option(
    "--payload",
    "payload_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Your own payload or captured-request file(s) instead of the bundled samples "
    "(needs exactly one --source).",
)
@click.option("--live", is_flag=True, help="Really send to enabled connectors (default: dry run).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable results.")
@click.option("--show-requests", is_flag=True, help="Print each request body as well.")
@log_options
def test_command(
    config_path: str | None,
    source_names: tuple[str, ...],
    event_names: tuple[str, ...],
    connector_names: tuple[str, ...],
    payload_files: tuple[str, ...],
    live: bool,
    as_json: bool,
    show_requests: bool,
) -> None:
    """Run sample payloads through verify → normalize → route → every matching connector.

    Dry run by default: nothing is stored or sent; each connector shows what it would
    send (bodies with --show-requests). A connector with `enabled: false` is never
    contacted: it is shown as skipped. Exits 1 if any payload fails verification or
    parsing, or (with --live) any connector does not deliver.
    """
    from pathlib import Path

    from leadrelay.core.app.sample_run import run_sample
    from leadrelay.core.app.samples import bundled_sample_files, event_name_of, load_request
    from leadrelay.core.delivery.worker import build_connectors

    config = load(config_path)
    unknown = [s for s in source_names if s not in config.sources]
    if unknown:
        raise click.UsageError(
            f"unknown source(s): {', '.join(unknown)}; one of: {', '.join(config.sources)}"
        )
    unknown = [c for c in connector_names if c not in config.connectors]
    if unknown:
        raise click.UsageError(
            f"unknown connector(s): {', '.join(unknown)}; one of: {', '.join(config.connectors)}"
        )
    sources = list(source_names) or list(config.sources)
    if payload_files and len(sources) != 1:
        raise click.UsageError(
            "--payload needs exactly one --source (whose provider and secret apply)"
        )
    connectors = build_connectors(config)
    chosen = {n: c for n, c in connectors.items() if not connector_names or n in connector_names}
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
            results.append(run_sample(config, chosen, source, request, live=live))
    for connector in connectors.values():
        connector.close()
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in results], indent=2, default=json_default))
    else:
        print_sample_results(results, show_requests, live)
    if not all(r.ok for r in results):
        sys.exit(1)


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
@log_options
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

    config = load(config_path)
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
@click.option("--check-connections", is_flag=True, help="Also log in to each enabled destination.")
@log_options
def validate(config_path: str | None, check_connections: bool) -> None:
    """Check the config, then the store (reachable, schema up to date), and optionally
    log in to each enabled connector's destination."""
    config = load(config_path)
    click.echo(
        f"{config.path}: OK ({plural(len(config.sources), 'source')}, "
        f"{plural(len(config.connectors), 'connector')})"
    )
    for name in unsigned_sources(config):
        click.echo(f"warning: source {name} has no secrets and accepts unsigned requests")
    # As on loopback: validate cannot know the address serve will get, so it warns.
    for warning in startup_warnings(config, "127.0.0.1"):
        click.echo(f"warning: {warning}")
    failed = False
    try:
        store, state = open_existing(config.store, config.masked_store_url())
        store.close()
        click.echo(f"store {config.masked_store_url()}: {state.describe()}")
    except StoreProblem as exc:
        failed = True
        click.echo(f"error: {exc}")
    if check_connections:
        failed = _check_connections(config) or failed
    if failed:
        sys.exit(1)


def _check_connections(config: Config) -> bool:
    """Log in to each enabled connector; True if any failed. SDK log lines are muted:
    the failure's own message says what went wrong."""
    from leadrelay.core.delivery.contract import ConnectionCheckFailed
    from leadrelay.core.delivery.worker import build_connectors

    failed = False
    logging.disable(logging.CRITICAL)
    try:
        for name, connector in build_connectors(config).items():
            try:
                if not config.connectors[name].enabled:
                    click.echo(f"{name} ({connector.type_name}): disabled in config, not checked")
                    continue
                connector.check_connection()
                click.echo(f"{name} ({connector.type_name}): connection OK")
            except ConnectionCheckFailed as exc:
                failed = True
                click.echo(f"{name} ({connector.type_name}): FAILED: {exc}")
            finally:
                connector.close()
    finally:
        logging.disable(logging.NOTSET)
    return failed


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


for command in (events, deliveries, replay, enable, identities, forget):
    main.add_command(command)
