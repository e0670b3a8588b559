"""What a lead becomes in HubSpot: its identity, contact properties and activity note."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from leadrelay.connectors._mapping import (
    LEAD_FIELDS,
    activity_label,
    as_text,
    cut,
    event_time,
    name_text,
    previous_emails,
)
from leadrelay.connectors.hubspot.options import HubSpotOptions
from leadrelay.core.delivery.contract import Skipped
from leadrelay.core.schema import Lead, LeadEvent

# HubSpot refuses a text property value (and a note body) over 65,536 characters.
PROPERTY_VALUE_LIMIT = 65_536
NOTE_BODY_LIMIT = PROPERTY_VALUE_LIMIT
# A contact known by its HubSpot id (found by one of the person's earlier emails).
RECORD_ID = "hs_object_id"
# HubSpot stores multiple-checkbox values separated by semicolons.
LIST_SEPARATOR = ";"


@dataclass(frozen=True)
class Identity:
    """How one lead is found in HubSpot: upsert id property and its value."""

    id_property: str
    value: str

    @property
    def match_key(self) -> str:
        # HubSpot compares emails case-insensitively; custom unique values as they are.
        return self.value.strip().lower() if self.id_property == "email" else self.value


@dataclass(frozen=True)
class UpsertPlan:
    identity: Identity
    properties: dict[str, str]
    # The person's earlier emails, newest first, when upserting by email: a contact made
    # under one of them is the person's, and is updated rather than a second one made.
    previous_emails: tuple[str, ...] = ()


@dataclass(frozen=True)
class ArchivePlan:
    identity: Identity


Plan = UpsertPlan | ArchivePlan | Skipped


@dataclass
class ContactInput:
    trace: str
    identity: Identity
    properties: dict[str, str]
    event_indices: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class NoteInput:
    trace: str
    event_index: int
    contact_id: str
    properties: dict[str, str]


class ContactMapper:
    """Plans each event of a send: upsert the contact, archive it, or skip it (and why)."""

    def __init__(self, options: HubSpotOptions) -> None:
        self.options = options
        self._property_map = options.property_map()

    def plan(self, event: LeadEvent) -> Plan:
        lead = event.lead
        if event.type == "lead.deleted" and self.options.on_delete == "skip":
            return Skipped(
                "lead.deleted: CRM connectors never delete on their own "
                "(set on_delete: archive to archive the HubSpot contact)"
            )
        identity = self._identity(lead)
        if identity is None:
            return Skipped(
                f"lead {lead.key} has no {self.options.id_property} (the HubSpot id_property) and "
                "no key_property is configured to upsert it by its lead key"
            )
        if event.type == "lead.deleted":
            return ArchivePlan(identity)
        previous = previous_emails(lead) if identity.id_property == "email" else ()
        return UpsertPlan(identity, self.contact_properties(lead), previous)

    def _identity(self, lead: Lead) -> Identity | None:
        # The lead key is the person's for good (the store keeps it across email changes
        # and enrichment), so where a property holds it, it finds the one contact.
        if self.options.key_property:
            return Identity(self.options.key_property, lead.key)
        id_property = self.options.id_property
        value = self._lead_values(lead).get(self._property_map[id_property])
        if value is not None and _text(value):
            return Identity(id_property, _text(value))
        return None

    def _lead_values(self, lead: Lead) -> dict[str, Any]:
        values: dict[str, Any] = {name: getattr(lead, name) for name in LEAD_FIELDS}
        values.update({f"extra.{name}": value for name, value in lead.extra.items()})
        full_name = name_text(lead.full_name)
        if lead.first_name is None and lead.last_name is None and full_name:
            first, _, rest = full_name.partition(" ")
            values["first_name"], values["last_name"] = first, rest.strip() or None
        if lead.linkedin_url is None and lead.linkedin_username:
            values["linkedin_url"] = f"https://www.linkedin.com/in/{lead.linkedin_username}"
        return values

    def contact_properties(self, lead: Lead) -> dict[str, str]:
        values = self._lead_values(lead)
        properties = {}
        for prop, lead_field in self._property_map.items():
            text = _text(values.get(lead_field))
            if text:
                # Cut rather than refused: HubSpot would fail the whole contact.
                properties[prop] = cut(text, PROPERTY_VALUE_LIMIT)
        if self.options.key_property:
            properties[self.options.key_property] = lead.key
        return properties


def note_input(index: int, event: LeadEvent, contact_id: str) -> NoteInput:
    """The note logging the activity of `event` on the contact `contact_id`."""
    when = event_time(event)
    return NoteInput(
        trace=str(index),
        event_index=index,
        contact_id=contact_id,
        properties={
            "hs_note_body": note_body(event),
            "hs_timestamp": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        },
    )


def note_body(event: LeadEvent) -> str:
    """The note's HTML: what the lead did, escaped (lead text is untrusted)."""
    activity = event.activity
    assert activity is not None
    label = activity_label(activity.kind)
    parts = [
        f"<p><strong>{html.escape(label)}</strong> "
        f"({html.escape(event.provider)} via leadrelay)</p>"
    ]
    if activity.text:
        text = html.escape(activity.text[: NOTE_BODY_LIMIT // 2]).replace("\n", "<br>")
        parts.append(f"<p>{text}</p>")
    if activity.url:
        url = html.escape(activity.url)
        if activity.url.startswith(("https://", "http://")):
            parts.append(f'<p><a href="{url}">{url}</a></p>')
        else:
            parts.append(f"<p>{url}</p>")
    if activity.campaign:
        parts.append(f"<p>Campaign: {html.escape(activity.campaign)}</p>")
    return cut("".join(parts), NOTE_BODY_LIMIT)


def _text(value: Any) -> str:
    return as_text(value, list_separator=LIST_SEPARATOR)


def match_keys(id_property: str, values: Sequence[Any]) -> list[str]:
    """Normalize the ids an error names the way the inputs they refer to are keyed."""
    return [Identity(id_property, str(value)).match_key for value in values]
