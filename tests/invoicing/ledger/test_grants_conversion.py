"""Grants (order, eligibility, expiry), spend, conversion remainder rule, balance queries."""

from __future__ import annotations

from datetime import timedelta

import pytest

from invoicing.ledger import ExistsWithDifferentBody, Grant, InsufficientFunds, Ledger, RateNotFound
from invoicing.ledger.unit import to_us
from metering.errors import AlreadyExists, InvalidArgument
from rating.rounding import RoundingMode
from tests.invoicing.ledger.conftest import T0, Clock


def test_spend_order_priority_then_earliest_expiry(ledger: Ledger, clock: Clock) -> None:
    now = to_us(clock.now)
    day = 86_400_000_000
    ledger.grant(Grant("late", "c", 500, "USD", "promotional", priority=1, expires_at_us=now + 30 * day))
    ledger.grant(Grant("soon", "c", 500, "USD", "promotional", priority=1, expires_at_us=now + 2 * day))
    ledger.grant(Grant("never", "c", 500, "USD", "paid", priority=1))
    ledger.grant(Grant("low", "c", 500, "USD", "paid", priority=5, expires_at_us=now + day))
    ledger.grant(Grant("api-only", "c", 500, "USD", "paid", priority=0, applies_to=("api_calls",)))
    ledger.top_up("t", "c", 1_000, "USD")
    s = ledger.spend("inv-1", "c", 1_800, "USD", "tokens")
    assert [(d.grant_id, d.amount) for d in s.draws] == [("soon", 500), ("late", 500), ("never", 500), ("low", 300)]
    remaining = {g.grant.id: g.remaining for g in ledger.grants("c")}
    assert remaining == {"soon": 0, "late": 0, "never": 0, "low": 200, "api-only": 500}
    # Retry returns the same draws, nothing new.
    again = ledger.spend("inv-1", "c", 1_800, "USD", "tokens")
    assert not again.created and [d.amount for d in again.draws] == [500, 500, 500, 300]
    with pytest.raises(ExistsWithDifferentBody) as err:
        ledger.spend("inv-1", "c", 1_700, "USD", "tokens")
    assert err.value.field == "amount"
    # api-only pays api_calls first; then the plain wallet.
    s = ledger.spend("inv-2", "c", 1_000, "USD", "api_calls")
    assert [(d.grant_id, d.amount) for d in s.draws] == [("api-only", 500), ("low", 200), (None, 300)]
    totals = {t.unit: t for t in ledger.customer_totals("c")}
    assert totals["USD"].balance == 3_500 - 2_800


def test_spend_shortfall_refused_or_partial(ledger: Ledger) -> None:
    ledger.grant(Grant("g", "c", 300, "USD"))
    with pytest.raises(InsufficientFunds):
        ledger.spend("s1", "c", 301, "USD", "tokens")
    assert ledger.grants("c")[0].remaining == 300
    s = ledger.spend("s2", "c", 1_000, "USD", "tokens", partial=True)
    assert s.total == 300 and ledger.grants("c")[0].remaining == 0


def test_grant_not_yet_effective_and_expiry_at_expiry_time(ledger: Ledger, clock: Clock) -> None:
    now = to_us(clock.now)
    hour = 3_600_000_000
    ledger.grant(Grant("future", "c", 100, "USD", effective_at_us=now + hour))
    ledger.grant(Grant("short", "c", 200, "USD", "promotional", expires_at_us=now + 2 * hour))
    assert ledger.spend("s", "c", 300, "USD", "x", partial=True).total == 200  # "future" is not spendable yet
    with pytest.raises(ExistsWithDifferentBody):
        ledger.grant(Grant("short", "c", 201, "USD", "promotional", expires_at_us=now + 2 * hour))
    ledger.grant(Grant("exp", "c", 50, "USD", "promotional", expires_at_us=now + 2 * hour))
    clock.advance(3 * 3600)
    assert ledger.expire_grants() == [("exp", 50)]
    assert ledger.expire_grants() == []
    expiry = ledger.system_account("expiry", "USD")
    assert ledger.account(expiry).balance == 50
    line = ledger.history(expiry)[-1]
    assert line.transfer.ts_us == now + 2 * hour and line.running_balance == 50
    # As of before the expiry, the grant still held its 50.
    exp_acct = next(g.account_id for g in ledger.grants("c") if g.grant.id == "exp")
    assert ledger.balance(exp_acct, as_of=T0 + timedelta(hours=1)).balance == 50
    assert ledger.balance(exp_acct).balance == 0


def test_conversion_is_exact_and_remainder_stays(ledger: Ledger) -> None:
    ledger.set_rate("USD", "pts", "3", T0, T0 + timedelta(days=30))  # 3 pts per dollar, pts scale 0
    ledger.top_up("t", "c", 1_000, "USD")  # $10.00
    # 1 pt costs 1/3 dollar: only multiples of 100 cents convert exactly, so $2.50 rounds down to $2.00.
    conv = ledger.convert("cv1", "c", 250, "USD", "pts")
    assert (conv.debited, conv.credited, conv.left_in_source) == (200, 6, 50)
    assert ledger.account(ledger.wallet("c", "USD")).balance == 800
    assert ledger.account(ledger.wallet("c", "pts")).balance == 6
    assert not ledger.convert("cv1", "c", 250, "USD", "pts").created
    back = ledger.convert("cv2", "c", 3, "pts", "USD")
    assert (back.debited, back.credited) == (3, 100)
    with pytest.raises(InvalidArgument, match="convert at least"):
        ledger.convert("cv3", "c", 2, "pts", "USD")
    usd = [a for a in ledger.accounts() if a.unit == "USD"]
    pts = [a for a in ledger.accounts() if a.unit == "pts"]
    assert sum(a.balance for a in usd) == 0 and sum(a.balance for a in pts) == 0


def test_rate_in_force_is_exact(ledger: Ledger) -> None:
    ledger.set_rate("USD", "pts", "100", T0, T0 + timedelta(days=1), RoundingMode.HALF_UP)
    ledger.set_rate("USD", "pts", "120", T0 + timedelta(days=1))
    assert ledger.rate_at("USD", "pts", T0 + timedelta(days=1) - timedelta(microseconds=1)).rate == 100
    assert ledger.rate_at("USD", "pts", T0 + timedelta(days=1)).rate == 120
    with pytest.raises(RateNotFound):
        ledger.rate_at("USD", "pts", T0 - timedelta(microseconds=1))
    with pytest.raises(AlreadyExists, match="overlap"):
        ledger.set_rate("USD", "pts", "1", T0 + timedelta(days=5))


def test_history_running_balance(ledger: Ledger) -> None:
    ledger.top_up("a", "c", 500, "USD")
    ledger.spend("s", "c", 200, "USD", "x")
    lines = ledger.history(ledger.wallet("c", "USD"))
    assert [(ln.change, ln.running_balance) for ln in lines] == [(500, 500), (-200, 300)]
