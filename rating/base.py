"""What every price model shares: frozen pydantic config, rule checking, and the quote protocol.

Rules that involve several fields (tier order, per-kind required fields) live in `problems()`, which
returns every violation at once; `_check_rules` turns a non-empty list into `InvalidPriceError`.
Usage-shaped models ("cumulative" models) define `amount(q)` as the Decimal reference that reads as
the spec; event-level rating of such a model is always the difference of that cumulative function,
which is what makes per-event amounts sum exactly to the total.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Annotated, Any, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, model_validator
from pydantic_core import PydanticCustomError

from rating.errors import InvalidPriceError, InvalidQuantityError, Problem
from rating.fixedpoint import as_decimal
from rating.result import Line, Quote
from rating.rounding import EXACT
from rating.unit import CURRENCY_MINOR_UNITS, Unit, currency


def _known_currency(code: str) -> str:
    if code not in CURRENCY_MINOR_UNITS:
        raise PydanticCustomError(
            "unknown_currency", "unknown currency {code!r}; use an ISO 4217 code such as USD", {"code": code}
        )
    return code


CurrencyCode = Annotated[str, AfterValidator(_known_currency)]


class PriceModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        problems = self.problems()
        if problems:
            raise InvalidPriceError(problems)
        return self

    def to_json(self) -> dict[str, Any]:
        """The stable JSON form: every field, decimals as strings, `model` always present."""
        return self.model_dump(mode="json")

    def problems(self) -> list[Problem]:
        """Cross-field rule violations; field-level ones are raised by the field types."""
        return []

    def unit(self) -> Unit:
        raise NotImplementedError

    def quote(self, quantity: Decimal, events: Sequence[Decimal] | None = None, dimension: str | None = None) -> Quote:
        raise NotImplementedError


class CumulativePrice(PriceModel):
    """A price whose amount is a function of the period's total quantity alone."""

    currency: CurrencyCode = "USD"

    def unit(self) -> Unit:
        return currency(self.currency)

    def amount(self, quantity: Decimal) -> Decimal:
        raise NotImplementedError

    def breakdown(self, quantity: Decimal) -> tuple[Line, ...]:
        raise NotImplementedError

    def event_amounts(self, events: Sequence[Decimal]) -> tuple[Decimal, ...]:
        """Marginal amount of each event given the running quantity before it.

        e_k = amount(Q_k) − amount(Q_{k−1}) with Q_0's amount taken as zero, so the first event also
        carries the base (e.g. the first graduated tier's flat fee) and Σ e_k = amount(Q_n) exactly.
        For volume prices a marginal can be negative: crossing into a cheaper tier re-prices every
        earlier unit. With no events at all there is nothing to carry the base; the period total
        `amount(0)` is still what the invoice charges.
        """
        out: list[Decimal] = []
        running = Decimal(0)
        previous = Decimal(0)
        for i, e in enumerate(events):
            running = EXACT.add(running, check_quantity(e, f"events[{i}]"))
            cumulative = self.amount(running)
            out.append(EXACT.subtract(cumulative, previous))
            previous = cumulative
        return tuple(out)

    def quote(self, quantity: Decimal, events: Sequence[Decimal] | None = None, dimension: str | None = None) -> Quote:
        q = check_quantity(quantity)
        event_amounts = None
        if events is not None:
            evs = [check_quantity(e, f"events[{i}]") for i, e in enumerate(events)]
            check_events_sum(q, evs)
            event_amounts = self.event_amounts(evs)
        return Quote(
            model=str(getattr(self, "model", type(self).__name__)),
            quantity=q,
            amount=self.amount(q),
            unit=self.unit(),
            lines=self.breakdown(q),
            event_amounts=event_amounts,
        )


def check_quantity(value: object, what: str = "quantity") -> Decimal:
    q = as_decimal(value, what)
    if q < 0:
        raise InvalidQuantityError(f"{what} must be zero or more, got {q}")
    return q


def check_events_sum(quantity: Decimal, events: Sequence[Decimal]) -> None:
    total = sum(events, Decimal(0))
    if total != quantity:
        raise InvalidQuantityError(f"events sum to {total} but quantity is {quantity}; they must agree")


__all__ = ["CumulativePrice", "CurrencyCode", "PriceModel", "check_events_sum", "check_quantity"]
