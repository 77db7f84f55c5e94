"""`rating.quote`: one price, one quantity, an exact answer that explains itself."""

from __future__ import annotations

from collections.abc import Sequence

from rating.fixedpoint import as_decimal
from rating.price import parse_price
from rating.result import Quote


def quote(
    price: object,
    quantity: object,
    events: Sequence[object] | None = None,
    *,
    dimension: str | None = None,
) -> Quote:
    """Rate `quantity` under `price` (a model or its JSON dict/string) with the Decimal reference.

    `events` are per-transaction amounts for percentage models, and per-event quantities for
    usage models (then `Quote.event_amounts` holds each event's marginal amount); either way they must
    sum to `quantity`. `dimension` picks the value of a dimensional price. The result's `amount` is
    exact and unrounded; round it once with `Quote.rounded(mode)`.
    """
    p = parse_price(price)
    q = as_decimal(quantity, "quantity")
    evs = None if events is None else [as_decimal(e, f"events[{i}]") for i, e in enumerate(events)]
    return p.quote(q, evs, dimension)


__all__ = ["quote"]
