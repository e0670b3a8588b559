"""YAML configuration: `${VAR}` interpolation, pydantic validation, errors that name the key.

A configuration error always says which file, which key path and what is wrong; a
missing environment variable is named. Secret values never appear in an error.
"""

from __future__ import annotations

import os
import re
import typing
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

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

from leadrelay.core.app.config_yaml import YamlProblems, read_yaml
from leadrelay.core.delivery.contract import ConnectorOptions
from leadrelay.core.delivery.policy import DeliveryPolicy
from leadrelay.core.delivery.registry import UnknownConnectorType, connector_class
from leadrelay.core.durations import Duration
from leadrelay.core.ingest.settings import ServerConfig, SourceConfig

CONFIG_ENV_VAR = "LEADRELAY_CONFIG"
# How much longer than a connector's request timeout the delivery lease must be.
LEASE_MARGIN_S = 2.0
DEFAULT_CONFIG_FILE = "connectors.yaml"


class ConfigError(Exception):
    """The configuration cannot be used. Raised at startup, never at request time."""

    def __init__(self, file: str, key_path: str, problem: str) -> None:
        self.file = file
        self.key_path = key_path
        self.problem = problem
        where = f"{file}: {key_path}" if key_path else file
        super().__init__(f"{where}: {problem}")


class ConfigErrors(ConfigError):
    """Several problems, reported together so one run shows everything to fix.

    `file`, `key_path` and `problem` are the first problem's; `errors` holds them all.
    """

    def __init__(self, errors: Sequence[ConfigError]) -> None:
        first = errors[0]
        super().__init__(first.file, first.key_path, first.problem)
        self.errors = list(errors)
        lines = "\n".join(f"  {e}" for e in self.errors)
        self.args = (f"{first.file}: {len(self.errors)} problems:\n{lines}",)


def _raise_all(errors: Sequence[ConfigError]) -> None:
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ConfigErrors(errors)


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
    # Key path -> the environment variable that was unset, so its `:-default` applied.
    defaults_used: dict[str, str] = Field(default_factory=dict, exclude=True)

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
    def _lease_outlasts_a_request(self) -> Config:
        # The lease is checked just before a send; one request must end inside it even if
        # the heartbeat cannot reach the database meanwhile, with room to record it.
        lease = self.delivery.lease.total_seconds()
        for name, options in self.connectors.items():
            timeout = getattr(options, "timeout", None)
            if isinstance(timeout, int | float) and lease < timeout + LEASE_MARGIN_S:
                raise ConfigError(
                    self.path,
                    "delivery.lease",
                    f"{lease:g}s is shorter than connectors.{name}.timeout ({timeout:g}s) plus "
                    f"{LEASE_MARGIN_S:g}s: raise delivery.lease or lower the timeout",
                )
        return self

    @model_validator(mode="after")
    def _references_exist(self) -> Config:
        errors: list[ConfigError] = []
        for name, options in self.connectors.items():
            key = f"connectors.{name}"
            if options.on_dead is not None and options.on_dead not in self.connectors:
                errors.append(
                    ConfigError(
                        self.path, f"{key}.on_dead", f"no connector named {options.on_dead!r}"
                    )
                )
            if options.on_dead == name:
                errors.append(
                    ConfigError(self.path, f"{key}.on_dead", "a connector cannot notify itself")
                )
            for source in options.sources or ():
                if source not in self.sources:
                    errors.append(
                        ConfigError(self.path, f"{key}.sources", f"no source named {source!r}")
                    )
        _raise_all(errors)
        return self

    def masked_store_url(self) -> str:
        return mask_store_url(self.store)


_MASK = "****"
# Query parameters through which SQLAlchemy and libpq accept credentials.
_CREDENTIAL_PARAMS = frozenset({"password", "sslpassword", "passfile"})


