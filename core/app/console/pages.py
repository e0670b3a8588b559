"""The console's pages (GET): overview, events, one event, deliveries, quarantine,
connectors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import abort, render_template, request

from leadrelay.core.app.console import console
from leadrelay.core.app.console.chart import hourly_bars
from leadrelay.core.app.console.state import ConsoleState, state, webhook_answers
from leadrelay.core.durations import moment
from leadrelay.core.schema import LEAD_EVENT_TYPES
from leadrelay.core.store import console_queries as queries
from leadrelay.core.store.store import DeliveryFilter, load_lead_event, utcnow

EVENT_STATUSES = ("accepted", "ignored", "quarantined", "replayed")
DELIVERY_STATUSES = ("pending", "waiting", "delivered", "skipped", "dead")
DAY = timedelta(hours=24)


@console.app_template_filter("when")
def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value else "-"


@console.app_template_filter("redact")
def _redact(value: str | None) -> str:
    return state().redact(value) if value else ""


def _arg(name: str, allowed: tuple[str, ...] | None = None) -> str | None:
    value = request.args.get(name, "").strip()
    if not value or (allowed is not None and value not in allowed):
        return None
    return value


def _time_arg(name: str) -> datetime | None:
    """An ISO time (UTC unless it says otherwise) or a duration ago (`2h`, `7d`)."""
    value = _arg(name)
    if value is None:
        return None
    try:
        return moment(value, utcnow())
    except ValueError as exc:
        abort(400, f"{name}: {exc}")


def waiting_reason(current: ConsoleState, connector: str, disabled: dict[str, str]) -> str | None:
    """Why a pending delivery of `connector` is not being sent, if it is held."""
    options = current.config.connectors.get(connector)
    if options is None:
        return "connector not in the config"
    if not options.enabled:
        return "connector disabled in the config"
    if connector in disabled:
        return f"connector disabled: {disabled[connector]}"
    return None


@console.get("/")
def overview() -> str:
    current = state()
    now = utcnow()
    answers = webhook_answers()
    by_source = queries.event_counts_by_source(current.store, now - DAY)
    sources = [
        {
            "name": name,
            **by_source.get(name, {}),
            "duplicate": answers.get((name, "duplicate"), 0),
            "refused": answers.get((name, "invalid_signature"), 0),
        }
        for name in sorted(set(current.config.sources) | set(by_source))
    ]
    by_connector = queries.delivery_counts_by_connector(current.store, now - DAY)
    disabled = current.store.disabled_connectors()
    connectors = [
        {
            "name": name,
            "type": options.type,
            "held": waiting_reason(current, name, disabled),
            **by_connector.get(name, {}),
        }
        for name, options in current.config.connectors.items()
    ]
    return render_template(
        "console/overview.html",
        sources=sources,
        connectors=connectors,
        chart=hourly_bars(queries.events_per_hour(current.store, now)),
    )


@console.get("/events")
def events() -> str:
    current = state()
    cursor_text = _arg("after")
    query = queries.EventQuery(
        search=_arg("q"),
        source=_arg("source"),
        type=_arg("type", LEAD_EVENT_TYPES),
        status=_arg("status", EVENT_STATUSES),
        connector=_arg("connector"),
        outcome=_arg("outcome", DELIVERY_STATUSES),
        since=_time_arg("since"),
        until=_time_arg("until"),
        after=queries.EventCursor.decode(cursor_text) if cursor_text else None,
    )
    page = queries.search_events(current.store, query)
    filters = {k: v for k, v in request.args.items() if k != "after" and v}
    return render_template(
        "console/events.html",
        page=page,
        filters=filters,
        sources=sorted(current.config.sources),
        connectors=sorted(current.config.connectors),
        types=LEAD_EVENT_TYPES,
        statuses=EVENT_STATUSES,
        outcomes=DELIVERY_STATUSES,
    )


def _pretty_body(body: bytes | None) -> str | None:
    if body is None:
        return None
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except ValueError:
        return body.decode("utf-8", "replace")


def _lead_rows(stored: dict[str, Any]) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
    """(lead field, value) and (activity field, value) pairs that have a value."""
    if not stored.get("normalized"):
        return [], []
    data = json.loads(stored["normalized"])
    # The person's key and identities, resolved by the store after `normalized` was made.
    if isinstance(data.get("lead"), dict) and stored.get("lead_key"):
        data["lead"]["key"] = stored["lead_key"]
        if stored.get("identities"):
            data["lead"]["identities"] = json.loads(stored["identities"])

    def filled(obj: dict[str, Any] | None) -> list[tuple[str, Any]]:
        return [
            (k, v if isinstance(v, str) else json.dumps(v, ensure_ascii=False))
            for k, v in (obj or {}).items()
            if v not in (None, "", [], {})
        ]

    return filled(data.get("lead")), filled(data.get("activity"))


def _preview(current: ConsoleState, stored: dict[str, Any], connector_name: str) -> str | None:
    """What the connector sends for this event (computed now), secrets masked."""
    if not stored.get("normalized") or stored.get("body") is None:
        return None
    connector = current.connector(connector_name)
    if connector is None:
        return None
    try:
        event = load_lead_event(
            stored["normalized"], stored["body"], stored.get("lead_key"), stored.get("identities")
        )
        preview = connector.preview(event)
    except Exception as exc:  # a preview is a courtesy; the page must still render
        return f"(preview unavailable: {type(exc).__name__})"
    return current.redact(json.dumps(preview, indent=2, ensure_ascii=False, default=str))


def _pretty_request(current: ConsoleState, request: str | None) -> str | None:
    """The request kept with an attempt, indented for reading, secrets masked again."""
    if not request:
        return None
    try:
        text = json.dumps(json.loads(request), indent=2, ensure_ascii=False)
    except ValueError:  # cut at the size limit: shown as kept
        text = request
    return current.redact(text)


@console.get("/events/<event_id>")
def event(event_id: str) -> str:
    current = state()
    stored = current.store.get_event(event_id)
    if stored is None:
        abort(404, f"No event {event_id} (it may have been purged after the retention time).")
    disabled = current.store.disabled_connectors()
    deliveries = current.store.list_deliveries(DeliveryFilter(event_id=event_id, limit=1000))
    for delivery in deliveries:
        delivery["attempt_log"] = [
            {
                **attempt,
                "error": current.redact(attempt["error"]) if attempt["error"] else None,
                "request": _pretty_request(current, attempt.get("request")),
                "duration_ms": round(
                    (attempt["finished_at"] - attempt["started_at"]).total_seconds() * 1000
                ),
            }
            for attempt in current.store.attempts_of(delivery["id"])
        ]
        if delivery["last_error"]:
            delivery["last_error"] = current.redact(delivery["last_error"])
        delivery["held"] = (
            waiting_reason(current, delivery["connector"], disabled)
            if delivery["status"] in queries.OPEN_STATUSES
            else None
        )
        # What a try sent is kept with it; a delivery not sent yet shows what it would send.
        sent = any(attempt["request"] for attempt in delivery["attempt_log"])
        delivery["preview"] = None if sent else _preview(current, stored, delivery["connector"])
    lead, activity = _lead_rows(stored)
    return render_template(
        "console/event.html",
        event=stored,
        lead=lead,
        activity=activity,
        raw=_pretty_body(stored.get("body")),
        headers=json.loads(stored.get("headers") or "{}"),
        deliveries=deliveries,
    )


@console.get("/deliveries")
def deliveries() -> str:
    current = state()
    status = _arg("status", DELIVERY_STATUSES)
    connector = _arg("connector")
    before = _arg("before")
    rows, next_before = queries.deliveries_page(
        current.store,
        status=status,
        connector=connector,
        before_id=int(before) if before and before.isdigit() else None,
    )
    for row in rows:
        if row["last_error"]:
            row["last_error"] = current.redact(row["last_error"])
    return render_template(
        "console/deliveries.html",
        rows=rows,
        next_before=next_before,
        status=status,
        connector=connector,
        connectors=sorted(current.config.connectors),
        statuses=DELIVERY_STATUSES,
    )


@console.get("/quarantine")
def quarantine() -> str:
    current = state()
    cursor_text = _arg("after")
    page = queries.search_events(
        current.store,
        queries.EventQuery(
            status="quarantined",
            after=queries.EventCursor.decode(cursor_text) if cursor_text else None,
        ),
    )
    return render_template("console/quarantine.html", page=page)


@console.get("/connectors")
def connectors() -> str:
    current = state()
    disabled = current.store.disabled_connectors()
    counts = queries.delivery_counts_by_connector(current.store, utcnow() - DAY)
    rows = [
        {
            "name": name,
            "type": options.type,
            "in_config": options.enabled,
            "disabled_reason": disabled.get(name),
            "counts": counts.get(name, {}),
        }
        for name, options in current.config.connectors.items()
    ]
    return render_template("console/connectors.html", rows=rows)
