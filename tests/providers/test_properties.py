"""Property tests: whatever JSON arrives, parsers give a typed result and the verifier
returns or raises SignatureError, nothing else. `-m slow` runs many more examples."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadrelay.core.ingest.providers import (
    Ignored,
    Parsed,
    Provider,
    SignatureError,
    jsjson,
)
from leadrelay.core.ingest.providers.gitleads import GitLeadsProvider
from leadrelay.core.schema import event_id_for
from tests.providers.common import PROVIDERS, RECEIVED_AT, assert_read_without_adapter_error
from tests.providers.test_robustness import key_paths, leaf_paths, load, set_at
from tests.providers.test_samples import sample_paths
from tests.signing import SIGNATURE_HEADERS, hmac_hex

FAST_EXAMPLES = 100
SLOW_EXAMPLES = 3000
PROVIDER_NAMES = sorted(PROVIDERS)
SAMPLES = [(path.parent.name, load(path)) for path in sample_paths()]
EVENT_NAMES = sorted({name for p in PROVIDERS.values() for name in p.event_types})

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | st.sampled_from(["", "  ", "45", "jane@example.com", "[email\u00a0protected]", *EVENT_NAMES])
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=25,
)
json_objects = st.dictionaries(
    st.sampled_from(["event", "type", "id", "timestamp", "data", "lead", "occurred_at"])
    | st.text(max_size=6),
    json_values,
    max_size=6,
)
# What JSON.parse can produce: no NaN or Infinity.
finite_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=25,
)
header_maps = st.dictionaries(
    st.sampled_from(["X-Webhook-Event", "x-webhook-event", "Content-Type"]),
    st.sampled_from(EVENT_NAMES) | st.text(max_size=20),
    max_size=2,
)


@st.composite
def mutated_samples(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    provider, original = draw(st.sampled_from(SAMPLES))
    payload = copy.deepcopy(original)
    for _ in range(draw(st.integers(1, 4))):
        paths = list(leaf_paths(payload)) + list(key_paths(payload))
        if not paths or paths == [()]:
            break
        target = paths[draw(st.integers(0, len(paths) - 1))]
        if target:
            set_at(payload, target, draw(json_values))
    return provider, payload


def check_parse(provider: str, payload: Any, headers: dict[str, str]) -> None:
    adapter = PROVIDERS[provider]
    result = adapter.parse(payload, source="src", received_at=RECEIVED_AT, headers=headers)
    assert_read_without_adapter_error(result, payload)
    again = adapter.parse(payload, source="src", received_at=RECEIVED_AT, headers=headers)
    if isinstance(result, Parsed):
        assert isinstance(again, Parsed)
        assert result.event.idempotency_key == again.event.idempotency_key
        assert result.event.event_id == event_id_for("src", result.event.idempotency_key)
        assert result.event.lead.key
    elif isinstance(result, Ignored):
        assert isinstance(again, Ignored)
        assert result.idempotency_key == again.idempotency_key
    else:
        assert result.reason


def verify_error(
    adapter: Provider, headers: dict[str, str], body: bytes, secrets: list[str]
) -> SignatureError | None:
    try:
        adapter.verify(headers, body, secrets)
    except SignatureError as error:
        return error
    return None


def check_verify(
    provider: str,
    body: bytes,
    signature: str | None,
    secrets: list[str],
    adapter: Provider | None = None,
) -> None:
    """Verify returns or raises SignatureError, and its message cannot reveal a secret: it
    is the same message as with other secrets that do not match either. (Looking for the
    secret in the message would flag a secret such as "head" in "missing ... header".)"""
    adapter = adapter or PROVIDERS[provider]
    headers = {} if signature is None else {SIGNATURE_HEADERS[provider]: signature}
    error = verify_error(adapter, headers, body, secrets)
    if error is None:
        return
    assert error.reason in {"missing", "malformed", "mismatch", "not_binding"}
    # Longer than any generated secret, so never one of them.
    others = [f"another-secret-that-matches-nothing-{i}" for i in range(len(secrets))]
    other_error = verify_error(adapter, headers, body, others)
    assert other_error is not None
    assert (other_error.reason, other_error.message) == (error.reason, error.message)


def _as_read(value: Any) -> Any:
    """A value as Python reads it, with the types that tell 1 from 1.0 and -0.0 from 0."""
    if isinstance(value, dict):
        return [(key, _as_read(item)) for key, item in sorted(value.items())]
    if isinstance(value, list):
        return [_as_read(item) for item in value]
    return (type(value).__name__, repr(value))


def check_leadshark_accepts_stringify(value: Any, secret: str) -> None:
    """A body signed as JSON.stringify is accepted exactly when the signed text reads as
    the same values as the body; otherwise it is refused as not binding."""
    body = json.dumps(value, indent=1).encode("utf-8")
    signed = jsjson.stringify(jsjson.parse(body))
    headers = {"X-Webhook-Signature": hmac_hex(secret, signed.encode("utf-8"))}
    form = jsjson.reserialize(body)
    assert form is not None
    if _as_read(json.loads(signed)) == _as_read(json.loads(body)):
        assert form.text == signed
        assert PROVIDERS["leadshark"].verify(headers, body, [secret]) is None
    else:
        assert form.text is None
        with pytest.raises(SignatureError) as caught:
            PROVIDERS["leadshark"].verify(headers, body, [secret])
        assert caught.value.reason == "not_binding"


def _properties(examples: int) -> dict[str, Callable[..., None]]:
    common = settings(
        max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )

    @common
    @given(st.sampled_from(PROVIDER_NAMES), json_values | json_objects, header_maps)
    def parsers_on_arbitrary_json(provider: str, payload: Any, headers: dict[str, str]) -> None:
        check_parse(provider, payload, headers)

    @common
    @given(mutated_samples(), header_maps)
    def parsers_on_mutated_samples(sample: tuple[str, Any], headers: dict[str, str]) -> None:
        check_parse(*sample, headers)

    @common
    @given(
        st.sampled_from(PROVIDER_NAMES),
        st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()),
        st.none() | st.text(max_size=80) | st.from_regex(r"(sha256=)?[0-9a-f]{64}", fullmatch=True),
        st.lists(st.text(max_size=20), max_size=3),
    )
    def verifier_on_arbitrary_input(
        provider: str, body: bytes, signature: str | None, secrets: list[str]
    ) -> None:
        check_verify(provider, body, signature, secrets)

    @common
    @given(finite_json_values, st.text(min_size=1, max_size=20))
    def leadshark_accepts_any_stringified_json(value: Any, secret: str) -> None:
        check_leadshark_accepts_stringify(value, secret)

    return {
        "parsers_on_arbitrary_json": parsers_on_arbitrary_json,
        "parsers_on_mutated_samples": parsers_on_mutated_samples,
        "verifier_on_arbitrary_input": verifier_on_arbitrary_input,
        "leadshark_accepts_any_stringified_json": leadshark_accepts_any_stringified_json,
    }


FAST = _properties(FAST_EXAMPLES)
SLOW = _properties(SLOW_EXAMPLES)


@pytest.mark.parametrize("name", sorted(FAST))
def test_property(name: str) -> None:
    FAST[name]()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SLOW))
def test_property_many_examples(name: str) -> None:
    SLOW[name]()


def test_a_secret_that_is_a_word_of_the_message_is_no_leak() -> None:
    # "head" is in "missing X-GitLeads-Signature header" whatever the secret is.
    check_verify("gitleads", b"{}", None, ["head"])


class LeakyGitLeads(GitLeadsProvider):
    """A verifier with the defect the property looks for."""

    def verify(self, headers: Mapping[str, str], body: bytes, secrets: Sequence[str]) -> None:
        raise SignatureError("mismatch", f"none of {', '.join(secrets)} signed this")


def test_the_verify_property_fails_for_a_message_that_names_the_secret() -> None:
    with pytest.raises(AssertionError):
        check_verify("gitleads", b"{}", None, ["s3cret"], adapter=LeakyGitLeads())
