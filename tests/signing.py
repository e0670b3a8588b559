"""Sign test requests the way each provider's documentation says, independently of the
adapters under test (their `sign()` is not used here).

- GitLeads, GitProductivity, LeadHub: `sha256=<hex>` of HMAC-SHA256 over the raw body.
- LeadShark: plain `<hex>` of HMAC-SHA256 over JavaScript's `JSON.stringify(payload)`.
  Where Node.js is installed, the JSON.stringify text comes from Node itself (one process
  for a whole batch); without Node it comes from our `jsjson` port, and the tests that
  compare against Node are skipped with a reason.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import shutil
import subprocess
from collections.abc import Sequence
from typing import Any

from leadrelay.core.ingest.providers import jsjson

NODE = shutil.which("node")
NODE_MISSING_REASON = "Node.js is not installed: cannot compare with the real JSON.stringify"

SIGNATURE_HEADERS = {
    "gitleads": "X-GitLeads-Signature",
    "gitproductivity": "X-GitProductivity-Signature",
    "leadhub": "X-LeadHub-Signature",
    "leadshark": "X-Webhook-Signature",
}
SIGNATURE_PREFIXES = {"gitleads": "sha256=", "gitproductivity": "sha256=", "leadhub": "sha256="}
LEADSHARK_EVENT_HEADER = "X-Webhook-Event"

# Reads a JSON array of JSON texts on stdin, answers the array of JSON.stringify(JSON.parse(t)).
_NODE_STRINGIFY = (
    "const texts = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
    "process.stdout.write(JSON.stringify(texts.map((t) => JSON.stringify(JSON.parse(t)))));"
)


def hmac_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def node_stringify_many(texts: Sequence[str]) -> list[str]:
    """`JSON.stringify(JSON.parse(text))` for each text, computed by Node in one process."""
    if NODE is None:
        raise RuntimeError(NODE_MISSING_REASON)
    completed = subprocess.run(
        [NODE, "-e", _NODE_STRINGIFY],
        input=json.dumps(list(texts)),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=True,
    )
    results: list[str] = json.loads(completed.stdout)
    return results


def js_stringify_many(texts: Sequence[str]) -> list[str]:
    """JSON.stringify of each parsed text: by Node where installed, else by jsjson."""
    if NODE is not None:
        return node_stringify_many(texts)
    return [jsjson.stringify(jsjson.parse(text)) for text in texts]


@functools.lru_cache(maxsize=256)
def _js_stringify_cached(text: str) -> str:
    # Tests sign the same few bodies again and again; one Node process per distinct body.
    [result] = js_stringify_many([text])
    return result


def leadshark_headers(signed_text: str, secret: str, *, event: str | None = None) -> dict[str, str]:
    """Headers for a LeadShark request whose JSON.stringify(payload) is `signed_text`."""
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADERS["leadshark"]: hmac_hex(secret, signed_text.encode("utf-8")),
    }
    if event is not None:
        headers[LEADSHARK_EVENT_HEADER] = event
    return headers


def sign(provider: str, body: bytes, secret: str) -> dict[str, str]:
    """Headers a genuine sender of `provider` would attach to `body`."""
    if provider == "leadshark":
        payload = json.loads(body)
        event = payload.get("event") if isinstance(payload, dict) else None
        signed_text = _js_stringify_cached(body.decode("utf-8"))
        return leadshark_headers(
            signed_text, secret, event=event if isinstance(event, str) else None
        )
    digest = hmac_hex(secret, body)
    return {
        "Content-Type": "application/json",
        SIGNATURE_HEADERS[provider]: f"{SIGNATURE_PREFIXES[provider]}{digest}",
    }


def encode(payload: Any, *, ascii_only: bool = False) -> bytes:
    """A request body as a typical sender writes it: compact UTF-8, non-ASCII unescaped.

    `ascii_only` escapes non-ASCII as \\uXXXX (needed for lone surrogates, which UTF-8
    cannot carry raw).
    """
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=ascii_only)
    return text.encode("utf-8")
