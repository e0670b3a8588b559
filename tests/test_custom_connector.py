"""The custom connector example is found through the entry-point group, as after pip install."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from leadrelay.core.app.config import parse_config
from leadrelay.core.delivery.contract import Delivered
from leadrelay.core.delivery.registry import available_types, connector_class
from tests.factories import make_event
from tests.plugins import install_plugin

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "custom_connector"


@pytest.fixture
def installed_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # What `pip install` leaves behind: the package importable and its entry point.
    install_plugin(
        tmp_path,
        monkeypatch,
        {"leadrelay.connectors": {"jsonl": "leadrelay_jsonl:JsonLinesConnector"}},
        name="leadrelay-jsonl",
    )
    monkeypatch.syspath_prepend(str(EXAMPLE))


@pytest.mark.usefixtures("installed_example")
def test_plugin_is_listed_and_loaded_from_yaml(tmp_path: Path) -> None:
    assert "jsonl" in available_types()
    out = tmp_path / "leads.jsonl"
    config = parse_config(
        {"store": "sqlite://", "connectors": {"lake": {"type": "jsonl", "path": str(out)}}},
        env={},
    )
    connector = connector_class("jsonl")("lake", config.connectors["lake"])
    event = make_event(email="ada@example.com")

    assert connector.send([event]) == [Delivered()]
    line = json.loads(out.read_text(encoding="utf-8"))
    assert line["event_id"] == event.event_id
    assert line["lead"]["email"] == "ada@example.com"
    assert "raw" not in line


def test_unknown_type_is_a_config_error_naming_the_key() -> None:
    from leadrelay.core.app.config import ConfigError

    with pytest.raises(ConfigError) as info:
        parse_config({"connectors": {"lake": {"type": "nope"}}}, "c.yaml", env={})
    assert info.value.key_path == "connectors.lake.type"
    assert "unknown connector type 'nope'" in str(info.value)
