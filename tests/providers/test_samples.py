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


def test_every_doc_fixture_is_bundled_verbatim() -> None:
    fixtures = sorted(FIXTURES.glob("*/*.json"))
    assert len(fixtures) == 8
    for fixture_path in fixtures:
        bundled = SAMPLES / fixture_path.parent.name / fixture_path.name
        assert bundled.read_bytes() == fixture_path.read_bytes(), fixture_path


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
