"""The provider plugin example is found through the `leadrelay.providers` entry-point group,
as after `pip install`, and serves a source in a real `connectors serve` process."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path

import pytest
import requests

from leadrelay.core.app.config import ConfigError, parse_config
from leadrelay.core.ingest.providers.gitleads import GitLeadsProvider
from leadrelay.core.ingest.providers.registry import available_providers, provider_class
from leadrelay.core.store.store import Store
from tests.plugins import install_plugin, write_distribution
from tests.process import ServeProcess, killed_after, write_config

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "custom_provider"
ENTRY_POINTS = {"leadrelay.providers": {"acmecal": "leadrelay_acmecal:AcmeCalProvider"}}
SECRET = "acmecal-secret"
BOOKING = {
    "id": "bk_1001",
    "event": "booking.created",
    "created_at": "2026-05-01T14:00:00Z",
    "meeting_type": "Demo call",
    "url": "https://acmecal.example/bk_1001",
    "invitee": {"email": "ada@example.com", "name": "Ada Lovelace", "timezone": "Europe/London"},
}


@pytest.fixture
def installed_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_plugin(tmp_path, monkeypatch, ENTRY_POINTS, name="leadrelay-acmecal")
    monkeypatch.syspath_prepend(str(EXAMPLE))


@pytest.mark.usefixtures("installed_example")
def test_the_plugin_is_listed_and_configured_like_a_built_in() -> None:
    assert "acmecal" in available_providers()
    config = parse_config({"sources": {"meetings": {"provider": "acmecal"}}}, env={})
    assert config.sources["meetings"].adapter.name == "acmecal"


def test_a_plugin_cannot_take_a_built_in_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin(
        tmp_path,
        monkeypatch,
        {"leadrelay.providers": {"gitleads": "leadrelay_acmecal:AcmeCalProvider"}},
    )
    monkeypatch.syspath_prepend(str(EXAMPLE))
    assert provider_class("gitleads") is GitLeadsProvider


def test_an_unknown_provider_is_a_config_error_listing_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"sources": {"m": {"provider": "acmecall"}}}, "c.yaml", env={})
    assert info.value.key_path == "sources.m.provider"
    assert "unknown provider 'acmecall'" in info.value.problem
    assert "standard-webhooks" in info.value.problem


def test_the_installed_example_serves_a_source(tmp_path: Path) -> None:
    site = write_distribution(tmp_path / "site", "leadrelay-acmecal", ENTRY_POINTS)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(EXAMPLE)])}
    config = write_config(
        tmp_path / "connectors.yaml",
        {
            "store": f"sqlite:///{tmp_path / 'leadrelay.db'}",
            "sources": {"meetings": {"provider": "acmecal", "secrets": [SECRET]}},
        },
    )
    body = json.dumps(BOOKING).encode()
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    cancelled = json.dumps({**BOOKING, "event": "booking.cancelled"}).encode()
    cancelled_signature = hmac.new(SECRET.encode(), cancelled, hashlib.sha256).hexdigest()
    with killed_after(ServeProcess(config, env=env)) as server:
        url = server.url("/webhooks/meetings")
        accepted = requests.post(
            url, data=body, headers={"X-AcmeCal-Signature": signature}, timeout=10
        )
        forged = requests.post(
            url, data=body, headers={"X-AcmeCal-Signature": "0" * 64}, timeout=10
        )
        ignored = requests.post(
            url, data=cancelled, headers={"X-AcmeCal-Signature": cancelled_signature}, timeout=10
        )
    assert accepted.json()["status"] == "accepted"
    assert forged.status_code == 401
    assert ignored.json()["status"] == "ignored"
    store = Store(f"sqlite:///{tmp_path / 'leadrelay.db'}")
    try:
        stored = store.get_event(accepted.json()["event_id"])
    finally:
        store.close()
    assert (stored["provider"], stored["lead_key"]) == ("acmecal", "email:ada@example.com")
    normalized = json.loads(stored["normalized"])
    assert normalized["activity"]["kind"] == "meeting_booked"
    assert normalized["lead"]["last_name"] == "Lovelace"
