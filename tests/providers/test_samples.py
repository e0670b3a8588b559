"""The bundled samples (package data for `connectors test`) and the doc fixtures."""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

import pytest

from leadrelay.core.ingest.providers import Ignored, Parsed
from tests.providers.common import FIXTURES, PROVIDERS, RECEIVED_AT
from tests.signing import hmac_hex, js_stringify_many, sign

SAMPLES = Path(str(files("leadrelay.core.app") / "samples"))
SECRET = "sample-secret"


def sample_paths() -> list[Path]:
    return sorted(SAMPLES.glob("*/*.json"))


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_every_documented_event_has_exactly_one_sample(provider: str) -> None:
    names = {path.stem for path in (SAMPLES / provider).glob("*.json")}
    assert names == set(PROVIDERS[provider].event_types)


# How a provider's page saved with Cloudflare's e-mail obfuscation shows an address.
OBFUSCATED_EMAIL = "[email\u00a0protected]"


def _emails_masked(node: object) -> object:
    if isinstance(node, dict):
        return {k: _emails_masked(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_emails_masked(v) for v in node]
    if isinstance(node, str) and ("@" in node or node == OBFUSCATED_EMAIL):
        return "<email>"
    return node


def _strings(node: object) -> list[str]:
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return [node] if isinstance(node, str) else []


def test_every_doc_fixture_is_bundled_with_only_its_addresses_made_plausible() -> None:
    fixtures = sorted(FIXTURES.glob("*/*.json"))
    assert len(fixtures) == 8
    for fixture_path in fixtures:
        bundled = SAMPLES / fixture_path.parent.name / fixture_path.name
        if OBFUSCATED_EMAIL not in fixture_path.read_text(encoding="utf-8"):
            assert bundled.read_bytes() == fixture_path.read_bytes(), fixture_path
        fixture_doc = json.loads(fixture_path.read_text(encoding="utf-8"))
        bundled_doc = json.loads(bundled.read_text(encoding="utf-8"))
        assert _emails_masked(bundled_doc) == _emails_masked(fixture_doc), fixture_path


def test_bundled_samples_carry_plausible_email_addresses() -> None:
    # The demo shows leads reaching the CRMs, which upsert by email.
    assert OBFUSCATED_EMAIL in (FIXTURES / "leadhub" / "lead.created.json").read_text("utf-8")
    for path in sample_paths():
        text = path.read_text(encoding="utf-8")
        assert OBFUSCATED_EMAIL not in text, path
        for value in _strings(json.loads(text)):
            if "@" in value and " " not in value:
                local, _, domain = value.partition("@")
                assert local, (path, value)
                assert "." in domain, (path, value)


@pytest.mark.parametrize("path", sample_paths(), ids=lambda path: f"{path.parent.name}/{path.stem}")
def test_sample_parses_to_its_documented_outcome(path: Path) -> None:
    provider = PROVIDERS[path.parent.name]
    headers = {"X-Webhook-Event": path.stem} if provider.name == "leadshark" else {}
    result = provider.parse(
        json.loads(path.read_text(encoding="utf-8")),
        source=provider.name,
        received_at=RECEIVED_AT,
        headers=headers,
    )
    expected_type = provider.event_types[path.stem]
    if expected_type is None:
        assert isinstance(result, Ignored)
        assert result.provider_event == path.stem
    else:
        assert isinstance(result, Parsed), result
        assert result.event.type == expected_type
        assert result.event.provider_event == path.stem
        assert result.event.occurred_at is not None


def test_every_sample_verifies_when_signed_as_its_doc_says() -> None:
    paths = sample_paths()
    leadshark = [path for path in paths if path.parent.name == "leadshark"]
    signed_texts = js_stringify_many([path.read_text(encoding="utf-8") for path in leadshark])
    for path, signed_text in zip(leadshark, signed_texts, strict=True):
        headers = {"X-Webhook-Signature": hmac_hex(SECRET, signed_text.encode("utf-8"))}
        assert PROVIDERS["leadshark"].verify(headers, path.read_bytes(), [SECRET]) is None
    for path in paths:
        if path.parent.name != "leadshark":
            body = path.read_bytes()
            assert (
                PROVIDERS[path.parent.name].verify(
                    sign(path.parent.name, body, SECRET), body, [SECRET]
                )
                is None
            )
