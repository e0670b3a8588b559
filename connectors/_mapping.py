"""Reading lead fields by path and writing their values as text, for every connector.

A field path names one value of an event: a lead field (`email`, `tags`), a provider field
kept in `lead.extra` (`extra.plan`), an activity field (`activity.url`) or an event field
(`event.received_at`). Connectors accept the scopes that make sense for them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from leadrelay.core.schema import Activity, Lead, LeadEvent

LEAD_FIELDS = frozenset(Lead.model_fields) - {"extra"}
ACTIVITY_FIELDS = frozenset(Activity.model_fields) - {"context"}
EVENT_FIELDS = frozenset(LeadEvent.model_fields) - {"lead", "activity", "raw"}


def previous_emails(lead: Lead) -> tuple[str, ...]:
    """The person's emails other than the current one, newest first (`lead.identities`
    lists them oldest first): a CRM record made under one of them is the person's."""
    current = (lead.email or "").strip().lower()
    emails = [i.removeprefix("email:") for i in lead.identities if i.startswith("email:")]
    return tuple(e for e in reversed(emails) if e != current)


def path_is_known(
    path: str, *, scopes: frozenset[str], event_fields: frozenset[str] = EVENT_FIELDS
) -> bool:
    """Whether `path` names a value: a lead field, or `<scope>.<name>` for an allowed scope."""
    scope, dot, name = path.partition(".")
    if not dot:
        return path in LEAD_FIELDS
    if scope not in scopes:
        return False
    if scope == "extra":
        return bool(name)
    if scope == "activity":
        return name in ACTIVITY_FIELDS
    return scope == "event" and name in event_fields


def read_path(event: LeadEvent, path: str) -> Any:
    """The value `path` names in `event` (None when the event has none)."""
    scope, dot, name = path.partition(".")
    if not dot:
        return getattr(event.lead, path)
    if scope == "extra":
        return event.lead.extra.get(name)
    if scope == "activity":
        return getattr(event.activity, name) if event.activity else None
    return getattr(event, name)


def clean_text(value: str | None) -> str | None:
    """Text without surrounding white space; None for nothing but white space."""
    if value is None:
        return None
    return value.strip() or None


def name_text(value: str | None) -> str | None:
    """A name's words that have a letter (an emoji or a flag is not a name), or None."""
    if value is None:
        return None
    words = [word for word in value.split() if any(char.isalpha() for char in word)]
    return " ".join(words) or None


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, as Java and JavaScript services (CRMs) count it."""
    return len(text.encode("utf-16-le")) // 2


def cut(text: str, limit: int) -> str:
    """`text` cut to `limit` UTF-16 code units without splitting a character."""
    if utf16_len(text) <= limit:
        return text
    kept, used = [], 0
    for char in text:
        width = 2 if ord(char) > 0xFFFF else 1
        if used + width > limit:
            break
        kept.append(char)
        used += width
    return "".join(kept)


def format_number(value: float) -> str:
    """A number as people write it: `3`, not `3.0`."""
    return str(int(value)) if value.is_integer() else repr(value)


def as_text(value: Any, *, list_separator: str = ", ") -> str:
    """A lead value as the text a destination stores; "" for nothing to send.

    Lists are joined (empty items dropped), mappings become sorted JSON, datetimes ISO 8601.
    """
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format_number(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        items = (as_text(item, list_separator=list_separator) for item in value)
        return list_separator.join(item for item in items if item)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, ensure_ascii=False) if value else ""
    return str(value).strip()


def event_time(event: LeadEvent) -> datetime:
    """When the event happened (when it was received, if the provider did not say), in UTC."""
    when = event.occurred_at or event.received_at
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


_ACTIVITY_LABELS = {
    "star": "Starred a repository",
    "issue": "Opened an issue",
    "pull_request": "Opened a pull request",
    "code": "Code activity",
    "comment": "Commented",
    "like": "Liked a post",
    "profile_visit": "Visited a profile",
    "dm": "Direct message",
    "email_captured": "Email captured",
    "form_submitted": "Submitted a form",
    "stage_changed": "Stage changed",
    "assigned": "Assigned",
}


def activity_label(kind: str) -> str:
    """A CRM-facing title for an activity kind ("Starred a repository")."""
    return _ACTIVITY_LABELS.get(kind, kind.replace("_", " ").capitalize())
