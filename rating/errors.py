"""One tree of domain errors, so callers (CLI, gRPC mapping, billing runs) can catch by meaning.

::

    RatingError                    anything rating refuses; never raised directly
    ├── InvalidPriceError          a price definition breaks a rule; carries EVERY Problem found
    │   └── UnknownModelError      the "model" name is not in the registry
    ├── InvalidQuantityError       a quantity, event list or input array is unusable
    │                              (negative, float, wrong dtype/shape, too many decimals)
    ├── RatingOverflowError        an exact result would not fit the fixed-point int64 range
    ├── UnitMismatchError          mixing currencies or units, money × money, money vs a bare number
    └── UnknownDimensionError      a dimensional price asked for a value it does not price

`InvalidPriceError` also subclasses `ValueError` on purpose: raised inside a pydantic validator it is
wrapped with the field path where it happened, and `rating.price.parse_price` unwraps it again so
nested prices (dimensional, points, commitments) report full paths such as ``prices.eu.tiers[1].up_to``.
These are plain exceptions; another layer maps them to gRPC status codes.
"""

from __future__ import annotations

from typing import NamedTuple


class Problem(NamedTuple):
    """One reason a definition is refused: a dotted field path, a stable snake_case code, a sentence."""

    field: str
    code: str
    message: str

    def __str__(self) -> str:
        where = self.field or "<price>"
        return f"{where}: {self.message} [{self.code}]"


class RatingError(Exception):
    """Base of every rating failure."""


class InvalidPriceError(RatingError, ValueError):
    """A price definition is refused; `problems` lists all of them, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        super().__init__("; ".join(str(p) for p in self.problems) or "invalid price")

    @property
    def codes(self) -> list[str]:
        return [p.code for p in self.problems]

    def prefixed(self, prefix: str) -> InvalidPriceError:
        """The same problems seen from an enclosing definition (used for nested prices)."""
        if not prefix:
            return self
        return InvalidPriceError([Problem(_join(prefix, p.field), p.code, p.message) for p in self.problems])


class UnknownModelError(InvalidPriceError):
    """The `model` discriminator names no registered price model."""


class InvalidQuantityError(RatingError, ValueError):
    """A quantity or input array cannot be rated as given."""


class RatingOverflowError(RatingError, ArithmeticError):
    """An exact amount or quantity would leave the int64 fixed-point range; we refuse rather than wrap."""


class UnitMismatchError(RatingError, TypeError):
    """Two amounts in different units were combined, or money was mixed with a bare number."""


class UnknownDimensionError(RatingError, KeyError):
    """A dimensional price has no price (and no default) for the requested dimension value."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown dimension value"


def _join(prefix: str, field: str) -> str:
    if not field:
        return prefix
    if field.startswith("["):
        return prefix + field
    return f"{prefix}.{field}"


__all__ = [
    "InvalidPriceError",
    "InvalidQuantityError",
    "Problem",
    "RatingError",
    "RatingOverflowError",
    "UnitMismatchError",
    "UnknownDimensionError",
    "UnknownModelError",
]
