"""LeadShark: LinkedIn engagement (email captured, profile visits, likes, comments, DMs).

Docs: docs/provider-docs/leadshark-events.txt and leadshark-dm-sent.txt.

Signature: `X-Webhook-Signature: <hex>` (no prefix), HMAC-SHA256 of JavaScript's
`JSON.stringify(payload)`. We accept an HMAC over the raw body (checked first: it is
cheap, and a forged request usually stops there), or over a JS-exact re-serialization of
the parsed body (`jsjson.reserialize`); LeadShark's own Python sample (`json.dumps`,
which escapes non-ASCII) would reject a lead named José, ours does not.

The signature must bind what leadrelay reads. When only the re-serialization matches,
many bodies share one signature (padding, key order, and numbers: `1.0`, `1E0` and `1`
print alike, as do `9007199254740992` and `...993`, or every integer of 310 digits and
`null`). A body holding a number that Python reads differently from its JavaScript print
is refused (401 `signature_not_binding`): LeadShark's Node never writes one. Every other
such variant reads as exactly the same values, so it is the same event (a duplicate),
and a quarantined one is deduplicated on the re-serialized form, not the raw bytes.

Event name: the body's `event` wins because the signature covers it; the unsigned
`X-Webhook-Event` header is only read when the body has no `event`, and even then it is
left out of the idempotency key, so rewriting the header of a captured request cannot
turn one signed body into several events.

LeadShark sends no event id, so the idempotency key is a fingerprint of the event name,
its `timestamp` and the ids of the person and the thing engaged with (comment, post).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

from leadrelay.core.ingest.providers import fields, jsjson
from leadrelay.core.ingest.providers.base import (
    ParseResult,
    Provider,
    SignatureError,
    Unreadable,
    header,
)
from leadrelay.core.schema import Activity, EventType

EVENT_HEADER = "X-Webhook-Event"
ACTIVITY_KINDS: dict[str, str] = {
    "email.captured": "email_captured",
    "new.profile.visit": "profile_visit",
    "new.like": "like",
    "new.comment": "comment",
    "dm.sent": "dm",
}
# Where each event puts the person it is about (default "lead").
_PERSON_KEYS = {"new.profile.visit": "visitor"}
_PERSON_FIELDS = {
    "id",
    "name",
    "first_name",
    "last_name",
    "title",
    "email",
    "linkedin_url",
    "linkedin_username",
}
_EVENT_FIELDS = {"automation", "comment", "message"}


def linkedin_username_from_url(url: str | None) -> str | None:
    """ "https://linkedin.com/in/jane-smith" -> "jane-smith"; None for other URLs."""
    if url is None:
        return None
    try:
        parts = urlsplit(url if "://" in url else f"https://{url}")
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    segments = [segment for segment in parts.path.split("/") if segment]
    is_linkedin = host == "linkedin.com" or host.endswith(".linkedin.com")
    if is_linkedin and len(segments) >= 2 and segments[0] == "in":
        return segments[1]
    return None


def _post_url(post_id: str | None) -> str | None:
    # LinkedIn opens any post URN at /feed/update/<urn>/; bare numeric ids have no such page.
    if post_id is not None and post_id.startswith("urn:li:"):
        return f"https://www.linkedin.com/feed/update/{post_id}/"
    return None


class LeadSharkProvider(Provider):
    name = "leadshark"
    signature_header = "X-Webhook-Signature"
    signature_prefix = ""
    kept_headers = (EVENT_HEADER,)
    event_types: ClassVar[dict[str, EventType | None]] = {
        "email.captured": "lead.created",
        "new.profile.visit": "lead.activity",
        "new.like": "lead.activity",
        "new.comment": "lead.activity",
        "dm.sent": "lead.activity",
    }

    def signed_messages(self, body: bytes) -> list[bytes]:
        """The raw body, and JSON.stringify of it when that differs and binds the body."""
        form = jsjson.reserialize(body)
        if form is None or form.text is None:
            return [body]
        reserialized = form.text.encode("utf-8")
        return [body] if reserialized == body else [body, reserialized]

    def verify(self, headers: Mapping[str, str], body: bytes, secrets: Sequence[str]) -> None:
        digest = self.presented_digest(headers)
        if self.signed_by(body, digest, secrets):
            return
        form = jsjson.reserialize(body)
        if form is not None and form.text is None:
            raise SignatureError(
                "not_binding",
                "the body holds a number JavaScript prints differently (1.0, 1E5, an "
                "integer past 2^53, one that overflows): a LeadShark signature cannot bind it",
            )
        if form is None or not self.signed_by(form.text.encode("utf-8"), digest, secrets):
            raise self.mismatch()

    def canonical_body(self, body: bytes) -> bytes:
        form = jsjson.reserialize(body)
        return body if form is None or form.text is None else form.text.encode("utf-8")

    def read(
        self,
        payload: dict[str, Any],
        *,
        source: str,
        received_at: datetime,
        headers: Mapping[str, str],
    ) -> ParseResult:
        body_event = fields.text(payload, "event", "event")
        header_event = (header(headers, EVENT_HEADER) or "").strip() or None
        provider_event = body_event or header_event
        if provider_event is None:
            return Unreadable(f"no event name: body `event` and {EVENT_HEADER} are missing")
        event_time = fields.text(payload, "timestamp", "timestamp")
        event_type = self.event_types.get(provider_event)
        if event_type is None:
            key = fields.event_fingerprint(body_event, event_time, [], payload)
            return fields.not_a_lead_event(self.event_types, provider_event, key)

        data = fields.require_object(payload, "data", "data")
        person_key = _PERSON_KEYS.get(provider_event, "lead")
        person = fields.require_object(data, person_key, f"data.{person_key}")
        path = f"data.{person_key}"
        extra = fields.extra_fields(person, _PERSON_FIELDS)
        names = fields.name_fields(person, path)
        linkedin_url = fields.text(person, "linkedin_url", f"{path}.linkedin_url")
        lead_fields: dict[str, Any] = {
            **names,
            "provider_lead_id": fields.text(person, "id", f"{path}.id"),
            "email": fields.email_and_extra(fields.text(person, "email", f"{path}.email"), extra),
            "title": fields.text(person, "title", f"{path}.title"),
            "linkedin_url": linkedin_url,
            "linkedin_username": (
                fields.text(person, "linkedin_username", f"{path}.linkedin_username")
                or linkedin_username_from_url(linkedin_url)
            ),
            "extra": extra,
        }

        activity = self._activity(provider_event, data, person_key)
        idempotency_key = fields.event_fingerprint(
            body_event,
            event_time,
            [
                lead_fields["email"],
                lead_fields["linkedin_username"],
                lead_fields["provider_lead_id"],
                fields.identifying_text(person.get("commenter_id")),
                activity.context.get("comment_id"),
                fields.identifying_text(data.get("post_id")),
            ],
            payload,
        )
        return fields.build_lead_event(
            provider=self.name,
            source=source,
            idempotency_key=idempotency_key,
            event_type=event_type,
            provider_event=provider_event,
            occurred_at=fields.parse_timestamp(event_time),
            received_at=received_at,
            lead_fields=lead_fields,
            activity=activity,
            raw=payload,
            event_time=event_time,
        )

    def _activity(self, provider_event: str, data: dict[str, Any], person_key: str) -> Activity:
        # Event-level fields we do not map (post_id, profile_owner, ...) travel as context.
        context: dict[str, Any] = {
            key: value
            for key, value in data.items()
            if key not in _EVENT_FIELDS and key != person_key and value is not None
        }
        campaign = None
        if data.get("automation") is not None:
            automation = fields.require_object(data, "automation", "data.automation")
            campaign = fields.text(automation, "name", "data.automation.name")
            context["automation_id"] = fields.text(automation, "id", "data.automation.id")
        text = fields.text(data, "message", "data.message")
        if data.get("comment") is not None:
            comment = fields.require_object(data, "comment", "data.comment")
            text = fields.text(comment, "text", "data.comment.text")
            context["comment_id"] = fields.text(comment, "id", "data.comment.id")
            context["comment_created_at"] = fields.text(
                comment, "created_at", "data.comment.created_at"
            )
        post_id = fields.text(data, "post_id", "data.post_id")
        return Activity(
            kind=ACTIVITY_KINDS[provider_event],
            text=text,
            url=_post_url(post_id),
            campaign=campaign,
            context={key: value for key, value in context.items() if value is not None},
        )
