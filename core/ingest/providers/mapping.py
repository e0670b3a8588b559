"""Field mapping for generic sources: YAML names a JMESPath expression per lead field.

The expressions are compiled when the configuration is loaded, so a typo is a config error
naming its key path, never a failed request. At request time a mapping reads the payload
under the same policy as the built-in adapters (`fields.py`): a number where text belongs
becomes text, a missing path is unknown (None), and a value that cannot stand for its field
(an object where an email belongs) makes the event Unreadable, quarantined with a reason
that names the YAML key and the expression, and replayable once the mapping is fixed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import jmespath
from jmespath.exceptions import (
    ArityError,
    IncompleteExpressionError,
    JMESPathError,
    LexerError,
    ParseError,
)
from jmespath.functions import Functions
from jmespath.parser import ParsedResult
from pydantic import BeforeValidator, ConfigDict, Field, model_validator

from leadrelay.core.ingest.providers import fields
from leadrelay.core.ingest.providers.base import (
    ParseResult,
    Provider,
    ProviderOptions,
    ShapeError,
    Unreadable,
    json_type_name,
)
from leadrelay.core.ingest.providers.names import combine_names
from leadrelay.core.schema import Activity, EventType


@dataclass(frozen=True)
class JmesPath:
    """A compiled JMESPath expression and the text it was compiled from."""

    text: str
    compiled: ParsedResult

    def search(self, payload: Any, key_path: str) -> Any:
        """The expression's value over `payload`; a ShapeError names `key_path` on failure."""
        try:
            return self.compiled.search(payload)
        except JMESPathError as exc:
            # A function applied to a value of the wrong type, e.g. length(42).
            raise ShapeError(f"{key_path} ({self.text}): {_first_line(exc)}") from None


