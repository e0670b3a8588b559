"""What every console view reads: the config, the store, the users, and the secret values
that must never reach a page."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from flask import current_app
from pydantic import BaseModel, SecretStr
from sqlalchemy.engine import make_url

from leadrelay.core import metrics
from leadrelay.core.app.config import Config
from leadrelay.core.app.console.auth import LoginLimiter, Users
from leadrelay.core.delivery.contract import Connector
from leadrelay.core.delivery.worker import build_connectors
from leadrelay.core.store.store import Store

EXTENSION = "leadrelay_console"
# Shown instead of a secret: pydantic's SecretStr mask, as the connectors and the CLI show.
MASK = str(SecretStr("secret"))
# Token-shaped text a destination may echo that is in no config (a rotated token, a
# session id it issued).
_TOKEN_LIKE = re.compile(
    r"(?i)(bearer\s+|token=|access_token=|sessionid=|password=|xox[abposr]-)[^\s&\"']+"
)


def _secret_values(node: Any) -> Iterator[str]:
    if isinstance(node, SecretStr):
        yield node.get_secret_value()
    elif isinstance(node, BaseModel):
        for name in type(node).model_fields:
            yield from _secret_values(getattr(node, name))
    elif isinstance(node, dict):
        for value in node.values():
            yield from _secret_values(value)
    elif isinstance(node, list | tuple):
        for value in node:
            yield from _secret_values(value)


def config_secrets(config: Config) -> tuple[str, ...]:
    """Every secret value in the config: SecretStr fields, the store's password, the
    path and query of a connector's `url`."""
    found = set(_secret_values(config))
    for options in config.connectors.values():
        # A destination URL's path and query: capability URLs carry their secret there.
        url = getattr(options, "url", None)
        if isinstance(url, str):
            parts = urlsplit(url)
            pieces = [parts.path.strip("/"), parts.query, *parts.path.split("/")]
            pieces += [value for _, value in parse_qsl(parts.query)]
            found.update(piece for piece in pieces if len(piece) >= 8)
    password = make_url(config.store).password
    if password:
        found.add(str(password))
    # Longest first, so a secret containing another is masked whole.
    return tuple(sorted((s for s in found if len(s) >= 4), key=len, reverse=True))


@dataclass
class ConsoleState:
    config: Config
    store: Store
    users: Users
    limiter: LoginLimiter = field(default_factory=LoginLimiter)
    secrets: tuple[str, ...] = ()
    _connectors: dict[str, Connector] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def redact(self, text: str) -> str:
        """`text` with every configured secret (and anything token-like) masked."""
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return _TOKEN_LIKE.sub(lambda m: m.group(1) + MASK, text)

    def connector(self, name: str) -> Connector | None:
        """The configured connector `name`, built once (used for request previews only)."""
        with self._lock:
            if self._connectors is None:
                self._connectors = build_connectors(self.config)
            return self._connectors.get(name)

    def close(self) -> None:
        with self._lock:
            for connector in (self._connectors or {}).values():
                connector.close()
            self._connectors = None


def state() -> ConsoleState:
    console: ConsoleState = current_app.extensions[EXTENSION]
    return console


def webhook_answers() -> dict[tuple[str, str], int]:
    """(source, answer) -> requests counted since the processes started (Prometheus
    counters: duplicates and refused requests store nothing, so only these count them)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import CollectorRegistry, multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        families = registry.collect()
    else:
        families = metrics.WEBHOOKS.collect()
    counts: dict[tuple[str, str], int] = {}
    for family in families:
        if family.name != "leadrelay_webhooks_received":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                key = (sample.labels["source"], sample.labels["answer"])
                counts[key] = counts.get(key, 0) + int(sample.value)
    return counts
