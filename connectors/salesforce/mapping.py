"""What an event becomes in Salesforce: the record's fields, their fallbacks, its Task."""

from __future__ import annotations

from typing import Any

from leadrelay.connectors._mapping import (
    activity_label,
    as_text,
    clean_text,
    cut,
    event_time,
    name_text,
    read_path,
    utf16_len,
)
from leadrelay.connectors.salesforce.options import PROFILE_SUMMARY, SalesforceOptions
from leadrelay.core.schema import Lead, LeadEvent

# Standard field lengths (characters), from the Lead object reference.
FIELD_LENGTHS: dict[str, int] = {
    "Salutation": 40,
    "FirstName": 40,
    "MiddleName": 40,
    "LastName": 80,
    "Suffix": 40,
    "Title": 128,
    "Company": 255,
    "Street": 255,
    "City": 40,
    "State": 80,
    "PostalCode": 20,
    "Country": 80,
    "Email": 80,
    "Phone": 40,
    "MobilePhone": 40,
    "Fax": 40,
    "Website": 255,
    "LeadSource": 255,
    "Description": 32000,
}

TASK_FIELD_LENGTHS = {"Subject": 255, "Description": 32000}

# Domains that say nothing about the lead's employer.
FREE_MAIL_DOMAINS = frozenset(
    {
        "gmail.com", "googlemail.com", "yahoo.com", "yahoo.co.uk", "yahoo.fr", "ymail.com",
        "hotmail.com", "hotmail.co.uk", "hotmail.fr", "outlook.com", "live.com", "msn.com",
        "icloud.com", "me.com", "mac.com", "aol.com", "proton.me", "protonmail.com", "pm.me",
        "gmx.com", "gmx.de", "gmx.net", "web.de", "yandex.com", "yandex.ru", "mail.ru",
        "qq.com", "163.com", "126.com", "zoho.com", "fastmail.com", "hey.com",
        "tutanota.com", "duck.com", "users.noreply.github.com", "noreply.github.com",
    }
)  # fmt: skip


def _clean(value: Any) -> Any:
    """A value as Salesforce should receive it, or None for "nothing to send".

    Numbers and booleans go to number and checkbox fields as they are; the rest as text.
    """
    if isinstance(value, int | float):
        return value
    return as_text(value, list_separator=", ") or None


def profile_summary(lead: Lead) -> str | None:
    lines = []
    if lead.bio:
        lines.append(lead.bio.strip())
    if lead.linkedin_url:
        lines.append(f"LinkedIn: {lead.linkedin_url}")
    github = lead.github_url or (
        f"https://github.com/{lead.github_username}" if lead.github_username else None
    )
    if github:
        lines.append(f"GitHub: {github}")
    if lead.tags:
        lines.append("Tags: " + ", ".join(lead.tags))
    return "\n".join(lines) or None


def _source_value(event: LeadEvent, source: str) -> Any:
    if source == PROFILE_SUMMARY:
        return profile_summary(event.lead)
    return read_path(event, source)


def _email_parts(email: str | None) -> tuple[str | None, str | None]:
    if not email or "@" not in email:
        return None, None
    local, _, domain = email.strip().rpartition("@")
    return local or None, domain.lower() or None


def fallback_names(lead: Lead) -> tuple[str | None, str]:
    """(FirstName, LastName) for a lead, LastName never empty (see module docstring)."""
    first = clean_text(lead.first_name)
    last = clean_text(lead.last_name)
    if last:
        return first, last
    full = name_text(lead.full_name)
    if full:
        if first and full.startswith(first + " ") and full[len(first) :].strip():
            return first, full[len(first) :].strip()
        if first and full == first:
            return None, full  # a one-word name: Salesforce needs it as LastName
        return first, full
    local, _ = _email_parts(lead.email)
    for candidate in (local, lead.github_username, lead.linkedin_username):
        if clean_text(candidate):
            return first, clean_text(candidate)
    return first, ""


def fallback_company(lead: Lead) -> str | None:
    company = clean_text(lead.company)
    if company:
        return company
    _, domain = _email_parts(lead.email)
    if domain and domain not in FREE_MAIL_DOMAINS and not domain.endswith(".noreply.github.com"):
        return domain
    return None


def task_record(event: LeadEvent, who_id: str) -> dict[str, Any]:
    """The completed Task logged for an activity event on the record `who_id`."""
    activity = event.activity
    assert activity is not None
    details = [
        activity.text,
        activity.url,
        f"Campaign: {activity.campaign}" if activity.campaign else None,
        f"{event.provider} {event.provider_event or event.type}, via leadrelay",
    ]
    return {
        "WhoId": who_id,
        "Subject": cut(activity_label(activity.kind), TASK_FIELD_LENGTHS["Subject"]),
        "Description": cut("\n".join(filter(None, details)), TASK_FIELD_LENGTHS["Description"]),
        "Status": "Completed",
        "Priority": "Normal",
        "ActivityDate": event_time(event).date().isoformat(),
    }


def build_record(event: LeadEvent, options: SalesforceOptions) -> dict[str, Any]:
    """The field values sent to create a record for `event` (no `attributes`, no `id`)."""
    return build_records(event, options)[0]


def build_records(
    event: LeadEvent, options: SalesforceOptions
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(create, update) field values for `event`.

    Fallback LastName and Company values exist only because Salesforce needs them to create
    a record; an update leaves them out so they never overwrite the record's real values.
    """
    mapping = options.mapping()
    record: dict[str, Any] = {}
    for sf_field, source in mapping.items():
        value = _clean(_source_value(event, source)) if source else None
        if value is not None:
            record[sf_field] = value
    lead = event.lead
    update = dict(record)
    if mapping.get("LastName") is not None and not record.get("LastName"):
        first, last = fallback_names(lead)
        record["LastName"] = last or options.fallback_last_name
        if first is None and mapping.get("FirstName") == "first_name":
            record.pop("FirstName", None)  # a one-word name went to LastName
    if mapping.get("Company") is not None and not record.get("Company"):
        record["Company"] = fallback_company(lead) or options.fallback_company
    return _finish(record, lead, options), _finish(update, lead, options)


def _finish(record: dict[str, Any], lead: Lead, options: SalesforceOptions) -> dict[str, Any]:
    """Email that fits, every standard text field cut to its length, the external id."""
    email = record.get("Email")
    if isinstance(email, str) and utf16_len(email) > FIELD_LENGTHS["Email"]:
        del record["Email"]
        note = f"Email (too long for the Email field): {email}"
        record["Description"] = "\n".join(filter(None, [record.get("Description"), note]))
    for sf_field, value in record.items():
        limit = FIELD_LENGTHS.get(sf_field)
        if limit is not None and isinstance(value, str):
            record[sf_field] = cut(value, limit)
    if options.external_id_field:
        record[options.external_id_field] = lead.key
    return record
