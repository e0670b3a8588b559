"""jsjson: JavaScript's JSON.parse/JSON.stringify, checked against tables and Node."""

from __future__ import annotations

import json
import math
import random
import struct
from typing import Any

import pytest

from leadrelay.core.ingest.providers import jsjson
from tests.signing import NODE, NODE_MISSING_REASON, node_stringify_many


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.0, "1"),
        (1, "1"),
        (-0.0, "0"),
        (0, "0"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (123456789012345680000.0, "123456789012345680000"),
        (1e-7, "1e-7"),
        (1.5e-7, "1.5e-7"),
        (0.000001, "0.000001"),
        (0.0000015, "0.0000015"),
        (0.1, "0.1"),
        (-2.5, "-2.5"),
        (1e300, "1e+300"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (5e-324, "5e-324"),
        (2**53 + 1, "9007199254740992"),
        (2**64, "18446744073709552000"),
        (12345678901234567890123, "1.2345678901234568e+22"),
        (10**400, "null"),
        (math.inf, "null"),
        (-math.inf, "null"),
        (math.nan, "null"),
    ],
)
def test_number_formatting(value: float, expected: str) -> None:
    assert jsjson.format_number(value) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("José", '"José"'),
        ("🚀", '"🚀"'),
        ("\u2028\u2029", '"\u2028\u2029"'),
        ("</script>", '"</script>"'),
        ('"\\/', '"\\"\\\\/"'),
        ("\b\f\n\r\t", '"\\b\\f\\n\\r\\t"'),
        ("\u0000\u001f\u000b", '"\\u0000\\u001f\\u000b"'),
        ("\u007f\u0080", '"\u007f\u0080"'),
        ("\ud800", '"\\ud800"'),
        ("a\udfffb", '"a\\udfffb"'),
        ("\ud83d\ude80", '"🚀"'),  # a pair held as two code points is one character
        ("\ude80\ud83d", '"\\ude80\\ud83d"'),  # reversed: two lone surrogates
    ],
)
def test_string_escaping(text: str, expected: str) -> None:
    assert jsjson.quote(text) == expected


def test_key_order_integer_like_keys_first() -> None:
    value = {
        "b": 1,
        "a": 2,
        "10": 3,
        "2": 4,
        "01": 5,
        "-1": 6,
        "4294967294": 7,
        "4294967295": 8,
        "1.5": 9,
        "\uff10": 10,  # a full-width digit is not an array index
        "0": 11,
    }
    assert jsjson.stringify(value) == (
        '{"0":11,"2":4,"10":3,"4294967294":7,"b":1,"a":2,"01":5,"-1":6,'
        '"4294967295":8,"1.5":9,"\uff10":10}'
    )


def test_nested_values_compact() -> None:
    assert jsjson.stringify({"a": [1.0, None, True, False, {"1": "x", "z": []}], "b": {}}) == (
        '{"a":[1,null,true,false,{"1":"x","z":[]}],"b":{}}'
    )


def test_parse_reads_numbers_as_doubles_and_refuses_nan() -> None:
    assert jsjson.parse(b'{"n": 1, "big": 123456789012345678901}') == {
        "n": 1.0,
        "big": 1.2345678901234568e20,
    }
    assert jsjson.parse("1" * 5000) == math.inf  # no int digit limit, JS gives Infinity
    for text in ("NaN", "[Infinity]", '{"a": -Infinity}'):
        with pytest.raises(ValueError, match="is not JSON"):
            jsjson.parse(text)


def test_python_ints_and_floats_print_alike() -> None:
    assert jsjson.stringify(json.loads('{"a": 1.0, "b": 1, "c": 1E2, "d": -0}')) == (
        '{"a":1,"b":1,"c":100,"d":0}'
    )


def test_non_json_values_are_refused() -> None:
    with pytest.raises(TypeError):
        jsjson.stringify({"when": object()})
    with pytest.raises(TypeError):
        jsjson.stringify({1: "int key"})


# -- against Node, one process for the whole batch ------------------------------------