def mask_store_url(url: str) -> str:
    """The store URL with every credential SQLAlchemy accepts replaced by ****: the
    password (also with no user name) and the password-like query parameters."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return "<unparseable store URL>"
    query = {
        key: (_MASK if key.lower() in _CREDENTIAL_PARAMS else value)
        for key, value in parsed.query.items()
    }
    masked = parsed.set(query=query)
    if parsed.password is not None:
        masked = masked.set(password=_MASK)
    # Rendered with its (masked) password: SQLAlchemy's own hiding writes *** instead.
    rendered = masked.render_as_string(hide_password=False)
    return rendered.replace(quote(_MASK), _MASK)


# -- loading ------------------------------------------------------------------------------

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


class _Interpolation:
    """`${VAR}` and `${VAR:-default}` substitution, remembering which defaults were used."""

    def __init__(self, file: str, env: dict[str, str]) -> None:
        self.file = file
        self.env = env
        self.errors: list[ConfigError] = []
        self.defaults_used: dict[str, str] = {}  # key path -> variable left unset

    def apply(self, node: Any, path: str = "") -> Any:
        if isinstance(node, dict):
            return {k: self.apply(v, f"{path}.{k}" if path else str(k)) for k, v in node.items()}
        if isinstance(node, list):
            return [self.apply(v, f"{path}[{i}]") for i, v in enumerate(node)]
        if not isinstance(node, str):
            return node

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in self.env:
                return self.env[name]
            if default is not None:
                self.defaults_used[path] = name
                return default
            self.errors.append(
                ConfigError(
                    self.file,
                    path,
                    f"environment variable {name} is not set (or give a default: ${{{name}:-…}})",
                )
            )
            return ""

        return _VAR.sub(substitute, node)


def _key_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _validation_errors(file: str, prefix: str, exc: ValidationError) -> list[ConfigError]:
    found: list[ConfigError] = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        path = ".".join(p for p in (prefix, _key_path(loc)) if p)
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; see the YAML reference in README.md)"
        elif err["type"] == "missing":
            message = "required key is missing"
        found.append(ConfigError(file, path, message))
    return found


def _path_fields(model: type[BaseModel]) -> set[str]:
    """Fields typed as a filesystem path (`Path`, `FilePath`, optional or not)."""

    def is_path(annotation: Any) -> bool:
        if isinstance(annotation, type) and issubclass(annotation, Path):
            return True
        return any(is_path(arg) for arg in typing.get_args(annotation))

    return {name for name, f in model.model_fields.items() if is_path(f.annotation)}


def _resolve(value: Any, base_dir: Path | None) -> Any:
    """A relative path is relative to the config file's folder, not the current directory."""
    if base_dir is None or not isinstance(value, str) or not value:
        return value
    path = Path(value).expanduser()
    return value if path.is_absolute() else str(base_dir / path)


def _build_connectors(
    file: str, raw: Any, base_dir: Path | None
) -> tuple[dict[str, ConnectorOptions], list[ConfigError]]:
    if raw is None:
        return {}, []
    if not isinstance(raw, dict):
        return {}, [
            ConfigError(file, "connectors", "must be a mapping of connector name to options")
        ]
    built: dict[str, ConnectorOptions] = {}
    errors: list[ConfigError] = []
    for name, options in raw.items():
        path = f"connectors.{name}"
        if not isinstance(options, dict):
            errors.append(ConfigError(file, path, "must be a mapping of options"))
            continue
        type_name = options.get("type")
        if not type_name:
            errors.append(ConfigError(file, f"{path}.type", "required key is missing"))
            continue
        try:
            cls = connector_class(str(type_name))
        except UnknownConnectorType as exc:
            errors.append(ConfigError(file, f"{path}.type", str(exc)))
            continue
        except ImportError as exc:
            # A known type whose module or SDK is missing: a config answer, not a traceback.
            errors.append(
                ConfigError(
                    file, f"{path}.type", f"connector type {type_name!r} cannot be loaded: {exc}"
                )
            )
            continue
        paths = _path_fields(cls.options_model)
        options = {k: _resolve(v, base_dir) if k in paths else v for k, v in options.items()}
        try:
            built[str(name)] = cls.options_model.model_validate(options)
        except ValidationError as exc:
            errors += _validation_errors(file, path, exc)
    return built, errors


