"""Safe defaults at start-up: no publicly known webhook secret on a reachable address.

The demo config (`examples/connectors.yaml`, `examples/csv.yaml`) falls back to secrets
that anyone can read in the repository, so that `make run` works with nothing set. A
receiver using one of them on a non-loopback address accepts forged webhooks; `serve`,
`worker` and the gunicorn config refuse to start that way. On loopback they run, with a
loud warning.

`PUBLISHED_SECRETS` lists the `${VAR:-default}` secret defaults of the example files;
tests/core/test_safe_defaults.py reads examples/*.yaml and fails when one is missing
here, so a new example cannot publish a secret this check does not know.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from leadrelay.core.app.config import Config

# Every secret default in examples/*.yaml, with the variable the examples read it from.
PUBLISHED_SECRETS: dict[str, str] = {
    "demo-gitleads-secret": "GITLEADS_WEBHOOK_SECRET",
    "demo-gitproductivity-secret": "GITPRODUCTIVITY_WEBHOOK_SECRET",
    "demo-leadshark-secret": "LEADSHARK_WEBHOOK_SECRET",
    "demo-leadhub-secret": "LEADHUB_WEBHOOK_SECRET",
}

# Shorter than this, a shared secret is guessable enough to deserve a warning.
MIN_SECRET_LENGTH = 16


@dataclass(frozen=True)
class DemoSecret:
    source: str
    key_path: str  # e.g. sources.gitleads.secrets[0]
    variable: str | None  # the unset variable whose default supplied it, if any

    def fix(self, config_file: str) -> str:
        if self.variable:
            return f"set {self.variable} to the secret from the provider's dashboard"
        return f"replace it at {self.key_path} in {config_file}"


def demo_secrets(config: Config) -> list[DemoSecret]:
    """Sources whose secret is one the repository's examples publish."""
    found = []
    for name, source in config.sources.items():
        for i, secret in enumerate(source.secret_values()):
            if secret in PUBLISHED_SECRETS:
                key_path = f"sources.{name}.secrets[{i}]"
                found.append(DemoSecret(name, key_path, config.defaults_used.get(key_path)))
    return found


def short_secrets(config: Config) -> list[str]:
    """`sources.NAME.secrets[i]` of each secret shorter than MIN_SECRET_LENGTH."""
    return [
        f"sources.{name}.secrets[{i}]"
        for name, source in config.sources.items()
        for i, secret in enumerate(source.secret_values())
        if len(secret) < MIN_SECRET_LENGTH
    ]


def is_loopback(host: str) -> bool:
    host = host.strip().strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name or 0.0.0.0-style wildcard: assume reachable


def bind_host(bind: str) -> str:
    """The host of a gunicorn bind (`0.0.0.0:8000`, `[::1]:8000`); a unix socket is local."""
    if bind.startswith("unix:"):
        return "localhost"
    host, _, _port = bind.rpartition(":")
    return host or bind


class PublishedSecretRefused(Exception):
    """A publicly known secret on a reachable address: the process must not start."""


def startup_warnings(config: Config, host: str) -> list[str]:
    """What to warn about before listening on `host`; raises PublishedSecretRefused.

    The messages name sources, key paths and variables, never a secret value.
    """
    demo = demo_secrets(config)
    if demo and not is_loopback(host):
        lines = "\n".join(f"  source {d.source}: {d.fix(config.path)} ({d.key_path})" for d in demo)
        raise PublishedSecretRefused(
            f"refusing to listen on {host}: {len(demo)} source secret"
            f"{'s are' if len(demo) != 1 else ' is'} a demo value published in leadrelay's "
            f"examples, so anyone could forge webhooks:\n{lines}\n"
            "(on 127.0.0.1 the demo secrets are allowed, for trying leadrelay out)"
        )
    warnings = [
        f"DEMO SECRET: source {d.source} accepts webhooks signed with a demo secret "
        f"published in leadrelay's examples; {d.fix(config.path)} before going live"
        for d in demo
    ]
    warnings += [
        f"short secret: {key_path} has fewer than {MIN_SECRET_LENGTH} characters; "
        "use a long random secret (python3 -c 'import secrets; print(secrets.token_hex(32))')"
        for key_path in short_secrets(config)
    ]
    return warnings
