"""Units amounts are counted in: ISO 4217 currencies with their minor units, and tenant points.

A unit's `scale` is how many decimal places a *settled* amount carries (USD 2, JPY 0, BHD 3; a
tenant's points unit chooses its own). Rated amounts may carry more places until rounded once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from rating.errors import InvalidPriceError, Problem

UnitKind = Literal["currency", "points"]

#: ISO 4217 minor units for the currencies Tally settles in; extend here, never guess.
CURRENCY_MINOR_UNITS: dict[str, int] = {
    "AED": 2, "AUD": 2, "BHD": 3, "BRL": 2, "CAD": 2, "CHF": 2, "CLP": 0, "CNY": 2, "CZK": 2,
    "DKK": 2, "EUR": 2, "GBP": 2, "HKD": 2, "HUF": 2, "IDR": 2, "ILS": 2, "INR": 2, "ISK": 0,
    "JOD": 3, "JPY": 0, "KRW": 0, "KWD": 3, "MXN": 2, "NOK": 2, "NZD": 2, "OMR": 3, "PLN": 2,
    "SAR": 2, "SEK": 2, "SGD": 2, "THB": 2, "TND": 3, "TRY": 2, "TWD": 2, "UGX": 0, "USD": 2,
    "VND": 0, "XAF": 0, "XOF": 0, "ZAR": 2,
}  # fmt: skip

MAX_UNIT_SCALE = 12
_POINTS_CODE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


@dataclass(frozen=True, slots=True)
class Unit:
    """What an amount counts; two amounts combine only when their units are equal."""

    code: str
    scale: int
    kind: UnitKind = "currency"

    def __str__(self) -> str:
        return self.code


def currency(code: str) -> Unit:
    """The currency unit for an ISO code; an unknown code is refused, never defaulted."""
    try:
        return Unit(code, CURRENCY_MINOR_UNITS[code], "currency")
    except KeyError:
        raise InvalidPriceError(
            [Problem("currency", "unknown_currency", f"unknown currency {code!r}; use an ISO 4217 code")]
        ) from None


def points(code: str, scale: int = 0) -> Unit:
    """A tenant-defined points unit (lower-case code, so it can never collide with a currency)."""
    problems = []
    if not _POINTS_CODE.match(code):
        problems.append(Problem("points_unit", "invalid_points_unit", "must be lower_snake_case, 1-32 characters"))
    if not 0 <= scale <= MAX_UNIT_SCALE:
        problems.append(Problem("points_scale", "scale_too_large", f"must be 0..{MAX_UNIT_SCALE}"))
    if problems:
        raise InvalidPriceError(problems)
    return Unit(code, scale, "points")


__all__ = ["CURRENCY_MINOR_UNITS", "MAX_UNIT_SCALE", "Unit", "currency", "points"]
