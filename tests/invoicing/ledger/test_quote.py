"""Ledger.quote: what a conversion would move, without moving anything, is exactly what `convert` then moves
(the customer portal shows the quote before the customer confirms)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from invoicing.ledger import Ledger
from metering.errors import InvalidArgument
from rating.rounding import RoundingMode
from tests.invoicing.ledger.conftest import T0, Clock


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    amount=st.integers(min_value=1, max_value=10**6),
    rate=st.sampled_from(["10", "3", "0.7", "12.5", "1000"]),
    rounding=st.sampled_from([RoundingMode.DOWN, RoundingMode.HALF_EVEN]),
)
def test_a_quote_is_what_the_conversion_moves(
    ledger: Ledger, clock: Clock, amount: int, rate: str, rounding: RoundingMode
) -> None:
    clock.advance(3600)  # each example gets a rate of its own from now on
    unit = f"p{int(clock.now.timestamp())}"
    ledger.define_points_unit(unit, 0)
    ledger.set_rate("USD", unit, rate, clock.now, rounding=rounding)
    ledger.top_up(f"t-{unit}", "ada", 2 * 10**6, "USD")
    try:
        debited, credited, quoted = ledger.quote(amount, "USD", unit)
    except InvalidArgument:  # too small to convert: convert refuses it the same way
        with pytest.raises(InvalidArgument):
            ledger.convert(f"c-{unit}", "ada", amount, "USD", unit)
        return
    before = ledger.balance(ledger.wallet("ada", "USD")).balance
    conv = ledger.convert(f"c-{unit}", "ada", amount, "USD", unit)
    assert (conv.debited, conv.credited, conv.rate.rate) == (debited, credited, quoted.rate)
    assert before - ledger.balance(ledger.wallet("ada", "USD")).balance == debited


def test_a_quote_uses_the_rate_in_force_at_its_instant(ledger: Ledger) -> None:
    ledger.set_rate("USD", "pts", "10", T0, T0 + timedelta(days=1))
    ledger.set_rate("USD", "pts", "20", T0 + timedelta(days=1))
    assert ledger.quote(100, "USD", "pts", T0)[:2] == (100, 10)
    assert ledger.quote(100, "USD", "pts", T0 + timedelta(days=2))[:2] == (100, 20)
    with pytest.raises(InvalidArgument, match="convert at least"):
        ledger.quote(5, "USD", "pts", T0)
