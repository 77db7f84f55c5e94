"""Ledger RPCs over a real server: top-ups, grants, balances, transfers, history, conversions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from invoicing.catalog import CustomerDefinition, create_customer
from invoicing.ledger import Ledger
from tests.invoicing.conftest import T0
from tests.tally.api.conftest import Api, pb


def ts(moment: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(moment)
    return out


def fails(
    api: Api, method: str, request: object, status: grpc.StatusCode, fragment: str, key: str | None = None
) -> None:
    err = api.fails(method, request, key)
    assert err.code() == status, (err.code(), err.details())
    assert fragment in (err.details() or ""), err.details()


@pytest.fixture
def wallets(api: Api) -> list[tuple[int, str]]:
    """cus_1 and cus_2 in tenant A, cus_b in tenant B, a points unit "pts" (one decimal) at 10 pts per USD.
    Records every (tenant, customer) the server reports as changed."""
    tid = api.tenant.tenant_id
    for ext in ("cus_1", "cus_2"):
        create_customer(api.engine, tid, CustomerDefinition(external_id=ext, timezone="UTC"), T0)
    create_customer(api.engine, api.other.tenant_id, CustomerDefinition(external_id="cus_b", timezone="UTC"), T0)
    ledger = Ledger(api.engine, tid)
    ledger.define_points_unit("pts", 1)
    ledger.set_rate("USD", "pts", "10", T0)
    seen: list[tuple[int, str]] = []
    api.server.running.billing.listeners.append(lambda t, c: seen.append((t, c)))
    return seen


def top_up(api: Api, ident: str, amount: str, unit: str = "USD", customer: str = "cus_1") -> pb.TopUpWalletResponse:
    got: pb.TopUpWalletResponse = api.call(
        "TopUpWallet", pb.TopUpWalletRequest(top_up_id=ident, customer=customer, amount=amount, unit=unit)
    )
    return got


def account(api: Api, customer: str, kind: str, unit: str = "USD") -> pb.Account:
    got: list[pb.Account] = list(api.call("GetBalances", pb.GetBalancesRequest(customer=customer)).accounts)
    (found,) = [a for a in got if a.kind == kind and a.unit == unit]
    return found


# --- TopUpWallet ---------------------------------------------------------------------------------------------
def test_top_up_is_idempotent_and_reports_the_wallet_balance(api: Api, wallets: list[tuple[int, str]]) -> None:
    first = top_up(api, "pay-1", "12.50")
    assert (first.result, first.balance.unit, first.balance.amount) == ("created", "USD", "12.50")
    assert top_up(api, "pay-1", "12.50").result == "exists"
    second = top_up(api, "pay-2", "0.05")
    assert (second.result, second.balance.amount) == ("created", "12.55")
    points = top_up(api, "pts-1", "25.5", "pts")
    assert (points.balance.unit, points.balance.amount) == ("pts", "25.5")
    assert wallets == [(api.tenant.tenant_id, "cus_1")] * 3  # not the identical retry: it changed nothing


def test_top_up_bad_input_changes_nothing(api: Api, wallets: list[tuple[int, str]]) -> None:
    top_up(api, "pay-1", "12.50")
    bad = grpc.StatusCode.INVALID_ARGUMENT
    for request, status, fragment in (
        (dict(amount="1.234"), bad, "amount: 1.234 has more than 2 decimal places for USD"),
        (dict(amount="-5"), bad, "amount must be positive"),
        (dict(amount="1e3"), bad, "amount: '1e3' is not a decimal in plain notation"),
        (dict(amount=""), bad, "amount is required"),
        (dict(unit=""), bad, "unit is required"),
        (dict(unit="gems"), grpc.StatusCode.NOT_FOUND, "unit: unknown unit 'gems'"),
        (dict(top_up_id=""), bad, "top_up_id is required"),
        (dict(top_up_id="~mine"), bad, "top_up_id '~mine' may not start with '~'"),
        (dict(top_up_id="x" * 129), bad, "top_up_id is 129 bytes; at most 128"),
        (dict(customer="nobody"), grpc.StatusCode.NOT_FOUND, "no customer 'nobody'"),
        (dict(customer="cus_b"), grpc.StatusCode.NOT_FOUND, "no customer 'cus_b'"),  # tenant B's
        (
            dict(top_up_id="eur-1", unit="EUR"),
            grpc.StatusCode.FAILED_PRECONDITION,
            "unit: customer 'cus_1' is billed in USD, so EUR could never pay an invoice",
        ),
        (
            dict(top_up_id="pay-1", amount="13"),
            grpc.StatusCode.ALREADY_EXISTS,
            "with a different amount (it was 12.50)",
        ),
        (
            dict(top_up_id="pay-1", customer="cus_2", amount="12.50"),
            grpc.StatusCode.ALREADY_EXISTS,
            "top_up_id 'pay-1' was already used with a different customer",
        ),
        (dict(top_up_id="pay-1", unit="pts"), grpc.StatusCode.ALREADY_EXISTS, "with a different unit (it was USD)"),
    ):
        fields = {"top_up_id": "pay-9", "customer": "cus_1", "amount": "1.00", "unit": "USD", **request}
        fails(api, "TopUpWallet", pb.TopUpWalletRequest(**fields), status, fragment)
    fails(api, "TopUpWallet", pb.TopUpWalletRequest(top_up_id="p", customer="cus_1", amount="1", unit="USD"),
          grpc.StatusCode.PERMISSION_DENIED, "admin", key=api.read)  # fmt: skip
    assert account(api, "cus_1", "cash").balance == "12.50"
    assert [a for a in api.call("GetBalances", pb.GetBalancesRequest(customer="cus_2")).accounts] == []
    assert wallets == [(api.tenant.tenant_id, "cus_1")]


# --- grants --------------------------------------------------------------------------------------------------
def test_create_grant_round_trips_and_is_idempotent(api: Api, wallets: list[tuple[int, str]]) -> None:
    expires = datetime(2027, 1, 1, tzinfo=UTC)
    grant = pb.Grant(grant_id="promo-1", customer="cus_1", amount="25.00", unit="USD", kind="promotional",
                     priority=5, effective_at=ts(T0), expires_at=ts(expires), applies_to=["calls", "base"])  # fmt: skip
    got = api.call("CreateGrant", pb.CreateGrantRequest(grant=grant))
    assert (got.grant_id, got.customer, got.amount, got.remaining, got.unit) == (
        "promo-1", "cus_1", "25.00", "25.00", "USD"
    )  # fmt: skip
    assert (got.kind, got.priority, list(got.applies_to)) == ("promotional", 5, ["base", "calls"])
    assert got.effective_at.ToDatetime(tzinfo=UTC) == T0 and got.expires_at.ToDatetime(tzinfo=UTC) == expires
    assert api.call("CreateGrant", pb.CreateGrantRequest(grant=grant)) == got  # the retry returns the grant
    plain = api.call("CreateGrant", pb.CreateGrantRequest(grant=pb.Grant(
        grant_id="g2", customer="cus_1", amount="1.5", unit="pts")))  # fmt: skip
    assert (plain.kind, plain.priority, plain.amount, plain.HasField("expires_at")) == ("paid", 100, "1.5", False)
    assert plain.HasField("effective_at")  # now, as stored
    assert wallets == [(api.tenant.tenant_id, "cus_1")] * 2
    first = api.call("CreateGrant", pb.CreateGrantRequest(grant=pb.Grant(
        grant_id="g0", customer="cus_1", amount="1", unit="USD", priority=0)))  # fmt: skip
    assert first.HasField("priority") and first.priority == 0  # 0 is "draw first", not "unset"
    listed = api.call("ListGrants", pb.ListGrantsRequest(customer="cus_1")).grants
    assert listed[0].grant_id == "g0"  # drawing order: priority 0 before 5 and 100


def test_create_grant_bad_input_changes_nothing(api: Api, wallets: list[tuple[int, str]]) -> None:
    api.call("CreateGrant", pb.CreateGrantRequest(grant=pb.Grant(
        grant_id="g1", customer="cus_1", amount="10", unit="USD")))  # fmt: skip
    bad = grpc.StatusCode.INVALID_ARGUMENT
    for change, status, fragment in (
        (dict(grant_id=""), bad, "grant.grant_id is required"),
        (dict(grant_id="a#b"), bad, "grant.grant_id 'a#b' may not start with '~' or contain '#'"),
        (dict(customer="cus_b"), grpc.StatusCode.NOT_FOUND, "no customer 'cus_b'"),
        (dict(amount="0"), bad, "grant.amount must be positive"),
        (dict(amount="0.05", unit="pts"), bad, "grant.amount: 0.05 has more than 1 decimal places for pts"),
        (dict(unit="gems"), grpc.StatusCode.NOT_FOUND, "grant.unit: unknown unit 'gems'"),
        (dict(kind="free"), bad, "grant.kind 'free': paid or promotional"),
        (dict(priority=-1), bad, "grant.priority must be 0 or more"),
        (dict(applies_to=["calls", ""]), bad, "grant.applies_to[1] is empty"),
        (dict(effective_at=ts(T0), expires_at=ts(T0)), bad, "grant.expires_at must be after grant.effective_at"),
        (dict(grant_id="g1", amount="11"), grpc.StatusCode.ALREADY_EXISTS, "already exists with a different amount"),
    ):
        fields: dict[str, Any] = {"grant_id": "g9", "customer": "cus_1", "amount": "10", "unit": "USD", **change}
        fails(api, "CreateGrant", pb.CreateGrantRequest(grant=pb.Grant(**fields)), status, fragment)
    listed = api.call("ListGrants", pb.ListGrantsRequest(customer="cus_1")).grants
    assert [(g.grant_id, g.amount) for g in listed] == [("g1", "10.00")]
    assert len(wallets) == 1


def test_list_grants_in_drawing_order_with_what_remains(api: Api, wallets: list[tuple[int, str]]) -> None:
    soon, later = ts(datetime(2027, 1, 1, tzinfo=UTC)), ts(datetime(2027, 6, 1, tzinfo=UTC))
    for grant in (
        pb.Grant(grant_id="z-never", customer="cus_1", amount="5", unit="USD"),
        pb.Grant(grant_id="y-later", customer="cus_1", amount="5", unit="USD", expires_at=later),
        pb.Grant(grant_id="x-soon", customer="cus_1", amount="5", unit="USD", expires_at=soon),
        pb.Grant(grant_id="w-last", customer="cus_1", amount="5", unit="USD", priority=200),
        pb.Grant(grant_id="v-first", customer="cus_1", amount="4", unit="USD", priority=1),
        pb.Grant(grant_id="other", customer="cus_2", amount="5", unit="USD"),
    ):
        api.call("CreateGrant", pb.CreateGrantRequest(grant=grant))
    Ledger(api.engine, api.tenant.tenant_id).spend("s1", "cus_1", 650, "USD", "base")  # $4 + $2.50
    got = api.call("ListGrants", pb.ListGrantsRequest(customer="cus_1"), key=api.read).grants
    assert [(g.grant_id, g.remaining) for g in got] == [
        ("v-first", "0.00"), ("x-soon", "2.50"), ("y-later", "5.00"), ("z-never", "5.00"), ("w-last", "5.00")
    ]  # fmt: skip
    fails(api, "ListGrants", pb.ListGrantsRequest(), grpc.StatusCode.INVALID_ARGUMENT, "customer is required")
    fails(api, "ListGrants", pb.ListGrantsRequest(customer="cus_b"), grpc.StatusCode.NOT_FOUND, "cus_b")
    assert not api.call("ListGrants", pb.ListGrantsRequest(customer="cus_b"), key=api.other.key).grants


# --- balances and history ------------------------------------------------------------------------------------
def test_get_balances_totals_and_accounts(api: Api, wallets: list[tuple[int, str]]) -> None:
    top_up(api, "pay-1", "12.50")
    api.call("CreateGrant", pb.CreateGrantRequest(grant=pb.Grant(
        grant_id="g1", customer="cus_1", amount="5.25", unit="USD", kind="promotional")))  # fmt: skip
    top_up(api, "pts-1", "7.5", "pts")
    cash = account(api, "cus_1", "cash")
    pending = pb.Transfer(id="hold", debit_account_id=cash.id, credit_account_id=account(api, "cus_1", "grant").id,
                          amount="2.00", flags=["pending"])  # fmt: skip
    assert api.call("CreateTransfers", pb.CreateTransfersRequest(transfers=[pending])).results[0].result == "ok"
    got = api.call("GetBalances", pb.GetBalancesRequest(customer="cus_1"), key=api.read)
    assert [(t.unit, t.balance, t.available, t.pending_in) for t in got.totals] == [
        ("USD", "17.75", "15.75", "2.00"), ("pts", "7.5", "7.5", "0.0")
    ]  # fmt: skip
    by_kind = {(a.kind, a.unit): a for a in got.accounts}
    assert sorted(by_kind) == [("cash", "USD"), ("grant", "USD"), ("points", "pts")]
    c, g = by_kind[("cash", "USD")], by_kind[("grant", "USD")]
    assert (c.customer, c.balance, c.debits_pending, c.credits_pending) == ("cus_1", "12.50", "2.00", "0.00")
    assert (g.balance, g.debits_pending, g.credits_pending) == ("5.25", "0.00", "2.00")
    fails(api, "GetBalances", pb.GetBalancesRequest(customer="cus_b"), grpc.StatusCode.NOT_FOUND, "cus_b")
    fails(api, "GetBalances", pb.GetBalancesRequest(), grpc.StatusCode.INVALID_ARGUMENT, "customer is required")


def test_account_history_with_running_balance(api: Api, wallets: list[tuple[int, str]]) -> None:
    for k, amount in enumerate(("10.00", "2.50", "0.25")):
        top_up(api, f"pay-{k}", amount)
    cash = account(api, "cus_1", "cash")
    to_two = account_of_two(api)
    move = pb.Transfer(id="t1", debit_account_id=cash.id, credit_account_id=to_two, amount="3.00", code="gift")
    api.call("CreateTransfers", pb.CreateTransfersRequest(transfers=[move]))
    got = api.call("ListAccountHistory", pb.ListAccountHistoryRequest(account_id=cash.id), key=api.read).lines
    assert [(ln.transfer_id, ln.change, ln.running_balance, ln.code) for ln in got] == [
        ("pay-0", "10.00", "10.00", "top_up"), ("pay-1", "2.50", "12.50", "top_up"),
        ("pay-2", "0.25", "12.75", "top_up"), ("t1", "-3.00", "9.75", "gift"),
    ]  # fmt: skip
    assert all(abs(ln.at.ToDatetime(tzinfo=UTC) - datetime.now(UTC)) < timedelta(minutes=5) for ln in got)
    last = api.call("ListAccountHistory", pb.ListAccountHistoryRequest(account_id=cash.id, limit=2)).lines
    assert [(ln.transfer_id, ln.running_balance) for ln in last] == [("pay-2", "12.75"), ("t1", "9.75")]
    bad = grpc.StatusCode.INVALID_ARGUMENT
    fails(api, "ListAccountHistory", pb.ListAccountHistoryRequest(account_id=cash.id, limit=1001), bad, "limit must")
    fails(api, "ListAccountHistory", pb.ListAccountHistoryRequest(), bad, "account_id must be an id from 1 to")
    fails(api, "ListAccountHistory", pb.ListAccountHistoryRequest(account_id=cash.id), grpc.StatusCode.NOT_FOUND,
          f"account {cash.id} does not exist", key=api.other.key)  # fmt: skip


def account_of_two(api: Api) -> int:
    """cus_2's cash wallet (opened by a one-cent top-up)."""
    top_up(api, "open-2", "0.01", customer="cus_2")
    return account(api, "cus_2", "cash").id


