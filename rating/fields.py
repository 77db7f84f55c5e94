"""The decimal field types every price model uses, so the JSON form is the same everywhere.

Decimals travel as strings (`"0.0025"`); JSON integers are accepted because they are exact, JSON
floats are refused (`float_not_allowed`) because `0.1` as a binary float is not 0.1. A value may carry
at most 12 decimal places and its unscaled digits must fit 64 bits (`scale_too_large`), which is what
lets any table be compiled for the int64 kernels.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

from rating.errors import RatingError
from rating.fixedpoint import INT64_MAX, decimal_places, parse_decimal

MAX_DECIMAL_PLACES = 12
DECIMAL_PATTERN = r"^-?[0-9]+(\.[0-9]+)?$"


def _refuse_float(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return parse_decimal(value, "value")
        except RatingError as exc:
            raise PydanticCustomError("invalid_decimal", "{reason}", {"reason": str(exc).partition(": ")[2]}) from None
    if isinstance(value, bool):
        raise PydanticCustomError("bool_not_allowed", "booleans are not numbers; write a decimal string")
    if isinstance(value, float):
        raise PydanticCustomError(
            "float_not_allowed",
            'floats are not accepted for money or quantities; write the value as a string, e.g. "{hint}"',
            {"hint": repr(value)},
        )
    return value


def _check_scale(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise PydanticCustomError("invalid_decimal", "must be a finite decimal")
    places = decimal_places(value)
    if places > MAX_DECIMAL_PLACES:
        raise PydanticCustomError(
            "scale_too_large",
            "has {places} decimal places; at most {max} are allowed",
            {"places": places, "max": MAX_DECIMAL_PLACES},
        )
    if abs(value).scaleb(places) > INT64_MAX:
        raise PydanticCustomError(
            "scale_too_large", "{value} does not fit in 64 bits at its scale", {"value": str(value)}
        )
    return value


def _non_negative(value: Decimal) -> Decimal:
    if value < 0:
        raise PydanticCustomError("negative_amount", "must be zero or more, got {value}", {"value": str(value)})
    return value


def _positive(value: Decimal) -> Decimal:
    if value <= 0:
        raise PydanticCustomError("not_positive", "must be greater than zero, got {value}", {"value": str(value)})
    return value


def _percent(value: Decimal) -> Decimal:
    if value > 100:
        raise PydanticCustomError("percent_out_of_range", "must be at most 100, got {value}", {"value": str(value)})
    return value


_SCHEMA = WithJsonSchema(
    {
        "anyOf": [{"type": "string", "pattern": DECIMAL_PATTERN}, {"type": "integer"}],
        "description": "exact decimal as a string (integers allowed; floats refused), at most 12 places",
    }
)

#: Any exact decimal (may be negative, e.g. a baseline or an SLA threshold).
Dec = Annotated[Decimal, BeforeValidator(_refuse_float), AfterValidator(_check_scale), _SCHEMA]
#: Money or quantity that cannot be negative.
Amount = Annotated[Dec, AfterValidator(_non_negative)]
#: Strictly positive (package sizes).
Positive = Annotated[Dec, AfterValidator(_positive)]
#: A percentage in 0..100.
Percent = Annotated[Dec, AfterValidator(_non_negative), AfterValidator(_percent)]

__all__ = ["DECIMAL_PATTERN", "MAX_DECIMAL_PLACES", "Amount", "Dec", "Percent", "Positive"]
