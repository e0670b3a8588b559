"""YAML configuration: `${VAR}` interpolation, pydantic validation, errors that name the key.

A configuration error always says which file, which key path and what is wrong; a
missing environment variable is named. Secret values never appear in an error.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from leadrelay.core.delivery.contract import ConnectorOptions
from leadrelay.core.delivery.policy import DeliveryPolicy
from leadrelay.core.delivery.registry import UnknownConnectorType, connector_class
from leadrelay.core.durations import Duration
from leadrelay.core.ingest.settings import ServerConfig, SourceConfig

CONFIG_ENV_VAR = "LEADRELAY_CONFIG"
DEFAULT_CONFIG_FILE = "connectors.yaml"


class ConfigError(Exception):
    """The configuration cannot be used. Raised at startup, never at request time."""

    def __init__(self, file: str, key_path: str, problem: str) -> None:
        self.file = file
        self.key_path = key_path
        self.problem = problem
        where = f"{file}: {key_path}" if key_path else file
        super().__init__(f"{where}: {problem}")


# -- models -------------------------------------------------------------------------------

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _argon2_hash(value: SecretStr) -> SecretStr:
    if not value.get_secret_value().startswith("$argon2"):
        raise ValueError("not an argon2 hash (`connectors console hash-password` prints one)")
    return value


class ConsoleConfig(_Strict):
    """The operator console at /console/ (README "Console"); absent: no console at all."""

    # user name -> argon2 hash (`connectors console hash-password` prints one). No users:
    # only `connectors serve` on a loopback address, which prints a one-time password.
    users: dict[str, Annotated[SecretStr, AfterValidator(_argon2_hash)]] = Field(
        default_factory=dict
    )
    session_hours: float = Field(default=12, gt=0, le=24 * 30)
    # Behind a reverse proxy: take the client address and scheme from X-Forwarded-For /
    # X-Forwarded-Proto (only when the proxy sets them; otherwise a client could forge them).
    trust_proxy_headers: bool = False
    # Signs session cookies; default: derived from the users' hashes, so every process
    # with the same config accepts the same sessions, and a password change ends them.
    secret_key: SecretStr | None = None


class Config(_Strict):
    store: str = "sqlite:///./leadrelay.db"
    sources: dict[str, SourceConfig] = Field(default_factory=dict)
    connectors: dict[str, ConnectorOptions] = Field(default_factory=dict)
    delivery: DeliveryPolicy = Field(default_factory=DeliveryPolicy)
    retention: Duration = Field(default=timedelta(days=30))
    dedup_retention: Duration = Field(default=timedelta(days=365))
    server: ServerConfig = Field(default_factory=ServerConfig)
    console: ConsoleConfig | None = None
    path: str = Field(default="<memory>", exclude=True)

    @field_validator("sources", "connectors")
    @classmethod
    def _names_are_slugs(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not _NAME.match(name):
                raise ValueError(
                    f"name {name!r} must be letters, digits, '_', '-' or '.', at most 64"
                )
        return value

    @model_validator(mode="after")
    def _references_exist(self) -> Config:
        for name, options in self.connectors.items():
            if options.on_dead is not None and options.on_dead not in self.connectors:
                raise ConfigError(
                    self.path,
                    f"connectors.{name}.on_dead",
                    f"no connector named {options.on_dead!r}",
                )
            if options.on_dead == name:
                raise ConfigError(
                    self.path, f"connectors.{name}.on_dead", "a connector cannot notify itself"
                )
            for source in options.sources or ():
                if source not in self.sources:
                    raise ConfigError(
                        self.path, f"connectors.{name}.sources", f"no source named {source!r}"
                    )
        return self

    def masked_store_url(self) -> str:
        return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1****@", self.store)


# -- loading ------------------------------------------------------------------------------

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


def _interpolate(node: Any, path: str, file: str, env: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {
            k: _interpolate(v, f"{path}.{k}" if path else str(k), file, env)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_interpolate(v, f"{path}[{i}]", file, env) for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(
            file,
            path,
            f"environment variable {name} is not set (or give a default: ${{{name}:-…}})",
        )

    return _VAR.sub(substitute, node)


def _key_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _first_error(file: str, prefix: str, exc: ValidationError) -> ConfigError:
    err = exc.errors(include_url=False, include_input=False)[0]
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    path = ".".join(p for p in (prefix, _key_path(loc)) if p)
    message = err["msg"]
    if err["type"] == "extra_forbidden":
        message = "unknown key (check the spelling; see the YAML reference in README.md)"
    elif err["type"] == "missing":
        message = "required key is missing"
    return ConfigError(file, path, message)


def _build_connectors(file: str, raw: Any) -> dict[str, ConnectorOptions]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(file, "connectors", "must be a mapping of connector name to options")
    built: dict[str, ConnectorOptions] = {}
    for name, options in raw.items():
        path = f"connectors.{name}"
        if not isinstance(options, dict):
            raise ConfigError(file, path, "must be a mapping of options")
        type_name = options.get("type")
        if not type_name:
            raise ConfigError(file, f"{path}.type", "required key is missing")
        try:
            cls = connector_class(str(type_name))
        except UnknownConnectorType as exc:
            raise ConfigError(file, f"{path}.type", str(exc)) from None
        except ImportError as exc:
            # A known type whose module or SDK is missing: a config answer, not a traceback.
            raise ConfigError(
                file, f"{path}.type", f"connector type {type_name!r} cannot be loaded: {exc}"
            ) from None
        try:
            built[str(name)] = cls.options_model.model_validate(options)
        except ValidationError as exc:
            raise _first_error(file, path, exc) from None
    return built


def parse_config(data: Any, file: str = "<memory>", env: dict[str, str] | None = None) -> Config:
    """Validate an already-loaded YAML document."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(file, "", "the top level must be a mapping (store, sources, connectors…)")
    data = _interpolate(data, "", file, dict(os.environ) if env is None else env)
    connectors = _build_connectors(file, data.pop("connectors", None))
    try:
        return Config.model_validate({**data, "connectors": connectors, "path": file})
    except ValidationError as exc:
        raise _first_error(file, "", exc) from None


def resolve_config_path(explicit: str | None = None) -> Path:
    """`--config`, else $LEADRELAY_CONFIG, else ./connectors.yaml."""
    return Path(explicit or os.environ.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG_FILE)


def load_config(path: str | Path | None = None, env: dict[str, str] | None = None) -> Config:
    file_path = resolve_config_path(str(path) if path else None)
    file = str(file_path)
    try:
        text = file_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            file, "", f"file not found (pass --config or set {CONFIG_ENV_VAR})"
        ) from None
    except OSError as exc:
        raise ConfigError(file, "", f"cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(file, "", f"{where}{problem}") from None
    return parse_config(data, file, env)
