"""What a stored value is: one UTF-8 JSON text that every reader can parse and write
back. Its numbers are finite, it nests at most MAX_DEPTH levels, and its strings hold no
unpaired surrogate. The web side refuses anything else before producing (`loads`,
`encode`); the consumer skips a foreign record that breaks these rules (`is_json`).
"""

import json
import json.scanner
import math
import re

# Deep enough for any document people write; shallow enough that parsing, encoding and
# the browsable API's pure-Python renderer stay far from Python's recursion limit (1000
# frames, shared with the request's own stack).
MAX_DEPTH = 512

_SPACE = " \t\n\r"
_BRACKET_OR_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


class ValueRefused(ValueError):
    """A JSON text or value the store does not keep; `code` is the API's error code."""

    def __init__(self, code, detail):
        super().__init__(detail)
        self.code, self.detail = code, detail


def _non_finite(token):
    raise ValueRefused(
        "non_finite_number", f"{token} is not a JSON number; values must be finite."
    )


def _finite_float(text):
    number = float(text)
    if math.isinf(number):
        _non_finite(text)
    return number


_DECODER = json.JSONDecoder(parse_constant=_non_finite, parse_float=_finite_float)
# json's C scanner, called directly: the restore validates every value, and json.loads'
# Python layers cost more than the scan itself.
_scan = json.scanner.make_scanner(_DECODER)


def too_deep(text, limit=MAX_DEPTH):
    """Whether the JSON text `text` nests arrays and objects more than `limit` deep."""
    if text.count("[") + text.count("{") <= limit:  # the common case, at C speed
        return False
    depth = 0
    for match in _BRACKET_OR_STRING.finditer(text):
        char = match.group()
        if char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


def _too_deep_error():
    return ValueRefused(
        "nesting_too_deep",
        f"The value nests arrays and objects more than {MAX_DEPTH} levels deep.",
    )


def loads(text):
    """The value of the JSON text `text` (str); ValueRefused when the store would not
    keep it, ValueError when it is not JSON."""
    if too_deep(text):
        raise _too_deep_error()
    try:
        value = _DECODER.decode(text)
    except RecursionError:  # the limit above keeps us from here; never a 500
        raise _too_deep_error() from None
    if _SURROGATE_ESCAPE.search(text):
        encode(value)  # an escaped surrogate is fine only as half of a pair
    return value


def encode(value):
    """The compact UTF-8 JSON bytes of `value`; ValueRefused for what no reader could
    read back (NaN, infinities, unpaired surrogates, nesting past MAX_DEPTH)."""
    try:
        text = json.dumps(
            value, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
        if too_deep(text):  # the consumer would skip it
            raise _too_deep_error()
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueRefused(
            "unpaired_surrogate",
            "A string holds an unpaired UTF-16 surrogate (like \\ud800), which UTF-8 "
            "cannot carry.",
        ) from None
    except ValueError as exc:
        if "JSON compliant" in str(exc):
            raise ValueRefused(
                "non_finite_number", "NaN and infinities are not JSON numbers."
            ) from None
        raise
    except RecursionError:
        raise _too_deep_error() from None


def is_json(text):
    """Whether `text` is one JSON value the store keeps (see the module's rules), at C
    speed for the common case."""
    start = len(text) - len(text.lstrip(_SPACE))
    if too_deep(text):
        return False
    try:
        _, end = _scan(text, start)
    except (StopIteration, ValueError, RecursionError):
        return False
    if text[end:].strip(_SPACE):
        return False
    if "\\u" in text and _SURROGATE_ESCAPE.search(text):
        try:
            encode(json.loads(text))
        except ValueRefused:
            return False
    return True
