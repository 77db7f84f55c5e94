"""Decimal ⇄ int64 fixed point with explicit scales: the only door between references and kernels.

Every conversion is exact or raises: too many decimal places is an `InvalidQuantityError`, a value
outside int64 is a `RatingOverflowError`. Python ints are unbounded, so bounds are checked here, before
numba (whose integers wrap silently) ever sees the numbers.
"""

from __future__ import annotations

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


def as_decimal(value: object, what: str = "value") -> Decimal:
    """Accept Decimal, int or decimal string; refuse float (binary floats cannot hold 0.1)."""
    if isinstance(value, bool | float):
        raise InvalidQuantityError(f"{what}: floats are not accepted, pass a string such as '0.1'")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int | str):
        try:
            result = Decimal(value)
        except ArithmeticError:
            raise InvalidQuantityError(f"{what}: {value!r} is not a decimal number") from None
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
    if decimal_places(value) > scale:
        raise InvalidQuantityError(f"{what}: {value} has more than {scale} decimal places")
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
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
    "INT64_MAX",
    "INT64_MIN",
    "MAX_SCALE",
    "Int64Array",
    "as_decimal",
    "check_int64",
    "decimal_places",
    "from_scaled",
    "required_scale",
    "to_fixed_array",
    "to_scaled",
]
