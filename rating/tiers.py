"""Tier tables and the two ways to read them: graduated and volume.

Semantics (the spec these references implement):

* ``up_to`` is inclusive; the last tier has ``up_to: null``. A tier's lower bound is the previous
  tier's ``up_to`` (exclusive), 0 for the first tier.
* A quantity lies in the first tier whose ``up_to`` is ≥ it, so 0 lies in the first tier and 10.5
  lies in the tier after ``up_to: 10``.
* Graduated: each tier prices the units inside it, and its flat amount is charged once the quantity
  enters it. Since 0 lies in the first tier, the first tier's flat amount is charged even at
  quantity 0 — a base fee, as with Stripe's graduated tiers. Later tiers' flat amounts are charged
  only when the quantity exceeds the previous ``up_to``.
* Volume: the whole quantity is priced at the tier it lies in, plus that tier's flat amount.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from rating.base import CumulativePrice
from rating.errors import Problem
from rating.fields import Amount
from rating.result import Line
from rating.rounding import EXACT

#: (up_to or None, per-unit price, flat amount) — the neutral form the references work on.
TierSpec = tuple[Decimal | None, Decimal, Decimal]


class Tier(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    up_to: Amount | None
    unit_amount: Amount = Decimal(0)
    flat_amount: Amount = Decimal(0)


def tier_problems(up_tos: Sequence[Decimal | None], family: str) -> list[Problem]:
    """Every ordering problem of a tier table, each naming the exact tier field."""
    code = f"invalid_{family}_ranges"
    if not up_tos:
        return [Problem("tiers", "empty_tiers", "needs at least one tier; the last one with up_to null")]
    problems: list[Problem] = []
    last = len(up_tos) - 1
    previous: Decimal | None = None
    for i, up in enumerate(up_tos):
        field = f"tiers[{i}].up_to"
        if up is None:
            if i != last:
                problems.append(Problem(field, code, "only the last tier may have up_to null"))
            continue
        if i == last:
            problems.append(
                Problem(
                    field,
                    "missing_unbounded_tier",
                    "the last tier must have up_to null so every quantity is priced",
                )
            )
        if previous is not None and up <= previous:
            problems.append(
                Problem(
                    field,
                    code,
                    f"up_to {up} must be greater than the previous tier's up_to {previous}; "
                    "tiers must be sorted and must not overlap",
                )
            )
        previous = up if previous is None or up > previous else previous
    return problems


def graduated_amount(tiers: Sequence[TierSpec], quantity: Decimal) -> Decimal:
    total = Decimal(0)
    lower = Decimal(0)
    for i, (up_to, unit_amount, flat_amount) in enumerate(tiers):
        if i > 0 and quantity <= lower:
            break  # the quantity never entered this tier
        top = quantity if up_to is None else min(quantity, up_to)
        units = EXACT.subtract(top, lower)
        total = EXACT.add(total, EXACT.add(EXACT.multiply(units, unit_amount), flat_amount))
        if up_to is None:
            break
        lower = up_to
    return total


def graduated_lines(tiers: Sequence[TierSpec], quantity: Decimal) -> tuple[Line, ...]:
    lines: list[Line] = []
    lower = Decimal(0)
    for i, (up_to, unit_amount, flat_amount) in enumerate(tiers):
        if i > 0 and quantity <= lower:
            break
        top = quantity if up_to is None else min(quantity, up_to)
        units = EXACT.subtract(top, lower)
        amount = EXACT.add(EXACT.multiply(units, unit_amount), flat_amount)
        lines.append(Line(f"tier {i + 1}", amount, units, unit_amount, flat_amount, lower, up_to, i))
        if up_to is None:
            break
        lower = up_to
    return tuple(lines)


def volume_tier(tiers: Sequence[TierSpec], quantity: Decimal) -> int:
    for i, (up_to, _, _) in enumerate(tiers):
        if up_to is None or quantity <= up_to:
            return i
    raise AssertionError("validated tier tables end with an unbounded tier")


def volume_amount(tiers: Sequence[TierSpec], quantity: Decimal) -> Decimal:
    _, unit_amount, flat_amount = tiers[volume_tier(tiers, quantity)]
    return EXACT.add(EXACT.multiply(quantity, unit_amount), flat_amount)


def volume_lines(tiers: Sequence[TierSpec], quantity: Decimal) -> tuple[Line, ...]:
    i = volume_tier(tiers, quantity)
    up_to, unit_amount, flat_amount = tiers[i]
    lower = Decimal(0) if i == 0 else tiers[i - 1][0]
    amount = EXACT.add(EXACT.multiply(quantity, unit_amount), flat_amount)
    return (Line(f"tier {i + 1}", amount, quantity, unit_amount, flat_amount, lower, up_to, i),)


class _TieredPrice(CumulativePrice):
    tiers: tuple[Tier, ...]
    family: ClassVar[str] = "graduated"

    def problems(self) -> list[Problem]:
        return tier_problems([t.up_to for t in self.tiers], self.family)

    def specs(self) -> tuple[TierSpec, ...]:
        return tuple((t.up_to, t.unit_amount, t.flat_amount) for t in self.tiers)


class GraduatedPrice(_TieredPrice):
    """Each tier prices the units inside it; see the module docstring for the exact rules."""

    model: Literal["graduated"] = "graduated"
    family: ClassVar[str] = "graduated"

    def amount(self, quantity: Decimal) -> Decimal:
        return graduated_amount(self.specs(), quantity)

    def breakdown(self, quantity: Decimal) -> tuple[Line, ...]:
        return graduated_lines(self.specs(), quantity)


class VolumePrice(_TieredPrice):
    """The whole quantity at the tier it lies in, plus that tier's flat amount."""

    model: Literal["volume"] = "volume"
    family: ClassVar[str] = "volume"

    def amount(self, quantity: Decimal) -> Decimal:
        return volume_amount(self.specs(), quantity)

    def breakdown(self, quantity: Decimal) -> tuple[Line, ...]:
        return volume_lines(self.specs(), quantity)


__all__ = [
    "GraduatedPrice",
    "Tier",
    "TierSpec",
    "VolumePrice",
    "graduated_amount",
    "graduated_lines",
    "tier_problems",
    "volume_amount",
    "volume_lines",
    "volume_tier",
]