def _first_line(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def _syntax_problem(exc: JMESPathError) -> str:
    """One line saying what is wrong with an expression and where (no multi-line caret art)."""
    if isinstance(exc, IncompleteExpressionError):
        return "the expression ends too early"
    if isinstance(exc, LexerError):
        return f"{exc.message} at column {exc.lexer_position}"
    if isinstance(exc, ParseError) and not isinstance(exc, ArityError):
        return f"{exc.msg} at column {exc.lex_position} (token {exc.token_value!r})"
    return _first_line(exc)


_FUNCTIONS = Functions().FUNCTION_TABLE


def _check_functions(node: Any) -> None:
    """Raise ValueError for a call of an unknown function or with the wrong number of
    arguments (the library would only find out while reading a payload)."""
    if not isinstance(node, dict):
        return
    if node.get("type") == "function_expression":
        name = node.get("value")
        spec = _FUNCTIONS.get(name)
        if spec is None:
            raise ValueError(f"not a valid JMESPath expression: unknown function {name}()")
        signature = spec["signature"]
        given = len(node.get("children", []))
        variadic = bool(signature) and signature[-1].get("variadic", False)
        if given < len(signature) or (given > len(signature) and not variadic):
            raise ValueError(
                f"not a valid JMESPath expression: {name}() takes {len(signature)}"
                f"{' or more' if variadic else ''} argument(s), got {given}"
            )
    for child in node.get("children", []):
        _check_functions(child)


def compile_expression(value: Any) -> JmesPath:
    if isinstance(value, JmesPath):
        return value
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a JMESPath expression (text), got {json_type_name(value)}")
    try:
        compiled = jmespath.compile(value)
    except JMESPathError as exc:
        raise ValueError(f"not a valid JMESPath expression: {_syntax_problem(exc)}") from None
    _check_functions(compiled.parsed)
    return JmesPath(value, compiled)


Expression = Annotated[JmesPath, BeforeValidator(compile_expression)]

_IDENTIFYING_FIELDS = ("email", "linkedin_username", "github_username", "provider_lead_id")


class LeadMapping(ProviderOptions):
    """Lead field -> JMESPath over the payload (the Lead schema's names; README)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    provider_lead_id: Expression | None = None
    email: Expression | None = None
    first_name: Expression | None = None
    last_name: Expression | None = None
    full_name: Expression | None = None
    title: Expression | None = None
    company: Expression | None = None
    phone: Expression | None = None
    location: Expression | None = None
    website: Expression | None = None
    linkedin_url: Expression | None = None
    linkedin_username: Expression | None = None
    github_username: Expression | None = None
    github_url: Expression | None = None
    bio: Expression | None = None
    tags: Expression | None = None
    score: Expression | None = None
    status: Expression | None = None
    stage: Expression | None = None
    owner: Expression | None = None
    lead_source: Expression | None = None

    @model_validator(mode="after")
    def _identifies_the_lead(self) -> LeadMapping:
        if all(getattr(self, name) is None for name in _IDENTIFYING_FIELDS):
            raise ValueError(
                f"map at least one of {', '.join(_IDENTIFYING_FIELDS)}: they identify the lead"
            )
        return self


_LIST_FIELDS = {"tags"}
_NUMBER_FIELDS = {"score"}


class MappingOptions(ProviderOptions):
    """The keys every generic source shares: how to read its event and its lead."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    event: Expression
    occurred_at: Expression | None = None
    # Provider event name -> lead event type; null marks a known event that is not a lead
    # event. Names not listed are ignored too, as unknown.
    types: dict[str, EventType | None] = Field(min_length=1)
    lead: LeadMapping
    extra: dict[str, Expression] = Field(default_factory=dict)


def mapped_text(value: Any, key_path: str) -> str | None:
    if isinstance(value, list):
        raise ShapeError(
            f"{key_path}: expected a string, got array (end the expression with `| [0]` "
            "to take its first item)"
        )
    return fields.text({"value": value}, "value", key_path)


class MappedProvider(Provider):
    """A provider whose reading of the payload is configured per source (`MappingOptions`).

    Subclasses verify signatures their own way and say where the idempotency key comes
    from (`idempotency_key`).
    """

    def __init__(self, options: MappingOptions) -> None:
        self.mapping = options
        self.event_types = dict(options.types)
        # Unix seconds now, for signed timestamps (tests replay known-answer vectors).
        self.clock: Callable[[], float] = time.time

    def fallback_key(self, provider_event: str, payload: dict[str, Any]) -> str:
        """A key for a sender that names no event id: the event name and the parsed body."""
        return fields.fingerprint(provider_event, fields.canonical_json(payload))

    def idempotency_key(
        self, provider_event: str, payload: dict[str, Any], headers: Mapping[str, str]
    ) -> str:
        return self.fallback_key(provider_event, payload)

    def read(
        self,
        payload: dict[str, Any],
        *,
        source: str,
        received_at: datetime,
        headers: Mapping[str, str],
    ) -> ParseResult:
        event = self.mapping.event
        key_path = f"event ({event.text})"
        provider_event = mapped_text(event.search(payload, key_path), key_path)
        if provider_event is None:
            return Unreadable(f"{key_path}: found nothing in the payload")
        try:
            return self._read_event(provider_event, payload, source, received_at, headers)
        except ShapeError as error:
            return Unreadable(str(error), provider_event=provider_event)

    def _read_event(
        self,
        provider_event: str,
        payload: dict[str, Any],
        source: str,
        received_at: datetime,
        headers: Mapping[str, str],
    ) -> ParseResult:
        mapping = self.mapping
        idempotency_key = self.idempotency_key(provider_event, payload, headers)
        event_type = self.event_types.get(provider_event)
        if event_type is None:
            return fields.not_a_lead_event(self.event_types, provider_event, idempotency_key)
        occurred_at = None
        if mapping.occurred_at is not None:
            key_path = f"occurred_at ({mapping.occurred_at.text})"
            value = mapping.occurred_at.search(payload, key_path)
            occurred_at = fields.timestamp({"value": value}, "value", key_path)
        extra = {
            name: value
            for name, expression in mapping.extra.items()
            if (value := expression.search(payload, f"extra.{name}")) is not None
        }
        lead_fields = self._lead_fields(payload, extra)
        activity = Activity(kind=provider_event) if event_type == "lead.activity" else None
        return fields.build_lead_event(
            provider=self.name,
            source=source,
            idempotency_key=idempotency_key,
            event_type=event_type,
            provider_event=provider_event,
            occurred_at=occurred_at,
            received_at=received_at,
            lead_fields=lead_fields,
            activity=activity,
            raw=payload,
        )

    def _lead_fields(self, payload: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
        lead_fields: dict[str, Any] = {}
        for name in LeadMapping.model_fields:
            expression: JmesPath | None = getattr(self.mapping.lead, name)
            if expression is None:
                continue
            key_path = f"lead.{name} ({expression.text})"
            value = expression.search(payload, key_path)
            if name in _LIST_FIELDS:
                lead_fields[name] = fields.text_list({"value": value}, "value", key_path)
            elif name in _NUMBER_FIELDS:
                lead_fields[name] = fields.number({"value": value}, "value", key_path)
            else:
                lead_fields[name] = mapped_text(value, key_path)
        names = combine_names(
            lead_fields.pop("full_name", None),
            lead_fields.pop("first_name", None),
            lead_fields.pop("last_name", None),
        )
        lead_fields.update(
            first_name=names.first_name, last_name=names.last_name, full_name=names.full_name
        )
        lead_fields["email"] = fields.email_and_extra(lead_fields.get("email"), extra)
        lead_fields["extra"] = extra
        return lead_fields
