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
from decimal import Decimal
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
    # Number::toString picks too; Decimal splits it into digits and exponent.
    digits_tuple = Decimal(repr(abs(number))).normalize().as_tuple()
    digits = "".join(map(str, digits_tuple.digits))
    exponent = digits_tuple.exponent
    assert isinstance(exponent, int)  # finite numbers only
    k = len(digits)
    n = k + exponent  # the decimal point sits after n digits
    if k <= n <= 21:
        body = digits + "0" * (n - k)
    elif 0 < n <= 21:
        body = f"{digits[:n]}.{digits[n:]}"
    elif -6 < n <= 0:
        body = "0." + "0" * (-n) + digits
    else:
        exponent_text = f"e{'+' if n - 1 >= 0 else '-'}{abs(n - 1)}"
        mantissa = digits if k == 1 else f"{digits[0]}.{digits[1:]}"
        body = mantissa + exponent_text
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
