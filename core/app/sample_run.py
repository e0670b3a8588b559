"""`connectors test`: run sample requests through verify → normalize → route → connectors.

Dry run (default) asks each matching connector for its `preview`: exactly what it would
send, with no network. `--live` calls `send` and reports the typed outcome. A connector
with `enabled: false` is never sent to: it is reported as skipped (disabled), with its
preview, which needs no network. A connector that would skip the event (a lead without
the field it upserts by) is reported as skipped, not as "would send". Nothing is stored:
this runs beside a live deployment without touching its queue.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from leadrelay.core.app.config import Config
from leadrelay.core.app.samples import SampleRequest
from leadrelay.core.delivery.contract import Connector, Delivered, Skipped
from leadrelay.core.delivery.policy import outcome_label
from leadrelay.core.delivery.routing import matches
from leadrelay.core.ingest.providers import Ignored, Parsed, SignatureError, Unreadable
from leadrelay.core.store.store import utcnow


@dataclass
class ConnectorResult:
    connector: str
    type: str
    enabled: bool
    outcome: str  # "would send", "delivered", "skipped", "permanent", "error", …
    ok: bool  # False only when the connector failed; a skip is not a failure
    detail: str = ""
    request: Any = None

    @property
    def skipped(self) -> bool:
        return self.outcome == "skipped"

    def as_dict(self) -> dict[str, Any]:
        return {**vars(self), "skipped": self.skipped}


@dataclass
class SampleResult:
    source: str
    provider: str
    sample: str
    status: str  # accepted | ignored | quarantined | invalid_signature | invalid_json
    ok: bool
    message: str = ""
    provider_event: str | None = None
    type: str | None = None
    lead: dict[str, Any] | None = None
    connectors: list[ConnectorResult] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "provider": self.provider,
            "sample": self.sample,
            "status": self.status,
            "ok": self.ok,
            "message": self.message,
            "provider_event": self.provider_event,
            "type": self.type,
            "lead": self.lead,
            "connectors": [c.as_dict() for c in self.connectors],
        }


def run_sample(
    config: Config,
    connectors: dict[str, Connector],
    source: str,
    request: SampleRequest,
    *,
    live: bool,
) -> SampleResult:
    source_config = config.sources[source]
    provider = source_config.adapter
    result = SampleResult(source, provider.name, request.name, status="accepted", ok=True)
    secrets = source_config.secret_values()
    if secrets:
        try:
            provider.verify(request.headers, request.body, secrets)
        except SignatureError as exc:
            result.status, result.ok = "invalid_signature", False
            result.message = f"{exc.message} (was the body changed after signing, or the secret?)"
            return result
    try:
        payload = json.loads(request.body)
    except ValueError as exc:
        result.status, result.ok, result.message = "invalid_json", False, str(exc)
        return result
    parsed = provider.parse(payload, source=source, received_at=utcnow(), headers=request.headers)
    if isinstance(parsed, Unreadable):
        result.status, result.ok = "quarantined", False
        result.provider_event, result.message = parsed.provider_event, parsed.reason
        return result
    if isinstance(parsed, Ignored):
        result.status, result.provider_event, result.message = (
            "ignored",
            parsed.provider_event,
            parsed.reason,
        )
        return result
    assert isinstance(parsed, Parsed)
    event = parsed.event
    result.provider_event, result.type = event.provider_event, event.type
    result.lead = event.lead.model_dump(exclude_defaults=True)
    for name, connector in connectors.items():
        options = config.connectors[name]
        if not matches(event, options):
            continue
        result.connectors.append(_run_connector(name, connector, event, live=live))
    result.ok = all(c.ok for c in result.connectors)
    return result


def _run_connector(name: str, connector: Connector, event: Any, *, live: bool) -> ConnectorResult:
    options = connector.options
    base = {"connector": name, "type": connector.type_name, "enabled": options.enabled}
    try:
        request = connector.preview(event)
    except Exception as exc:
        return ConnectorResult(**base, outcome="error", ok=False, detail=f"preview failed: {exc}")
    if not options.enabled:
        return ConnectorResult(
            **base, outcome="skipped", ok=True, detail="disabled in config", request=request
        )
    skip_reason = request.get("skipped") if isinstance(request, dict) else None
    if skip_reason:
        return ConnectorResult(
            **base, outcome="skipped", ok=True, detail=str(skip_reason), request=request
        )
    if not live:
        return ConnectorResult(**base, outcome="would send", ok=True, request=request)
    try:
        outcome = connector.send([event])[0]
    except Exception as exc:
        return ConnectorResult(
            **base,
            outcome="error",
            ok=False,
            detail=f"{type(exc).__name__}: {exc}",
            request=request,
        )
    return ConnectorResult(
        **base,
        outcome=outcome_label(outcome),
        ok=isinstance(outcome, Delivered | Skipped),
        detail=outcome.message,
        request=request,
    )
