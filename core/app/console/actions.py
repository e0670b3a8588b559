"""The console's actions (POST, CSRF-checked before they run): replay, re-parse, enable
and disable connectors. Each redirects back to a page that shows the result."""

from __future__ import annotations

import logging

from flask import Response, abort, flash, g, redirect, request, url_for

from leadrelay.core.app.console import console, safe_next
from leadrelay.core.app.console.state import state
from leadrelay.core.app.replay import reparse_quarantined
from leadrelay.core.logs import fields
from leadrelay.core.store import console_queries as queries

log = logging.getLogger("leadrelay.console")

# A finished delivery of any kind can be sent again; a pending one is already queued.
REPLAYABLE = ("dead", "skipped", "delivered")
MAX_BULK = 1000


def _back(default: str) -> Response:
    return redirect(safe_next(request.form.get("next"), default))


def _audit(action: str, **details: object) -> None:
    log.info("console %s", action, extra=fields(user=g.console_user, action=action, **details))


@console.post("/events/<event_id>/replay")
def replay_event(event_id: str) -> Response:
    current = state()
    stored = current.store.get_event(event_id)
    if stored is None:
        abort(404, f"No event {event_id}.")
    page = url_for("console.event", event_id=event_id)
    if stored["status"] == "quarantined":
        flash(reparse_quarantined(current.config, current.store, stored).message)
        _audit("reparse", event_id=event_id)
        return redirect(page)
    connector = request.form.get("connector") or None
    if connector is not None and connector not in current.config.connectors:
        abort(400, f"No connector named {connector!r} in the config.")
    queued = current.store.requeue(event_ids=[event_id], connector=connector, statuses=REPLAYABLE)
    _audit("replay", event_id=event_id, connector=connector, queued=queued)
    flash(
        f"{queued} deliveries queued again."
        if queued
        else "Nothing to replay: the deliveries are still queued."
    )
    return redirect(page)


@console.post("/deliveries/replay")
def replay_deliveries() -> Response:
    """Replay the selected dead deliveries, or with `all`, every dead one (of a connector)."""
    current = state()
    connector = request.form.get("connector") or None
    if request.form.get("all"):
        queued = current.store.requeue(connector=connector, statuses=("dead",))
    else:
        ids = [int(v) for v in request.form.getlist("id") if v.isdigit()][:MAX_BULK]
        if not ids:
            flash("Select the deliveries to replay first.")
            return _back(url_for("console.deliveries", status="dead"))
        by_connector: dict[str, list[str]] = {}
        for row in queries.deliveries_by_ids(current.store, ids):
            by_connector.setdefault(row["connector"], []).append(row["event_id"])
        queued = sum(
            current.store.requeue(event_ids=event_ids, connector=name, statuses=("dead",))
            for name, event_ids in by_connector.items()
        )
    _audit("replay dead", connector=connector, queued=queued)
    flash(f"{queued} deliveries queued again.")
    return _back(url_for("console.deliveries", status="dead"))


@console.post("/quarantine/reparse")
def reparse() -> Response:
    """Parse quarantined events again with the current code (the selected ones, or all)."""
    current = state()
    if request.form.get("all"):
        rows = queries.search_events(
            current.store, queries.EventQuery(status="quarantined", limit=MAX_BULK)
        ).rows
        event_ids = [row["event_id"] for row in rows]
    else:
        event_ids = request.form.getlist("event_id")[:MAX_BULK]
    stored = [
        row
        for row in queries.events_by_ids(current.store, event_ids)
        if row["status"] == "quarantined"
    ]
    messages = [reparse_quarantined(current.config, current.store, row).message for row in stored]
    _audit("reparse", events=len(stored))
    for message in messages[:20]:
        flash(message)
    if len(messages) > 20:
        flash(f"… and {len(messages) - 20} more.")
    if not messages:
        flash("No quarantined event selected.")
    return _back(url_for("console.quarantine"))


@console.post("/connectors/<name>/<action>")
def set_connector(name: str, action: str) -> Response:
    current = state()
    if name not in current.config.connectors or action not in ("enable", "disable"):
        abort(404, f"No connector named {name!r} in the config.")
    if action == "disable":
        current.store.set_connector_disabled(name, f"disabled in the console by {g.console_user}")
        flash(f"{name} disabled: its deliveries wait until it is enabled again.")
    else:
        current.store.set_connector_disabled(name, None)
        flash(f"{name} enabled: its waiting deliveries resume.")
    _audit(action, connector=name)
    return _back(url_for("console.connectors"))