def _random_float(rng: random.Random) -> float:
    while True:
        value: float = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if math.isfinite(value):
            return value


def _random_string(rng: random.Random) -> str:
    alphabet = ["a", "Z", " ", '"', "\\", "/", "\n", "\u0000", "\u001f", "é", "\u2028",
                "\u2029", "🚀", "王", "\ud800", "\udc00", "<", ">", "&", "\u007f"]  # fmt: skip
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randint(0, 8 if depth < 3 else 5)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return _random_float(rng)
    if kind == 2:
        return rng.choice([rng.randint(-(2**70), 2**70), rng.randint(-1000, 1000)])
    if kind == 3:
        return rng.uniform(-1e-5, 1e-5) * 10 ** rng.randint(-10, 30)
    if kind in (4, 5):
        return _random_string(rng)
    if kind == 6:
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    keys = [rng.choice(["0", "1", "7", "10", "01", "-1", "4294967295", "4294967294", "a", "b"])
            for _ in range(rng.randint(0, 5))] + [_random_string(rng)]  # fmt: skip
    return {key: _random_value(rng, depth + 1) for key in keys}


def _oracle_cases() -> list[str]:
    rng = random.Random(20260424)
    values = [_random_value(rng) for _ in range(400)]
    texts = [json.dumps(value) for value in values]  # ASCII-escaped: lone surrogates travel
    texts += ["1.0", "1e21", "1E-7", "0.000001", "-0", "-0.0", "123456789012345678901234567890",
              "1e400", "-1e400", "0.1e1", '{"b":1,"a":2,"2":3,"1":4}']  # fmt: skip
    return texts


@pytest.mark.skipif(NODE is None, reason=NODE_MISSING_REASON)
def test_stringify_matches_node_on_a_random_batch() -> None:
    texts = _oracle_cases()
    expected = node_stringify_many(texts)
    ours = [jsjson.stringify(jsjson.parse(text)) for text in texts]
    mismatches = [
        (text, mine, theirs)
        for text, mine, theirs in zip(texts, ours, expected, strict=True)
        if mine != theirs
    ]
    assert mismatches == []
    # The Python-parsed value (ints stay ints) must print the same as the JS-parsed one.
    assert [jsjson.stringify(json.loads(text)) for text in texts] == expected


def _reads_alike(text: str, signed_text: str) -> bool:
    """Python reads `text` and the signed text as the same values, types included (key
    order aside: nothing reads it)."""

    def typed(value: Any) -> Any:
        if isinstance(value, dict):
            return sorted((key, typed(item)) for key, item in value.items())
        if isinstance(value, list):
            return [typed(item) for item in value]
        return (type(value).__name__, repr(value))

    return bool(typed(json.loads(text)) == typed(json.loads(signed_text)))


@pytest.mark.skipif(NODE is None, reason=NODE_MISSING_REASON)
def test_the_fast_reserialization_matches_node_or_refuses_to_bind() -> None:
    texts = _oracle_cases()
    expected = node_stringify_many(texts)
    for text, theirs in zip(texts, expected, strict=True):
        form = jsjson.reserialize(text.encode("utf-8"))
        assert form is not None, text
        if form.binding:
            assert form.text == theirs, text
        # Not binding exactly when Python reads the body differently from the signed text.
        assert form.binding == _reads_alike(text, theirs), (text, theirs)


def test_a_body_needing_many_python_side_rewrites_gets_no_signed_form() -> None:
    # 1e-7 prints differently in Python (1e-07): each is rewritten in Python, one call each.
    few = "[" + ",".join(["1e-7"] * jsjson.MAX_REWRITES) + "]"
    many = "[" + ",".join(["1e-7"] * (jsjson.MAX_REWRITES + 1)) + "]"
    form = jsjson.reserialize(few.encode())
    assert form is not None
    assert form.text == "[" + ",".join(["1e-7"] * jsjson.MAX_REWRITES) + "]"
    assert jsjson.reserialize(many.encode()) is None
