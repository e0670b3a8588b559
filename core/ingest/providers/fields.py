"""Field readers and the event builder shared by the provider adapters.

Policy (the same for every provider):

- null, a missing key, and an empty or all-blank string all mean "unknown": None.
- A string field that arrives as a number is accepted ("id": 123 reads as "123").
- A field of a type that cannot stand for its value (an object where a name belongs, a
  boolean where an id belongs) raises `ShapeError`; the adapter answers `Unreadable`, so
  the event is quarantined raw and can be replayed after a fix instead of half-read.
- A number field (a score) accepts numeric strings ("45"); text that is not a finite
  number is a ShapeError rather than a silently dropped value.
- Emails are validated (`is_valid_email`, syntax only); an invalid one is not used as the
  lead's email (nor its key) but kept in `extra["invalid_email"]`.
- Strings are kept at full length: connectors cut them to their destinations' limits.
- Timestamps become timezone-aware datetimes (naive ones are taken as UTC); one that
  cannot be parsed reads as None (the original stays in the event's `raw`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from email_validator import EmailNotValidError, validate_email

from leadrelay.core.ingest.providers.base import (
    Ignored,
    Parsed,
    ShapeError,
    Unreadable,
    json_type_name,
)
from leadrelay.core.ingest.providers.jsjson import format_number
from leadrelay.core.ingest.providers.names import combine_names, split_name
from leadrelay.core.schema import (
    Activity,
    EventType,
    Lead,
    LeadEvent,
    event_id_for,
    fingerprint,
    lead_key,
)


def require_object(container: Mapping[str, Any], key: str, path: str) -> dict[str, Any]:
    value = container.get(key)
    if not isinstance(value, dict):
        raise ShapeError(f"{path}: expected an object, got {json_type_name(value)}")
    return value


def _number_text(value: int | float) -> str:
    # Integers keep every digit sent (long ids survive); floats print as JavaScript would
    # (4.0 -> "4", 1e300 -> "1e+300").
    if isinstance(value, int):
        return str(value)
    return format_number(value)


def text(container: Mapping[str, Any], key: str, path: str) -> str | None:
    """An optional string field, stripped; numbers are accepted and turned into text."""
    value = container.get(key)
    if value is None:
        return None
    if isinstance(value, bool):
        raise ShapeError(f"{path}: expected a string, got boolean")
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ShapeError(f"{path}: expected a string, got a non-finite number")
        return _number_text(value)
    if isinstance(value, str):
        return value.strip() or None
    raise ShapeError(f"{path}: expected a string, got {json_type_name(value)}")


def required_text(container: Mapping[str, Any], key: str, path: str) -> str:
    value = text(container, key, path)
    if value is None:
        raise ShapeError(f"{path}: missing (required)")
    return value


def text_list(container: Mapping[str, Any], key: str, path: str) -> list[str]:
    """A list of strings; a single comma-separated string is accepted too."""
    value = container.get(key)
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list):
        raise ShapeError(f"{path}: expected an array of strings, got {json_type_name(value)}")
    items: list[str] = []
    for index, item in enumerate(value):
        if item is None:
            continue
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise ShapeError(f"{path}[{index}]: expected a string, got {json_type_name(item)}")
        item_text = item.strip() if isinstance(item, str) else _number_text(item)
        if item_text:
            items.append(item_text)
    return items


def number(container: Mapping[str, Any], key: str, path: str) -> float | None:
    """An optional finite number; numeric strings ("45", " 4.5 ") are accepted.

    Raises ShapeError for text that is not a number, so a score is never silently lost.
    """
    value = container.get(key)
    if value is None:
        return None
    if isinstance(value, bool):
        raise ShapeError(f"{path}: expected a number, got boolean")
    if isinstance(value, int | float):
        result = float(value) if math.isfinite(value) else math.nan
    elif isinstance(value, str):
        if not value.strip():
            return None
        try:
            result = float(value.strip())
        except ValueError:
            raise ShapeError(f"{path}: expected a number, got {value[:40]!r}") from None
    else:
        raise ShapeError(f"{path}: expected a number, got {json_type_name(value)}")
    if not math.isfinite(result):
        raise ShapeError(f"{path}: expected a finite number")
    return result


def parse_timestamp(raw: str | None) -> datetime | None:
    """ISO 8601 (with "Z", offset, or none = UTC) or a date, in UTC; None when unparseable
    or when the instant has no UTC form (year 1 with a positive offset, year 9999 with a
    negative one): such a time is treated as absent rather than failing every retry."""
    if raw is None:
        return None
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        return None


def timestamp(container: Mapping[str, Any], key: str, path: str) -> datetime | None:
    """An optional timestamp: ISO 8601 text, or Unix seconds/milliseconds as a number."""
    value = container.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _from_epoch(value)
    return parse_timestamp(text(container, key, path))


def _from_epoch(value: float) -> datetime | None:
    if not math.isfinite(value):
        return None
    # Values this large are milliseconds: 1e11 seconds is the year 5138.
    seconds = value / 1000 if abs(value) >= 1e11 else value
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def is_valid_email(candidate: str) -> bool:
    """Whether `candidate` is an address a CRM takes as an email (syntax only, no DNS).

    RFC 5321 lengths (local part 64, address 254) and RFC 5322 dot-atoms: no empty labels
    or consecutive dots, no quoted local parts. HubSpot and Salesforce refuse such addresses
    (INVALID_EMAIL), and as an upsert id one costs a whole batch.
    """
    return _plainly_valid(candidate) or _validator_accepts(candidate)


# An ASCII dot-atom local part (email-validator's DOT_ATOM_TEXT) and a name of ASCII
# letters, digits, dots and hyphens after the one @-sign.
_PLAIN_ADDRESS = re.compile(
    r"[a-zA-Z0-9_!#$%&'*+\-/=?^`{|}~]+(?:\.[a-zA-Z0-9_!#$%&'*+\-/=?^`{|}~]+)*"
    r"@[a-zA-Z0-9.-]+"
)
_LOCAL_PART_MAX = 64
_ADDRESS_MAX = 254


def _plainly_valid(candidate: str) -> bool:
    """True only for addresses email-validator accepts, decided without running it per
    address: every request carries an email, and the full check costs more than the rest
    of reading a lead. For a plain ASCII address the validator's verdict is its local-part
    pattern and lengths, which are checked here, and its verdict on the domain, which
    depends on the domain alone and is cached. Anything else (quoted or international
    local parts, IDNA domains) goes to the validator: False here is not a verdict."""
    if len(candidate) > _ADDRESS_MAX or not _PLAIN_ADDRESS.fullmatch(candidate):
        return False
    local, domain = candidate.split("@")
    return len(local) <= _LOCAL_PART_MAX and _plain_domain_accepted(domain.lower())


@lru_cache(maxsize=4096)
def _plain_domain_accepted(domain: str) -> bool:
    """The validator accepts `domain` and leaves it as it is (no IDNA rewriting, so the
    address's lengths are its own)."""
    try:
        checked = validate_email(f"a@{domain}", check_deliverability=False, strict=True)
    except EmailNotValidError:
        return False
    return bool(checked.domain == checked.ascii_domain == domain)


def _validator_accepts(candidate: str) -> bool:
    try:
        validate_email(candidate, check_deliverability=False, strict=True)
    except EmailNotValidError:
        return False
    return True


def email_and_extra(candidate: str | None, extra: dict[str, Any]) -> str | None:
    """The email to use, or None; an invalid one is kept in extra["invalid_email"]."""
    if candidate is None:
        return None
    if is_valid_email(candidate):
        return candidate
    extra["invalid_email"] = candidate
    return None


def name_fields(
    person: Mapping[str, Any], path: str, *, name_parts: bool = True
) -> dict[str, str | None]:
    """The lead's `first_name`, `last_name` and `full_name`, read alike for every provider.

    They come from the person's `name` and, unless `name_parts` is False (a provider that
    sends a display name only), its `first_name` and `last_name` (see `combine_names`).
    `path` names `person` in error messages.
    """
    full_name = text(person, "name", f"{path}.name")
    if name_parts:
        names = combine_names(
            full_name,
            text(person, "first_name", f"{path}.first_name"),
            text(person, "last_name", f"{path}.last_name"),
        )
    else:
        names = split_name(full_name)
    return {
        "first_name": names.first_name,
        "last_name": names.last_name,
        "full_name": names.full_name,
    }


def extra_fields(data: Mapping[str, Any], mapped: set[str]) -> dict[str, Any]:
    """Every field of `data` not mapped onto the lead schema, nulls left out."""
    return {key: value for key, value in data.items() if key not in mapped and value is not None}


def canonical_json(value: object) -> str:
    """A stable text form of a parsed payload (key order and whitespace do not matter)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=repr)


def event_fingerprint(
    provider_event: str | None,
    event_time: str | None,
    entity_ids: Sequence[str | None],
    payload: object,
) -> str:
    """Idempotency key for providers that send no event id.

    The event name, the event's own timestamp and the ids of what it is about identify one
    event, so a retried delivery (same fields, perhaps re-serialized) gets the same key.
    When the timestamp or every id is missing those could collide across distinct events,
    so the whole parsed payload (canonical form, never the raw bytes) joins the key.
    """
    if event_time is not None and any(part is not None for part in entity_ids):
        return fingerprint(provider_event, event_time, *entity_ids)
    return fingerprint(provider_event, event_time, *entity_ids, canonical_json(payload))


def build_lead_event(
    *,
    provider: str,
    source: str,
    idempotency_key: str,
    event_type: EventType,
    provider_event: str,
    occurred_at: datetime | None,
    received_at: datetime,
    lead_fields: dict[str, Any],
    activity: Activity | None,
    raw: dict[str, Any],
    event_time: str | None = None,
) -> Parsed | Unreadable:
    """Assemble the LeadEvent, or Unreadable when nothing identifies the person.

    `event_time` is the payload's own time as sent: when it does not parse to a UTC
    instant it is kept in the lead's `extra` (as `unreadable_event_time`), so a person can
    see what was sent while the event itself goes through as one without a time.
    """
    if event_time is not None and parse_timestamp(event_time) is None:
        lead_fields = {
            **lead_fields,
            "extra": {**lead_fields.get("extra", {}), "unreadable_event_time": event_time},
        }
    key = lead_key(
        provider=provider,
        email=lead_fields.get("email"),
        linkedin_username=lead_fields.get("linkedin_username"),
        github_username=lead_fields.get("github_username"),
        provider_lead_id=lead_fields.get("provider_lead_id"),
    )
    if key is None:
        return Unreadable(
            "no field identifies the lead (email, LinkedIn or GitHub username, or lead id)",
            provider_event=provider_event,
        )
    lead = Lead(key=key, **lead_fields)
    return Parsed(
        LeadEvent(
            event_id=event_id_for(source, idempotency_key),
            idempotency_key=idempotency_key,
            source=source,
            provider=provider,
            type=event_type,
            provider_event=provider_event,
            occurred_at=occurred_at,
            received_at=received_at,
            lead=lead,
            activity=activity,
            raw=raw,
        )
    )


def not_a_lead_event(
    event_types: Mapping[str, EventType | None], provider_event: str, idempotency_key: str
) -> Ignored:
    """The Ignored answer for a known non-lead event or an unknown event name."""
    if provider_event in event_types:
        return Ignored(provider_event, idempotency_key, f"{provider_event!r} is not a lead event")
    return Ignored(provider_event, idempotency_key, f"unknown event {provider_event!r}")


def identifying_text(value: object) -> str | None:
    """A string or number usable in an idempotency key, else None (never raises)."""
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _number_text(value)
    return None
