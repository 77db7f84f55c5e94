"""Transfers: idempotency, linked chains, two-phase, edge amounts, units, overflow."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from invoicing.ledger import (
    BalanceOverflow,
    ExistsWithDifferentBody,
    InsufficientFunds,
    InvalidTransfer,
    Ledger,
    Result,
    Transfer,
    TransferFlags,
    UnitMismatch,
)
from invoicing.ledger.tables import ledger_accounts, ledger_pending, ledger_transfers
from tests.invoicing.ledger.conftest import Clock

L = TransferFlags.LINKED
INT64_MAX = 2**63 - 1


def funded(ledger: Ledger, customer: str = "cus_1", amount: int = 10_000) -> tuple[int, int, int]:
    ledger.top_up(f"topup-{customer}", customer, amount, "USD")
    return (
        ledger.wallet(customer, "USD"),
        ledger.system_account("revenue", "USD"),
        ledger.system_account("cash_in", "USD"),
    )


def test_transfer_moves_money_and_keeps_sum_zero(ledger: Ledger) -> None:
    wallet, revenue, cash_in = funded(ledger)
    assert ledger.transfer(Transfer("t1", wallet, revenue, 2_500, "spend")).result is Result.CREATED
    assert ledger.account(wallet).balance == 7_500
    assert ledger.account(revenue).balance == 2_500
    assert ledger.account(cash_in).balance == -10_000
    assert sum(a.balance for a in ledger.accounts() if a.unit == "USD") == 0


def test_same_id_same_body_exists_and_different_body_names_field(ledger: Ledger) -> None:
    wallet, revenue, _ = funded(ledger)
    t = Transfer("t1", wallet, revenue, 100, "spend", "inv-1")
    assert ledger.transfer(t).result is Result.CREATED
    assert ledger.transfer(t).result is Result.EXISTS
    assert ledger.account(wallet).balance == 9_900
    for changed, name in [
        (Transfer("t1", wallet, revenue, 101, "spend", "inv-1"), "amount"),
        (Transfer("t1", wallet, revenue, 100, "spend", "inv-2"), "reference"),
        (Transfer("t1", wallet, revenue, 100, "refund", "inv-1"), "code"),
        (Transfer("t1", revenue, wallet, 100, "spend", "inv-1"), "debit_account_id"),
    ]:
        with pytest.raises(ExistsWithDifferentBody) as err:
            ledger.transfer(changed)
        assert err.value.field == name and name in str(err.value)
    assert ledger.account(wallet).balance == 9_900


def test_failing_link_leaves_nothing_behind(ledger: Ledger, engine) -> None:  # type: ignore[no-untyped-def]
    wallet, revenue, _ = funded(ledger, amount=1_000)
    before = {a.id: a for a in ledger.accounts()}
    results = ledger.create_transfers(
        [
            Transfer("a", wallet, revenue, 600, "spend", flags=L),
            Transfer("b", wallet, revenue, 600, "spend"),  # 1,200 > 1,000: fails the chain
            Transfer("c", wallet, revenue, 300, "spend"),  # independent: succeeds
        ]
    )
    assert [r.result for r in results] == [Result.LINKED_EVENT_FAILED, Result.EXCEEDS_CREDITS, Result.CREATED]
    after = {a.id: a for a in ledger.accounts()}
    assert after[wallet].balance == before[wallet].balance - 300
    assert ledger.lookup(["a", "b"]) == {}
    with engine.connect() as c:
        assert c.execute(select(func.count()).select_from(ledger_transfers)).scalar_one() == 2  # top-up + c


def test_open_chain_is_refused(ledger: Ledger) -> None:
    wallet, revenue, _ = funded(ledger)
    results = ledger.create_transfers([Transfer("a", wallet, revenue, 1, "x", flags=L)])
    assert results[0].result is Result.LINKED_EVENT_CHAIN_OPEN
    assert ledger.account(wallet).balance == 10_000


def test_resent_chain_reports_exists_for_each(ledger: Ledger) -> None:
    wallet, revenue, _ = funded(ledger)
    chain = [Transfer("a", wallet, revenue, 1, "x", flags=L), Transfer("b", wallet, revenue, 2, "x")]
    assert [r.result for r in ledger.create_transfers(chain)] == [Result.CREATED, Result.CREATED]
    assert [r.result for r in ledger.create_transfers(chain)] == [Result.EXISTS, Result.EXISTS]
    assert ledger.account(wallet).balance == 9_997


@pytest.mark.parametrize("amount", [0, -1, 2**63, 2**64 + 5])
def test_edge_amounts_refused(ledger: Ledger, amount: int) -> None:
    wallet, revenue, _ = funded(ledger)
    assert ledger.create_transfers([Transfer("e", wallet, revenue, amount, "x")])[0].result is Result.AMOUNT_INVALID
    assert ledger.account(wallet).balance == 10_000


def test_int64_max_amount_accepted_but_balance_overflow_refused(ledger: Ledger) -> None:
    cash_in = ledger.system_account("cash_in", "USD")
    conv = ledger.system_account("conversion", "USD", "pts")  # no flags: can go either way
    wallet = ledger.wallet("cus_1", "USD")
    assert ledger.transfer(Transfer("max", conv, wallet, INT64_MAX, "x")).result is Result.CREATED
    assert ledger.account(wallet).balance == INT64_MAX
    with pytest.raises(BalanceOverflow):
        ledger.transfer(Transfer("one-more", conv, wallet, 1, "x"))
    assert ledger.account(wallet).credits_posted == INT64_MAX
    assert ledger.create_transfers([Transfer("pend", cash_in, wallet, 1, "x", flags=TransferFlags.PENDING)])[
        0
    ].result in (Result.OVERFLOWS_CREDITS, Result.EXCEEDS_DEBITS)


def test_units_must_match_and_ids_are_bounded(ledger: Ledger) -> None:
    usd, _, _ = funded(ledger)
    pts = ledger.wallet("cus_1", "pts")
    with pytest.raises(UnitMismatch):
        ledger.transfer(Transfer("u", usd, pts, 1, "x"))
    bad = ledger.create_transfers(
        [Transfer("x" * 129, usd, pts, 1, "x"), Transfer("", usd, pts, 1, "x"), Transfer("~sys", usd, pts, 1, "x")]
    )
    assert [r.result for r in bad] == [Result.ID_INVALID, Result.ID_INVALID, Result.ID_RESERVED]
    assert (
        ledger.create_transfers([Transfer("é" * 64, usd, usd, 1, "x")])[0].result is Result.ACCOUNTS_MUST_BE_DIFFERENT
    )


def test_wallet_never_negative(ledger: Ledger) -> None:
    wallet, revenue, _ = funded(ledger, amount=100)
    with pytest.raises(InsufficientFunds):
        ledger.transfer(Transfer("t", wallet, revenue, 101, "spend"))
    assert ledger.account(wallet).balance == 100


def test_pending_reserves_then_partial_post_releases_rest(ledger: Ledger, engine) -> None:  # type: ignore[no-untyped-def]
    wallet, revenue, _ = funded(ledger, amount=1_000)
    ledger.transfer(Transfer("p", wallet, revenue, 800, "hold", flags=TransferFlags.PENDING))
    acct = ledger.account(wallet)
    assert (acct.balance, acct.debits_pending, acct.available) == (1_000, 800, 200)
    with pytest.raises(InsufficientFunds):
        ledger.transfer(Transfer("t", wallet, revenue, 201, "spend"))
    post = Transfer("post", None, None, 500, "", flags=TransferFlags.POST_PENDING, pending_id="p")
    assert ledger.transfer(post).result is Result.CREATED
    assert ledger.transfer(post).result is Result.EXISTS
    acct = ledger.account(wallet)
    assert (acct.balance, acct.debits_pending, acct.available) == (500, 0, 500)
    assert ledger.account(revenue).balance == 500
    again = ledger.create_transfers(
        [Transfer("void", None, None, None, flags=TransferFlags.VOID_PENDING, pending_id="p")]
    )
    assert again[0].result is Result.PENDING_TRANSFER_ALREADY_POSTED
    stored = ledger.lookup(["post"])["post"]
    assert (stored.debit_account_id, stored.credit_account_id, stored.amount, stored.code) == (
        wallet,
        revenue,
        500,
        "hold",
    )
    with engine.connect() as c:
        assert c.execute(select(ledger_pending.c.state)).scalar_one() == "posted"


def test_post_more_than_pending_refused_and_void_releases(ledger: Ledger) -> None:
    wallet, revenue, _ = funded(ledger, amount=1_000)
    ledger.transfer(Transfer("p", wallet, revenue, 300, "hold", flags=TransferFlags.PENDING))
    res = ledger.create_transfers([Transfer("x", None, None, 301, flags=TransferFlags.POST_PENDING, pending_id="p")])
    assert res[0].result is Result.EXCEEDS_PENDING_TRANSFER_AMOUNT
    ledger.transfer(Transfer("v", None, None, None, flags=TransferFlags.VOID_PENDING, pending_id="p"))
    acct = ledger.account(wallet)
    assert (acct.balance, acct.debits_pending) == (1_000, 0)
    assert ledger.account(revenue).credits_pending == 0
    res = ledger.create_transfers([Transfer("y", None, None, None, flags=TransferFlags.POST_PENDING, pending_id="p")])
    assert res[0].result is Result.PENDING_TRANSFER_ALREADY_VOIDED
    res = ledger.create_transfers(
        [Transfer("z", None, None, None, flags=TransferFlags.POST_PENDING, pending_id="nope")]
    )
    assert res[0].result is Result.PENDING_TRANSFER_NOT_FOUND


def test_pending_timeout_blocks_post_and_sweep_releases(ledger: Ledger, clock: Clock) -> None:
    wallet, revenue, _ = funded(ledger, amount=1_000)
    ledger.transfer(Transfer("p", wallet, revenue, 700, "hold", flags=TransferFlags.PENDING, timeout_s=60))
    clock.advance(59)
    assert ledger.expire_pending() == []
    clock.advance(1)
    res = ledger.create_transfers(
        [Transfer("post", None, None, None, flags=TransferFlags.POST_PENDING, pending_id="p")]
    )
    assert res[0].result is Result.PENDING_TRANSFER_EXPIRED
    assert ledger.account(wallet).debits_pending == 700  # still reserved until the sweep
    assert ledger.expire_pending() == ["p"]
    assert ledger.expire_pending() == []
    acct = ledger.account(wallet)
    assert (acct.balance, acct.debits_pending, acct.available) == (1_000, 0, 1_000)
    res = ledger.create_transfers(
        [Transfer("post2", None, None, None, flags=TransferFlags.POST_PENDING, pending_id="p")]
    )
    assert res[0].result is Result.PENDING_TRANSFER_EXPIRED


def test_pending_and_post_in_one_chain(ledger: Ledger) -> None:
    wallet, revenue, _ = funded(ledger, amount=1_000)
    res = ledger.create_transfers(
        [
            Transfer("p", wallet, revenue, 400, "hold", flags=TransferFlags.PENDING | L),
            Transfer("post", None, None, 100, flags=TransferFlags.POST_PENDING | L, pending_id="p"),
            Transfer("bad", wallet, revenue, 10_000, "x"),
        ]
    )
    assert [r.result for r in res] == [Result.LINKED_EVENT_FAILED, Result.LINKED_EVENT_FAILED, Result.EXCEEDS_CREDITS]
    acct = ledger.account(wallet)
    assert (acct.balance, acct.debits_pending) == (1_000, 0)
    assert ledger.lookup(["p", "post"]) == {}


def test_accounts_of_other_tenants_are_invisible(ledger: Ledger, engine) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import make_tenant

    other = Ledger(engine, make_tenant(engine, "other").tenant_id)
    theirs = other.wallet("cus_1", "USD")
    wallet, _, _ = funded(ledger)
    assert ledger.create_transfers([Transfer("t", wallet, theirs, 1, "x")])[0].result is Result.CREDIT_ACCOUNT_NOT_FOUND
    with engine.connect() as c:
        assert (
            c.execute(select(ledger_accounts.c.credits_posted).where(ledger_accounts.c.id == theirs)).scalar_one() == 0
        )


def test_a_refused_top_up_leaves_no_new_wallet_behind(ledger: Ledger) -> None:
    ledger.top_up("t1", "cus_a", 100, "USD")
    with pytest.raises(ExistsWithDifferentBody):
        ledger.top_up("t1", "cus_new", 100, "USD")  # same id, another customer: refused
    assert ledger.accounts("cus_new") == []
    assert [a.customer for a in ledger.accounts("cus_a")] == ["cus_a"]


@pytest.mark.parametrize("field", ["debit_account_id", "credit_account_id"])
@pytest.mark.parametrize("bad", ["1", 1.0, True, b"1"], ids=["str", "float", "bool", "bytes"])
def test_non_integer_account_id_is_refused_naming_the_field(ledger: Ledger, field: str, bad: object) -> None:
    """The general path once raised TypeError (sorting str with int ids); it must refuse with the domain's
    validation error, which the edges map to INVALID_ARGUMENT, and write nothing."""
    wallet, revenue, _ = funded(ledger)
    good = {"debit_account_id": wallet, "credit_account_id": revenue}
    bad_transfer = Transfer("bad", **{**good, field: bad}, amount=100, code="spend")  # type: ignore[arg-type]
    # Alone, and behind a valid transfer (so the one-pass path has something to try first).
    for batch in ([bad_transfer], [Transfer("ok", wallet, revenue, 100, "spend"), bad_transfer]):
        with pytest.raises(InvalidTransfer) as err:
            ledger.create_transfers(batch)
        assert err.value.field == field and field in str(err.value)
        assert not isinstance(err.value, TypeError)
    assert ledger.lookup(["ok", "bad"]) == {}
    assert ledger.account(wallet).balance == 10_000