# --- transfers -----------------------------------------------------------------------------------------------
def test_create_transfers_results_per_transfer(api: Api, wallets: list[tuple[int, str]]) -> None:
    top_up(api, "pay-1", "10.00")
    one, two = account(api, "cus_1", "cash").id, account_of_two(api)
    wallets.clear()

    def t(ident: str, amount: str, *flags: str, timeout_s: int = 0) -> pb.Transfer:
        return pb.Transfer(
            id=ident, debit_account_id=one, credit_account_id=two, amount=amount, flags=flags, timeout_s=timeout_s
        )

    got = api.call("CreateTransfers", pb.CreateTransfersRequest(transfers=[
        t("a", "2.50"),
        t("a", "2.50"),  # identical: exists
        t("a", "2.60"),  # same id, other amount
        t("b", "100.00"),  # more than cus_1 holds
        t("c", "1.00", "linked"), t("d", "100.00"),  # a chain that cannot complete
        t("hold", "3.00", "pending", timeout_s=3600),
        pb.Transfer(id="take", pending_id="hold", amount="1.25", flags=["post_pending"]),
        pb.Transfer(id="e", debit_account_id=one, credit_account_id=999_999, amount="1"),
        t("f", "1.00", "linked"), pb.Transfer(id="g", debit_account_id=999_998, credit_account_id=999_999, amount="1"),
    ]))  # fmt: skip
    assert [(r.index, r.id, r.result, r.field) for r in got.results] == [
        (0, "a", "ok", ""), (1, "a", "exists", ""), (2, "a", "exists_with_different_amount", "amount"),
        (3, "b", "exceeds_credits", "amount"), (4, "c", "linked_event_failed", ""),
        (5, "d", "exceeds_credits", "amount"),
        (6, "hold", "ok", ""), (7, "take", "ok", ""), (8, "e", "credit_account_not_found", "credit_account_id"),
        (9, "f", "linked_event_failed", ""), (10, "g", "debit_account_not_found", "debit_account_id"),
    ]  # fmt: skip
    # 10.00 - 2.50 - 1.25 (the post; the rest of the hold is released).
    assert account(api, "cus_1", "cash").balance == "6.25"
    assert account(api, "cus_2", "cash").balance == "3.76"
    assert sorted(set(wallets)) == [(api.tenant.tenant_id, "cus_1"), (api.tenant.tenant_id, "cus_2")]