# What `store:` accepts. Hosting providers hand out postgres:// and postgresql:// URLs;
# both mean PostgreSQL through psycopg 3, the driver leadrelay ships with.
_POSTGRES_ALIASES = ("postgres://", "postgresql://")
SUPPORTED_STORES = "sqlite:///PATH, postgresql+psycopg://… (also postgres:// or postgresql://)"


def _store_url(file: str, url: Any, base_dir: Path | None) -> tuple[Any, list[ConfigError]]:
    if not isinstance(url, str):
        return url, []  # the model reports the type
    for alias in _POSTGRES_ALIASES:
        if url.startswith(alias):
            return "postgresql+psycopg://" + url.removeprefix(alias), []
    if url.startswith("postgresql+psycopg://"):
        return url, []
    if url == "sqlite://":  # in memory
        return url, []
    if url.startswith("sqlite:///"):
        database = url.removeprefix("sqlite:///")
        if database in ("", ":memory:") or database.startswith("file:"):
            return url, []
        return "sqlite:///" + _resolve(database, base_dir), []
    scheme = url.split("://", 1)[0] if "://" in url else url[:20]
    return url, [
        ConfigError(
            file,
            "store",
            f"unsupported store {scheme!r}; supported: {SUPPORTED_STORES}",
        )
    ]


def parse_config(
    data: Any,
    file: str = "<memory>",
    env: dict[str, str] | None = None,
    base_dir: Path | None = None,
) -> Config:
    """Validate an already-loaded YAML document; relative paths resolve against `base_dir`."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(file, "", "the top level must be a mapping (store, sources, connectors…)")
    interpolation = _Interpolation(file, dict(os.environ) if env is None else env)
    data = interpolation.apply(data)
    unset = [e.key_path for e in interpolation.errors]
    errors = list(interpolation.errors)
    connectors, connector_errors = _build_connectors(file, data.pop("connectors", None), base_dir)
    errors += connector_errors
    store, store_errors = _store_url(
        file, data.pop("store", Config.model_fields["store"].default), base_dir
    )
    errors += store_errors
    try:
        config = Config.model_validate(
            {
                **data,
                "store": store,
                "connectors": connectors,
                "path": file,
                "defaults_used": interpolation.defaults_used,
            }
        )
    except ValidationError as exc:
        errors += _validation_errors(file, "", exc)
    except ConfigErrors as exc:
        errors += exc.errors
    except ConfigError as exc:
        errors.append(exc)
    # An unset variable left an empty value behind: its own error says it all.
    _raise_all(
        [
            e
            for e in errors
            if e in interpolation.errors
            or not any(e.key_path.startswith(u) or u.startswith(e.key_path) for u in unset)
        ]
    )
    return config


def resolve_config_path(explicit: str | None = None) -> Path:
    """`--config`, else $LEADRELAY_CONFIG, else ./connectors.yaml."""
    return Path(explicit or os.environ.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG_FILE)


# A real config has a few hundred values; YAML aliases can make a 500-byte file stand for
# billions (each alias is shared when loaded, and copied when interpolated and validated).
MAX_EXPANDED_NODES = 100_000


def _expanded_size(node: Any) -> int:
    """How many values `node` stands for with every alias written out, counted without
    writing them out (each shared container is sized once)."""
    sizes: dict[int, int] = {}

    def size(item: Any) -> int:
        if isinstance(item, dict):
            children = [*item.keys(), *item.values()]
        elif isinstance(item, list):
            children = item
        else:
            return 1
        known = sizes.get(id(item))
        if known is None:
            known = sizes[id(item)] = 1 + sum(size(child) for child in children)
        return known

    return size(node)


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
        data = read_yaml(text)
    except YamlProblems as exc:
        _raise_all(
            [
                ConfigError(
                    file,
                    p.key_path,
                    f"line {p.line}, column {p.column}: {p.problem}" if p.line else p.problem,
                )
                for p in exc.problems
            ]
        )
    if _expanded_size(data) > MAX_EXPANDED_NODES:
        raise ConfigError(
            file,
            "",
            f"YAML aliases expand to more than {MAX_EXPANDED_NODES} values "
            "(an alias bomb?); write the values out",
        )
    return parse_config(data, file, env, base_dir=file_path.resolve().parent)
