"""Every sample, mutated field by field: nulls, missing fields, numbers as strings and very
long strings give typed results only, and the values that survive are the ones sent."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from leadrelay.core.ingest.providers import Parsed, Unreadable
from leadrelay.core.ingest.providers.envelope import LeadEnvelope, LeadReading
from leadrelay.core.ingest.providers.gitleads import GitLeadsProvider
from tests.providers.common import (
    PROVIDERS,
    RECEIVED_AT,
    assert_read_without_adapter_error,
    fixture_text,
)
from tests.providers.test_samples import sample_paths

Path_ = tuple[str | int, ...]
LONG = 200_000


def leaf_paths(value: Any, prefix: Path_ = ()) -> Iterator[Path_]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaf_paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from leaf_paths(item, (*prefix, index))
    else:
        yield prefix


def key_paths(value: Any, prefix: Path_ = ()) -> Iterator[Path_]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from key_paths(item, (*prefix, key))


def get(payload: Any, path: Path_) -> Any:
    for part in path:
        payload = payload[part]
    return payload


def set_at(payload: Any, path: Path_, value: Any) -> None:
    get(payload, path[:-1])[path[-1]] = value


def parse(path: Path, payload: Any) -> Any:
    provider = PROVIDERS[path.parent.name]
    return provider.parse(payload, source=provider.name, received_at=RECEIVED_AT, headers={})


def load(path: Path) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return payload


SAMPLES = sample_paths()
IDS = [f"{path.parent.name}/{path.stem}" for path in SAMPLES]


@pytest.mark.parametrize("path", SAMPLES, ids=IDS)
def test_each_leaf_set_to_null(path: Path) -> None:
    original = load(path)
    for leaf in leaf_paths(original):
        payload = copy.deepcopy(original)
        set_at(payload, leaf, None)
        result = parse(path, payload)
        assert_read_without_adapter_error(result, leaf)
        if isinstance(result, Parsed):
            assert result.event.raw == payload


@pytest.mark.parametrize("path", SAMPLES, ids=IDS)
def test_each_key_removed(path: Path) -> None:
    original = load(path)
    for key_path in key_paths(original):
        payload = copy.deepcopy(original)
        del get(payload, key_path[:-1])[key_path[-1]]
        assert_read_without_adapter_error(parse(path, payload), key_path)


@pytest.mark.parametrize("path", SAMPLES, ids=IDS)
def test_numbers_as_strings_read_the_same(path: Path) -> None:
    original = load(path)
    payload = copy.deepcopy(original)
    for leaf in leaf_paths(original):
        value = get(original, leaf)
        if isinstance(value, int | float) and not isinstance(value, bool):
            set_at(payload, leaf, str(value))
    before, after = parse(path, original), parse(path, payload)
    assert_read_without_adapter_error(before)
    assert_read_without_adapter_error(after)
    assert type(after) is type(before)
    if isinstance(before, Parsed) and isinstance(after, Parsed):
        assert after.event.lead.key == before.event.lead.key
        assert after.event.lead.score == before.event.lead.score
        assert after.event.lead.provider_lead_id == before.event.lead.provider_lead_id


@pytest.mark.parametrize("path", SAMPLES, ids=IDS)
def test_very_long_strings_are_kept_whole(path: Path) -> None:
    original = load(path)
    payload = copy.deepcopy(original)
    for leaf in leaf_paths(original):
        value = get(original, leaf)
        if isinstance(value, str) and leaf[-1] not in {"event", "type"}:
            set_at(payload, leaf, value + "x" * LONG)
    result = parse(path, payload)
    assert_read_without_adapter_error(result)
    if isinstance(result, Parsed):
        lead = result.event.lead
        texts = [lead.full_name, lead.title, lead.company, lead.bio, lead.phone, lead.stage]
        assert any(text is not None and len(text) > LONG for text in texts)
        for text in texts:
            assert text is None or len(text) < 2 * LONG + 100


class BrokenGitLeads(GitLeadsProvider):
    """An adapter with a defect: it raises on a payload it should read."""

    def read_lead(self, envelope: LeadEnvelope, payload: dict[str, Any]) -> LeadReading:
        raise ZeroDivisionError("a bug in the adapter")


def test_an_adapter_that_raises_is_quarantined_and_told_apart_from_an_unreadable_shape(
    caplog: pytest.LogCaptureFixture,
) -> None:
    payload = json.loads(fixture_text("gitleads", "lead.created"))
    unreadable_shape = {**payload, "data": "not an object"}

    with caplog.at_level(logging.ERROR, logger="leadrelay.providers"):
        broken = BrokenGitLeads().parse(payload, source="gitleads", received_at=RECEIVED_AT)
        shape = BrokenGitLeads().parse(unreadable_shape, source="gitleads", received_at=RECEIVED_AT)

    assert isinstance(broken, Unreadable)
    assert broken.adapter_error == "ZeroDivisionError"
    assert broken.provider_event == "lead.created"
    assert isinstance(shape, Unreadable)
    assert shape.adapter_error is None
    assert [record.exc_info[0] for record in caplog.records if record.exc_info] == [
        ZeroDivisionError
    ]
    # The suites' check sees the defect and lets the unreadable shape pass.
    with pytest.raises(AssertionError):
        assert_read_without_adapter_error(broken)
    assert_read_without_adapter_error(shape)