def test_create_transfers_in_points_and_across_tenants(api: Api, wallets: list[tuple[int, str]]) -> None:
    top_up(api, "p1", "10", "pts")
    top_up(api, "p2", "0.1", "pts", customer="cus_2")
    one, two = account(api, "cus_1", "points", "pts").id, account(api, "cus_2", "points", "pts").id
    move = pb.Transfer(id="m", debit_account_id=one, credit_account_id=two, amount="2.5")
    assert api.call("CreateTransfers", pb.CreateTransfersRequest(transfers=[move])).results[0].result == "ok"
    assert account(api, "cus_2", "points", "pts").balance == "2.6"
    theirs = pb.Transfer(id="x", debit_account_id=one, credit_account_id=two, amount="1")
    (res,) = api.call("CreateTransfers", pb.CreateTransfersRequest(transfers=[theirs]), key=api.other.key).results
    assert (res.result, res.field) == ("debit_account_not_found", "debit_account_id")
    post = pb.Transfer(id="p", pending_id="nothing-held", amount="1", flags=["post_pending"])
    fails(api, "CreateTransfers", pb.CreateTransfersRequest(transfers=[post]), grpc.StatusCode.NOT_FOUND,
          "transfers[0].pending_id 'nothing-held' is not a pending transfer of this tenant")  # fmt: skip
    (res,) = api.call("CreateTransfers", pb.CreateTransfersRequest(transfers=[
        pb.Transfer(id="p", pending_id="nothing-held", flags=["void_pending"])])).results  # fmt: skip
    assert (res.result, res.field) == ("pending_transfer_not_found", "pending_id")
    assert account(api, "cus_1", "points", "pts").balance == "7.5"


