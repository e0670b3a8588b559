"""What every `connectors` command shares: `--config`, log options, loading the config
and opening the store, time arguments."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from leadrelay.core import logs
from leadrelay.core.app.config import Config, ConfigError, load_config
from leadrelay.core.app.safety import PublishedSecretRefused, startup_warnings
from leadrelay.core.app.store_access import StoreProblem, open_and_migrate, open_existing
from leadrelay.core.durations import moment
from leadrelay.core.store.store import Store

log = logging.getLogger("leadrelay.cli")

CONFIG_OPTION = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="YAML config (default: $LEADRELAY_CONFIG or ./connectors.yaml).",
)

F = TypeVar("F", bound=Callable[..., Any])


def log_options(command: F) -> F:
    """`--plain-logs` and `--log-level` accepted after the subcommand too."""

    def reconfigure(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value is None or value is False:
            return
        root = ctx.find_root().params
        if param.name == "plain_logs":
            root["plain_logs"] = True
        else:
            root["log_level"] = value
        logs.configure(root.get("log_level", "INFO"), json_lines=not root.get("plain_logs"))

    command = click.option(
        "--plain-logs",
        is_flag=True,
        expose_value=False,
        callback=reconfigure,
        help="Human-readable logs instead of JSON lines.",
    )(command)
    return click.option(
        "--log-level",
        default=None,
        expose_value=False,
        callback=reconfigure,
        help="DEBUG, INFO, WARNING…",
    )(command)


def load(config_path: str | None) -> Config:
    try:
        return load_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(f"config error: {exc}") from None


def store_of(config: Config) -> Store:
    """The store, created and migrated if needed (serve, worker, migrate)."""
    try:
        return open_and_migrate(config.store, config.masked_store_url())
    except StoreProblem as exc:
        raise click.ClickException(str(exc)) from None


def existing_store(config: Config) -> Store:
    """The store as it is: never created (every command but serve, worker and migrate)."""
    try:
        return open_existing(config.store, config.masked_store_url())[0]
    except StoreProblem as exc:
        raise click.ClickException(str(exc)) from None


def check_listening(config: Config, host: str) -> None:
    """Refuse a published demo secret on a reachable address; warn loudly otherwise."""
    try:
        warnings = startup_warnings(config, host)
    except PublishedSecretRefused as exc:
        raise click.ClickException(str(exc)) from None
    for warning in warnings:
        click.secho(f"WARNING: {warning}", fg="yellow", bold=True, err=True)


def when(value: str | None) -> datetime | None:
    """An ISO timestamp, or a duration meaning "that long ago" (`2h`, `7d`)."""
    if not value:
        return None
    try:
        return moment(value, datetime.now(UTC))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def known_connector(config: Config, name: str) -> None:
    if name not in config.connectors:
        known = ", ".join(config.connectors) or "none"
        raise click.ClickException(
            f"no connector named {name!r} in {config.path} (connectors: {known})"
        )
