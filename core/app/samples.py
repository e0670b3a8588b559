"""Bundled sample payloads, signed the way each provider signs them.

Used by `connectors test` (verify → normalize → route → connectors, no receiver needed)
and `connectors trigger` (a signed POST to a running receiver). Generic providers (hmac,
standard-webhooks) and plugins have no bundled samples: give them a payload file.

A payload file is either a provider payload (leadrelay signs it with the source's own
secret) or a captured request `{"headers": {...}, "body": "<exact body text>"}`, which is
verified as received, so a body edited after signing fails like it would in production.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from leadrelay.core.ingest.providers import Provider
from leadrelay.core.ingest.providers.jsjson import stringify


@dataclass(frozen=True)
class SampleRequest:
    name: str  # file name, e.g. "lead.created.json"
    body: bytes
    headers: dict[str, str]
    presigned: bool  # a captured request: headers as recorded, not signed by us


def bundled_sample_files(provider: str) -> list[Path]:
    folder = files("leadrelay.core.app") / "samples" / provider
    if not folder.is_dir():
        return []
    return sorted(
        (Path(str(entry)) for entry in folder.iterdir() if entry.name.endswith(".json")),
        key=lambda p: p.name,
    )


def event_name_of(path: Path) -> str:
    return path.name.removesuffix(".json")


def encode_for(provider: str, payload: Any) -> bytes:
    """The body bytes this provider would send: LeadShark sends JSON.stringify output."""
    if provider == "leadshark":
        return stringify(payload).encode("utf-8")
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def signed_request(
    provider: Provider, payload: Any, secret: str | None, name: str = ""
) -> SampleRequest:
    """The request a genuine sender would make: signed as the source's scheme requires."""
    body = encode_for(provider.name, payload)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"leadrelay-sample/{provider.name}",
    }
    if secret:
        headers.update(provider.sign(body, secret))
    if (
        provider.name == "leadshark"
        and isinstance(payload, dict)
        and isinstance(payload.get("event"), str)
    ):
        headers["X-Webhook-Event"] = payload["event"]
    return SampleRequest(name=name, body=body, headers=headers, presigned=False)


def load_request(provider: Provider, path: Path, secret: str | None) -> SampleRequest:
    """Read a payload file; raises ValueError with a readable message if it is not JSON."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from None
    if isinstance(document, dict) and set(document) == {"headers", "body"}:
        body = document["body"]
        if not isinstance(body, str) or not isinstance(document["headers"], dict):
            raise ValueError(f"{path}: a captured request needs a string body and a headers map")
        headers = {str(k): str(v) for k, v in document["headers"].items()}
        return SampleRequest(path.name, body.encode("utf-8"), headers, presigned=True)
    return signed_request(provider, document, secret, path.name)