def test_create_transfers_malformed_requests_write_nothing(api: Api, wallets: list[tuple[int, str]]) -> None:
    top_up(api, "pay-1", "10.00")
    one, two = account(api, "cus_1", "cash").id, account_of_two(api)
    ok = pb.Transfer(id="fine", debit_account_id=one, credit_account_id=two, amount="1.00")
    bad = grpc.StatusCode.INVALID_ARGUMENT
    for broken, fragment in (
        (pb.Transfer(id="f", debit_account_id=one, credit_account_id=two, amount="1", flags=["urgent"]),
         "transfers[1].flags[0]: 'urgent' is not a flag"),
        (pb.Transfer(id="f", debit_account_id=one, credit_account_id=two, amount="1.001"),
         "transfers[1].amount: 1.001 has more than 2 decimal places for USD"),
        (pb.Transfer(id="f", debit_account_id=one, credit_account_id=two, amount="-1"),
         "transfers[1].amount must be positive"),
        (pb.Transfer(id="f", debit_account_id=one, credit_account_id=two),
         "transfers[1].amount is required"),
        (pb.Transfer(id="f", debit_account_id=-1, credit_account_id=two, amount="1"),
         "transfers[1].debit_account_id must not be negative"),
    ):  # fmt: skip
        fails(api, "CreateTransfers", pb.CreateTransfersRequest(transfers=[ok, broken]), bad, fragment)
    fails(api, "CreateTransfers", pb.CreateTransfersRequest(), bad, "transfers is required")
    fails(api, "CreateTransfers", pb.CreateTransfersRequest(transfers=[ok] * 8191), bad, "8191 given; at most 8190")
    fails(api, "CreateTransfers", pb.CreateTransfersRequest(transfers=[ok]), grpc.StatusCode.PERMISSION_DENIED,
          "admin", key=api.read)  # fmt: skip
    assert account(api, "cus_1", "cash").balance == "10.00"


