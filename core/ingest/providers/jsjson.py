"""JavaScript's `JSON.parse` / `JSON.stringify`, byte for byte, for LeadShark signatures.

LeadShark signs `JSON.stringify(payload)` of its own object, not the bytes it sends, so a
receiver re-serializes the parsed body exactly as JavaScript would and checks the HMAC of
that. Python's `json.dumps` differs in four ways that matter here, all handled below:

- key order: JavaScript lists "array index" keys ("0" ... "4294967294", canonical form,
  no leading zeros) first in ascending numeric order, then the other keys in insertion
  order;
- numbers: every JSON number is an IEEE double in JavaScript, printed by
  `Number.prototype.toString` (1.0 -> "1", 1e21 -> "1e+21", 1e-7 -> "1e-7",
  0.000001 -> "0.000001", -0 -> "0", 2**64 -> "18446744073709552000"); non-finite
  numbers print as null;
- strings: only `"`, `\\` and control characters below U+0020 are escaped (\\b \\f \\n \\r
  \\t short forms, the others as \\u00xx in lower-case hex) plus lone surrogates
  (\\udxxx); non-ASCII, emoji and U+2028/U+2029 are written as they are;
- separators are compact (`,` and `:`, no spaces).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

_MAX_ARRAY_INDEX = 2**32 - 2
# A surrogate pair first, so that its halves are not taken for lone surrogates.
_NEEDS_ESCAPE = re.compile(r'[\ud800-\udbff][\udc00-\udfff]|["\\\x00-\x1f\ud800-\udfff]')
_SHORT_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def parse(text: str | bytes) -> Any:
    """Parse JSON the way `JSON.parse` does: every number becomes a double.

    Raises ValueError (or RecursionError for absurd nesting) where `JSON.parse` would
    throw; NaN and Infinity literals, which Python's json accepts, are refused.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    return json.loads(text, parse_int=float, parse_constant=_reject_constant)


def _is_array_index(key: str) -> bool:
    if not key.isascii() or not key.isdigit():
        return False
    if len(key) > 1 and key[0] == "0":
        return False
    return int(key) <= _MAX_ARRAY_INDEX


def js_key_order(keys: list[str]) -> list[str]:
    """The order in which JavaScript enumerates an object's own string keys."""
    indices = sorted((key for key in keys if _is_array_index(key)), key=int)
    return indices + [key for key in keys if not _is_array_index(key)]


def format_number(value: int | float) -> str:
    """`JSON.stringify` of one number: `Number.prototype.toString`, null if not finite."""
    try:
        number = float(value)
    except OverflowError:
        return "null"
    if not math.isfinite(number):
        return "null"
    if number == 0:
        return "0"
    sign = "-" if number < 0 else ""
    # repr gives the shortest digit string that round-trips, which is what ECMAScript's
    # Number::toString picks too; only the placement of the decimal point differs.
    mantissa, _, exponent_text = repr(abs(number)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    significant = whole + fraction
    digits = significant.lstrip("0")
    # n: the decimal point sits after n of `digits` (negative: that many zeros before them).
    n = len(whole) + int(exponent_text or 0) - (len(significant) - len(digits))
    digits = digits.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        body = digits + "0" * (n - k)
    elif 0 < n <= 21:
        body = f"{digits[:n]}.{digits[n:]}"
    elif -6 < n <= 0:
        body = "0." + "0" * (-n) + digits
    else:
        exponent = f"e{'+' if n - 1 >= 0 else '-'}{abs(n - 1)}"
        body = (digits if k == 1 else f"{digits[0]}.{digits[1:]}") + exponent
    return sign + body


def _escape(match: re.Match[str]) -> str:
    found = match.group()
    if len(found) == 2:
        # A surrogate pair held as two code points is one character to JavaScript.
        high, low = (ord(char) for char in found)
        return chr(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))
    return _SHORT_ESCAPES.get(found) or f"\\u{ord(found):04x}"


def quote(text: str) -> str:
    """`JSON.stringify` of one string (ES2019 well-formed: lone surrogates escaped)."""
    return '"' + _NEEDS_ESCAPE.sub(_escape, text) + '"'


def stringify(value: Any) -> str:
    """`JSON.stringify(value)` for a parsed JSON value (dict, list, str, number, bool, None).

    Raises TypeError for anything JSON cannot hold.
    """
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int | float):
        return format_number(value)
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(stringify(item) for item in value) + "]"
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise TypeError("object keys must be strings")
        members = (f"{quote(key)}:{stringify(value[key])}" for key in js_key_order(list(value)))
        return "{" + ",".join(members) + "}"
    raise TypeError(f"{type(value).__name__} is not a JSON value")


