"""The Block Kit message for one lead event: lead text escaped, every Slack limit kept.

Lead text is untrusted. Every piece of it is escaped for Slack (`&`, `<`, `>`), so a lead
named `<!channel>` shows that text and pings no one, and `<https://evil|click>` is not a
link. Every mrkdwn text object is `verbatim`, so Slack does not turn bare `#channel` or
`@name` look-alikes and URLs in lead text into links or mentions. Link markup is built
only from URLs that parse as http(s) with a host. Mrkdwn emphasis characters (`*`, `_`,
`~`) are left alone: they can only restyle text.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from leadrelay.connectors._mapping import format_number
from leadrelay.core.schema import LeadEvent

# Block Kit and chat.postMessage limits (docs.slack.dev, "Block Kit" reference).
HEADER_TEXT_LIMIT = 150
SECTION_TEXT_LIMIT = 3000
FIELD_TEXT_LIMIT = 2000
FIELDS_PER_SECTION_LIMIT = 10
BLOCKS_PER_MESSAGE_LIMIT = 50
MESSAGE_TEXT_LIMIT = 40_000

# Our own, tighter budgets: a salesperson scans the message; the full record is in the CRM.
_FIELD_VALUE_BUDGET = 300
_ACTIVITY_TEXT_BUDGET = 1500
_BIO_BUDGET = 600
_FALLBACK_TEXT_BUDGET = 1000
# Per link target, escaped: four links and their separators stay under one section's 3000.
_URL_BUDGET = 700

_GITHUB_USERNAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")
_LINKEDIN_USERNAME = re.compile(r"^[A-Za-z0-9_-]{3,100}$")
_PARTIAL_ENTITY = re.compile(r"&(?:a|am|amp|l|lt|g|gt)?$")
_MRKDWN_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})

_TITLES: dict[str, str] = {
    "lead.created": "New lead",
    "lead.updated": "Lead updated",
    "lead.enriched": "Lead enriched",
    "lead.deleted": "Lead deleted",
    "lead.activity": "Lead activity",
}

# Activity kind -> (verb, whether the verb takes the activity's target as its object).
_ACTIVITY_VERBS: dict[str, tuple[str, bool]] = {
    "star": ("starred", True),
    "issue": ("opened an issue in", True),
    "pull_request": ("opened a pull request in", True),
    "code": ("mentioned you in code in", True),
    "comment": ("commented", False),
    "like": ("liked", True),
    "profile_visit": ("visited your profile", False),
    "dm": ("exchanged a DM", False),
    "email_captured": ("left their email", False),
    "form_submitted": ("submitted a form", False),
    "stage_changed": ("moved to stage", True),
    "assigned": ("was assigned to", True),
}
# Where providers put the thing an activity was about (repository, post, form…).
_ACTIVITY_TARGET_KEYS = ("signal_source", "repository", "repo", "post", "target", "form")


def escape_mrkdwn(text: str) -> str:
    """Escape the three characters Slack treats as control characters."""
    return text.translate(_MRKDWN_ESCAPES)


def fit(escaped: str, limit: int) -> str:
    """Cut already-escaped text to at most `limit` characters, ending in an ellipsis.

    Never cuts inside an entity (`&amp;`), which would leave a stray `&` behind.
    """
    if len(escaped) <= limit:
        return escaped
    cut = _PARTIAL_ENTITY.sub("", escaped[: limit - 1])
    return cut + "…"


def _text(value: str, limit: int) -> str:
    return fit(escape_mrkdwn(value), limit)


def safe_link(url: str | None, label: str) -> str | None:
    """`<url|label>` markup for an http(s) URL with a host, else None.

    The URL is escaped and `|` percent-encoded so it cannot end the link early; the label
    is escaped like any lead text.
    """
    if not url:
        return None
    url = url.strip()
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not host:
        return None
    target = escape_mrkdwn(url).replace("|", "%7C")
    if len(target) > _URL_BUDGET:
        return None  # a cut URL would lead somewhere else
    return f"<{target}|{escape_mrkdwn(label)}>"


def _display_name(event: LeadEvent) -> str:
    lead = event.lead
    joined = " ".join(p for p in (lead.first_name, lead.last_name) if p)
    return (
        lead.full_name
        or joined
        or lead.email
        or lead.github_username
        or lead.linkedin_username
        or lead.key
    )


def describe_activity(event: LeadEvent) -> str | None:
    """What the lead did, in words, unescaped: "starred competitor/their-sdk"."""
    activity = event.activity
    if activity is None:
        return None
    verb, takes_object = _ACTIVITY_VERBS.get(
        activity.kind, (activity.kind.replace("_", " "), False)
    )
    target = next(
        (
            str(activity.context[key])
            for key in _ACTIVITY_TARGET_KEYS
            if isinstance(activity.context.get(key), str) and activity.context[key]
        ),
        None,
    )
    if takes_object and target:
        return f"{verb} {target}"
    if target:
        return f"{verb} ({target})"
    return verb


def _links(event: LeadEvent) -> list[str]:
    lead = event.lead
    github = lead.github_url
    if not github and lead.github_username and _GITHUB_USERNAME.match(lead.github_username):
        github = f"https://github.com/{lead.github_username}"
    linkedin = lead.linkedin_url
    if not linkedin and lead.linkedin_username and _LINKEDIN_USERNAME.match(lead.linkedin_username):
        linkedin = f"https://www.linkedin.com/in/{lead.linkedin_username}"
    candidates = [
        safe_link(github, "GitHub"),
        safe_link(linkedin, "LinkedIn"),
        safe_link(lead.website, "Website"),
        safe_link(event.activity.url if event.activity else None, "Activity"),
    ]
    return [link for link in candidates if link]


def _format_time(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None


def build_message(event: LeadEvent) -> dict[str, Any]:
    """The `text` fallback and Block Kit `blocks` for one lead event, within Slack's limits."""
    lead = event.lead
    title = _TITLES.get(event.type, event.type)
    name = _display_name(event)
    role = " at ".join(p for p in (lead.title, lead.company) if p)

    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": _text(f"{title}: {name}", HEADER_TEXT_LIMIT),
                "emoji": False,
            },
        }
    ]

    who_lines = [f"*{_text(name, 200)}*"]
    role_parts = [_text(lead.title, 300)] if lead.title else []
    if lead.company:
        role_parts.append(f"*{_text(lead.company, 300)}*")
    if role_parts:
        who_lines.append(" at ".join(role_parts))
    if lead.email:
        who_lines.append(_text(lead.email, 320))
    who = "\n".join(who_lines)
    blocks.append({"type": "section", "text": {"type": "mrkdwn", "verbatim": True, "text": who}})

    activity_words = describe_activity(event)
    if activity_words and event.activity is not None:
        did = f"*What they did:* {_text(activity_words, 500)}"
        if event.activity.text:
            quoted = _text(event.activity.text, _ACTIVITY_TEXT_BUDGET)
            did += "\n" + "\n".join(f">{line}" for line in quoted.splitlines())
        if event.activity.campaign:
            did += f"\n_Campaign:_ {_text(event.activity.campaign, 200)}"
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "verbatim": True, "text": fit(did, SECTION_TEXT_LIMIT)},
            }
        )

    facts: list[tuple[str, str | None]] = [
        ("Location", lead.location),
        ("Phone", lead.phone),
        ("Score", format_number(lead.score) if lead.score is not None else None),
        ("Stage", lead.stage or lead.status),
        ("Owner", lead.owner),
        ("Tags", ", ".join(lead.tags) if lead.tags else None),
        ("Source", f"{event.source} ({event.provider})"),
    ]
    fields = [
        {
            "type": "mrkdwn",
            "verbatim": True,
            "text": f"*{label}*\n{_text(value, _FIELD_VALUE_BUDGET)}",
        }
        for label, value in facts
        if value
    ][:FIELDS_PER_SECTION_LIMIT]
    blocks.append({"type": "section", "fields": fields})

    if lead.bio:
        bio = "_" + _text(" ".join(lead.bio.split()), _BIO_BUDGET) + "_"
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "verbatim": True, "text": bio}}
        )

    links = _links(event)
    if links:
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "verbatim": True, "text": "  ·  ".join(links)},
            }
        )

    context = " · ".join(
        p
        for p in (
            _text(event.provider_event, 100),
            _text(_format_time(event.occurred_at) or "", 40),
            _text(event.event_id, 60),
        )
        if p
    )
    blocks.append(
        {"type": "context", "elements": [{"type": "mrkdwn", "verbatim": True, "text": context}]}
    )

    summary = f"{title}: {name}"
    if role:
        summary += f" ({role})"
    if activity_words:
        summary += f" {activity_words}"
    text = _text(summary, _FALLBACK_TEXT_BUDGET)

    return {"text": fit(text, MESSAGE_TEXT_LIMIT), "blocks": blocks[:BLOCKS_PER_MESSAGE_LIMIT]}
