"""Decimal ⇄ int64 fixed point with explicit scales: the only door between references and kernels.

Every conversion is exact or raises: too many decimal places is an `InvalidQuantityError`, a value
outside int64 is a `RatingOverflowError`. Python ints are unbounded, so bounds are checked here, before
numba (whose integers wrap silently) ever sees the numbers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import Decimal

import numpy as np
import numpy.typing as npt

from rating.errors import InvalidQuantityError, RatingOverflowError

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
#: Largest scale a kernel column may use: 10**18 still fits int64.
MAX_SCALE = 18

Int64Array = npt.NDArray[np.int64]


#: The one notation for exact decimals in text, everywhere (ingest values, API amounts, plan JSON, CLI):
#: ASCII digits, an optional sign and point; no exponent, spaces, underscores, NaN/Infinity or non-ASCII
#: digits, all of which Python's `Decimal()` would quietly accept.
DECIMAL_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
#: Longest decimal text accepted: int64 has 19 digits, so 40 characters hold any value at any scale
#: we use, and nothing longer can make parsing or arithmetic expensive.
DECIMAL_CHARS_MAX = 40


def not_plain_decimal(text: str, what: str = "value") -> str:
    """How every edge words a decimal that breaks the one notation (`1e-3`, `NaN`, ` 5`): ingest's values and
    plan files' amounts alike, so the same mistake reads the same wherever it is made."""
    shown = text if len(text) <= 40 else text[:40] + "…"
    hint = ""
    if len(text) <= 40 and re.fullmatch(r"[+-]?[0-9.]+[eE][+-]?[0-9]{1,3}", text.strip()):
        try:
            plain = format(Decimal(text.strip()), "f")
        except ArithmeticError:
            plain = ""
        hint = f"; write {plain}" if 0 < len(plain) <= 40 else ""
    return f"{what}: {shown!r} is not a decimal in plain notation (ASCII digits and one point, like 12.50){hint}"


def parse_decimal(text: str, what: str = "value", chars_max: int = DECIMAL_CHARS_MAX) -> Decimal:
    """Exact decimal from text in plain notation; anything else is an `InvalidQuantityError` naming `what`."""
    if len(text) > chars_max:
        raise InvalidQuantityError(f"{what}: {len(text)} characters; a decimal has at most {chars_max}")
    if DECIMAL_RE.fullmatch(text) is None:
        raise InvalidQuantityError(not_plain_decimal(text, what))
    return Decimal(text)  # exact: no context rounding applies to construction from a string


def parse_scaled(text: str, scale: int, what: str = "value", chars_max: int = DECIMAL_CHARS_MAX) -> int:
    """Decimal text as an exact count of 10**-scale steps (int64); more places than `scale` is refused,
    never rounded (trailing zeros are fine: "1.50" at scale 1 is 15)."""
    return to_scaled(parse_decimal(text, what, chars_max), scale, what)


def as_decimal(value: object, what: str = "value") -> Decimal:
    """Accept Decimal, int or decimal string; refuse float (binary floats cannot hold 0.1)."""
    if isinstance(value, bool | float):
        raise InvalidQuantityError(f"{what}: floats are not accepted, pass a string such as '0.1'")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        result = parse_decimal(value, what)
    else:
        raise InvalidQuantityError(f"{what}: expected a decimal string, int or Decimal, got {type(value).__name__}")
    if not result.is_finite():
        raise InvalidQuantityError(f"{what}: {value!r} is not finite")
    return result


def decimal_places(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


def check_int64(value: int, what: str) -> int:
    if not INT64_MIN <= value <= INT64_MAX:
        raise RatingOverflowError(f"{what} = {value} does not fit in 64 bits")
    return value


def to_scaled(value: Decimal, scale: int, what: str = "value") -> int:
    """`value × 10**scale` as an int64-range Python int; refuses values that need rounding."""
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    # Trailing zeros are not places: "1.50" fits scale 1. Strip them before counting.
    while exponent < 0 and len(digits) > 1 and digits[-1] == 0:
        digits, exponent = digits[:-1], exponent + 1
    if exponent < 0 and digits == (0,):
        exponent = 0
    if max(0, -exponent) > scale:
        raise InvalidQuantityError(f"{what}: {value} has more than {scale} decimal places")
    if len(digits) + exponent + scale > 40:  # certainly beyond int64: refuse before building a huge int
        raise RatingOverflowError(f"{what} = {value} does not fit in 64 bits at scale {scale}")
    unscaled = int("".join(map(str, digits)) or "0")
    shift = exponent + scale
    result = unscaled * 10**shift if shift >= 0 else unscaled // 10**-shift
    return check_int64(-result if sign else result, what)


def from_scaled(value: int, scale: int) -> Decimal:
    return Decimal(value).scaleb(-scale)


def to_fixed_array(values: Iterable[object], scale: int, what: str = "quantity") -> Int64Array:
    """Decimal-like values as one int64 column at `scale`."""
    if not 0 <= scale <= MAX_SCALE:
        raise InvalidQuantityError(f"{what}: scale {scale} is outside 0..{MAX_SCALE}")
    return np.array([to_scaled(as_decimal(v, what), scale, what) for v in values], dtype=np.int64)


def required_scale(values: Iterable[Decimal]) -> int:
    return max((decimal_places(v) for v in values), default=0)


__all__ = [
    "DECIMAL_CHARS_MAX",
    "DECIMAL_RE",
    "INT64_MAX",
    "INT64_MIN",
    "MAX_SCALE",
    "Int64Array",
    "as_decimal",
    "check_int64",
    "decimal_places",
    "from_scaled",
    "not_plain_decimal",
    "parse_decimal",
    "parse_scaled",
    "required_scale",
    "to_fixed_array",
    "to_scaled",
]