@dataclass(frozen=True)
class Reserialized:
    """`JSON.stringify(JSON.parse(body))`, or why there is none that binds the body.

    `text` is None when some number in the body reads differently in Python than in the
    signed form (`1.0` and `1E5` read as floats but print as integers, `9007199254740993`
    prints as ...992, an integer of 310 digits prints as null): many bodies would share
    one signature while reading as different events, so no signature can bind them.
    """

    text: str | None

    @property
    def binding(self) -> bool:
        return self.text is not None


class _NotBinding(Exception):
    pass


class _TooCostly(Exception):
    pass


# Numbers JavaScript prints differently from Python's repr (1e-07, 0.00001) and objects
# with array-index keys are rewritten in Python, one call each; a real payload has none,
# so a body with more than this many is not given a signed form at all (a forger would
# otherwise buy a lot of CPU with one request).
MAX_REWRITES = 1000
# Number tokens rewritten in Python travel through the C encoder as strings wrapped in two
# lone surrogates that the body does not contain, then lose their quotes: the encoder
# prints everything else the way JavaScript does (ensure_ascii off), at C speed.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF][0-9a-fA-F]{2}")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_INDEX_KEY = re.compile(r'"(?:[0-9]|\\u003[0-9])+"\s*:')
_LONG_DIGITS = re.compile(r"[0-9]{16}")
# Integers this short are exact doubles and print as written.
_SHORT_INT_DIGITS = 15


def reserialize(body: bytes) -> Reserialized | None:
    """JSON.stringify(JSON.parse(body)) at (nearly) the speed of the C json module.

    None when the body is not JSON, or would cost more than `MAX_REWRITES` Python-side
    rewrites; the caller then has no signed form to check.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    used = {match.lower() for match in _SURROGATE_ESCAPE.findall(text)}
    free = (chr(code) for code in range(0xDFFF, 0xDBFF, -1) if f"\\u{code:04x}" not in used)
    start, end = next(free, None), next(free, None)
    if start is None or end is None:
        return None
    rewrites = markers = 0

    def count_rewrite() -> None:
        nonlocal rewrites
        rewrites += 1
        if rewrites > MAX_REWRITES:
            raise _TooCostly

    def marked(printed: str) -> str:
        nonlocal markers
        count_rewrite()
        markers += 1
        return f"{start}{printed}{end}"

    def integer(token: str) -> int:
        if len(token) > _SHORT_INT_DIGITS and format_number(float(token)) != token:
            raise _NotBinding
        return int(token)  # printed by the encoder exactly as written

    def floating(token: str) -> float | str:
        number = float(token)
        if 1e-4 <= abs(number) < 1e16 and number % 1:
            return number  # repr prints it as JavaScript does: fixed-point, a fraction
        printed = format_number(number)
        if not any(mark in printed for mark in ".e"):
            raise _NotBinding  # JavaScript prints an integer (or null): Python reads a float
        return marked(printed)

    def js_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        # dict() keeps a repeated key at its first place with its last value, as JSON.parse.
        obj = dict(pairs)
        if not pairs or not any(key[:1].isdigit() for key in obj):
            return obj
        order = js_key_order(list(obj))
        if order == list(obj):
            return obj
        count_rewrite()
        return {key: obj[key] for key in order}

    try:
        value = json.loads(
            text,
            parse_int=integer if _LONG_DIGITS.search(text) else None,
            parse_float=floating,
            parse_constant=_reject_constant,
            object_pairs_hook=js_object if _INDEX_KEY.search(text) else None,
        )
        encoded = json.dumps(value, ensure_ascii=False, separators=(",", ":"), check_circular=False)
    except _NotBinding:
        return Reserialized(None)
    except (ValueError, RecursionError, _TooCostly):
        return None
    opening, closing = f'"{start}', f'{end}"'
    if encoded.count(opening) != markers or encoded.count(closing) != markers:
        return None
    encoded = encoded.replace(opening, "").replace(closing, "")
    if _LONE_SURROGATE.search(encoded):
        encoded = _LONE_SURROGATE.sub(lambda match: f"\\u{ord(match.group()):04x}", encoded)
    return Reserialized(encoded)