# --- conversions ---------------------------------------------------------------------------------------------
def test_convert_credits_both_ways(api: Api, wallets: list[tuple[int, str]]) -> None:
    top_up(api, "pay-1", "10.00")
    request = pb.ConvertCreditsRequest(conversion_id="c1", customer="cus_1", amount="2.55", from_unit="USD",
                                       to_unit="pts")  # fmt: skip
    got = api.call("ConvertCredits", request)
    assert (got.debited.unit, got.debited.amount, got.credited.unit, got.credited.amount) == (
        "USD", "2.55", "pts", "25.5"
    )  # fmt: skip
    assert (got.rate, got.result, got.left_in_source.amount) == ("10", "created", "0.00")
    assert api.call("ConvertCredits", request).result == "exists"
    back = api.call("ConvertCredits", pb.ConvertCreditsRequest(
        conversion_id="c2", customer="cus_1", amount="10.5", from_unit="pts", to_unit="USD"))  # fmt: skip
    assert (back.debited.amount, back.credited.amount) == ("10.5", "1.05")
    balances = api.call("GetBalances", pb.GetBalancesRequest(customer="cus_1")).totals
    assert [(b.unit, b.balance) for b in balances] == [("USD", "8.50"), ("pts", "15.0")]
    assert wallets == [(api.tenant.tenant_id, "cus_1")] * 3  # the top-up and two conversions


def test_convert_credits_refusals_change_nothing(api: Api, wallets: list[tuple[int, str]]) -> None:
    top_up(api, "pay-1", "1.00")
    bad = grpc.StatusCode.INVALID_ARGUMENT
    for change, status, fragment in (
        (dict(amount="5.00"), grpc.StatusCode.FAILED_PRECONDITION, "holds less than 5.00 USD"),
        (dict(amount="0.001"), bad, "amount: 0.001 has more than 2 decimal places"),
        (dict(to_unit="EUR"), bad, "a conversion is between a currency and a points unit"),
        (dict(from_unit="EUR"), grpc.StatusCode.NOT_FOUND, "EUR"),  # no EUR/pts rate
        (dict(to_unit="gems"), grpc.StatusCode.NOT_FOUND, "to_unit: unknown unit 'gems'"),
        (dict(conversion_id=""), bad, "conversion_id is required"),
        (dict(customer="cus_b"), grpc.StatusCode.NOT_FOUND, "no customer 'cus_b'"),
        (dict(conversion_id="c1", amount="0.50"), grpc.StatusCode.ALREADY_EXISTS, "different"),
    ):
        fields = {"conversion_id": "c9", "customer": "cus_1", "amount": "0.20", "from_unit": "USD", "to_unit": "pts",
                  **change}  # fmt: skip
        if fields["conversion_id"] == "c1":
            api.call("ConvertCredits", pb.ConvertCreditsRequest(**{**fields, "amount": "0.20"}))
        fails(api, "ConvertCredits", pb.ConvertCreditsRequest(**fields), status, fragment)
    ledger = Ledger(api.engine, api.tenant.tenant_id)
    ledger.define_points_unit("gold", 2)
    ledger.set_rate("USD", "gold", "10", T0)
    top_up(api, "gold", "1", "gold")
    tiny = pb.ConvertCreditsRequest(conversion_id="c8", customer="cus_1", amount="0.001", from_unit="gold",
                                    to_unit="USD")  # fmt: skip
    fails(api, "ConvertCredits", tiny, bad, "amount: 0.001 has more than 2 decimal places for gold")
    tiny.amount = "0.05"  # 0.005 USD: less than a cent
    fails(api, "ConvertCredits", tiny, bad, "amount: 0.05 gold converts to less than one step of USD")
    totals = api.call("GetBalances", pb.GetBalancesRequest(customer="cus_1")).totals
    assert [(b.unit, b.balance) for b in totals] == [("USD", "0.80"), ("gold", "1.00"), ("pts", "2.0")]  # only c1
