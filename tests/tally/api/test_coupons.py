"""BillingService coupons and discounts over a real server: every RPC, its paging, and its bad-input errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from invoicing.catalog import CustomerDefinition, create_customer
from invoicing.subscriptions import create_subscription
from tally.sdk import BillingClient, TallyApiError
from tests.invoicing.conftest import T0, published
from tests.tally.api.conftest import Api, pb


def _ts(moment: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(moment)
    return ts


def _coupon(api: Api, code: str, **fields: Any) -> pb.Coupon:
    values: dict[str, Any] = {"kind": "percent", "percent": "12.5"}
    values.update(fields)
    result: pb.Coupon = api.call("CreateCoupon", pb.CreateCouponRequest(coupon=pb.Coupon(code=code, **values)))
    return result


def _world(api: Api) -> int:
    engine, tid = api.engine, api.tenant.tenant_id
    create_customer(engine, tid, CustomerDefinition(external_id="cus_1", name="Ada"), T0)
    create_customer(engine, tid, CustomerDefinition(external_id="cus_eur", currency="EUR"), T0)
    published(engine, tid, "pro")
    return create_subscription(engine, tid, "cus_1", "pro", T0).id


def test_create_and_list_coupons(api: Api) -> None:
    redeem_by = datetime(2030, 1, 1, tzinfo=UTC)
    c = _coupon(api, "WELCOME", name="Welcome", duration="repeating", periods=3, applies_to=["calls", "base"],
                redeem_by=_ts(redeem_by), max_redemptions=10)  # fmt: skip
    assert (c.code, c.name, c.kind, c.percent, c.amount, c.currency, c.duration, c.periods) == (
        "WELCOME", "Welcome", "percent", "12.5", "", "", "repeating", 3,
    )  # fmt: skip
    assert list(c.applies_to) == ["base", "calls"] and c.redeem_by.ToDatetime(tzinfo=UTC) == redeem_by
    assert (c.max_redemptions, c.times_applied) == (10, 0) and c.HasField("created_at")
    a = _coupon(api, "five", kind="amount", percent="", amount="5.00", currency="USD")
    assert (a.amount, a.currency, a.duration, a.periods, a.name, a.max_redemptions) == (
        "5.00",
        "USD",
        "once",
        0,
        "five",
        0,
    )
    assert not a.HasField("redeem_by")
    assert (
        _coupon(api, "yen", kind="amount", percent="", amount="300", currency="JPY", duration="forever").amount == "300"
    )
    page = api.call("ListCoupons", pb.ListCouponsRequest(page_size=2), key=api.read)
    assert [x.code for x in page.coupons] == ["WELCOME", "five"] and page.next_page_token
    rest = api.call("ListCoupons", pb.ListCouponsRequest(page_size=2, page_token=page.next_page_token))
    assert [x.code for x in rest.coupons] == ["yen"] and rest.next_page_token == ""
    assert page.coupons[0] == c
    # another tenant sees none and may take the same code
    assert api.call("ListCoupons", pb.ListCouponsRequest(), key=api.other.key).coupons == []
    same_code = pb.CreateCouponRequest(coupon=pb.Coupon(code="WELCOME", kind="percent", percent="5"))
    assert api.call("CreateCoupon", same_code, key=api.other.key).code == "WELCOME"
    err = api.fails("CreateCoupon", same_code)
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS and "WELCOME" in (err.details() or "")


BAD_COUPONS: list[tuple[dict[str, Any], str]] = [
    ({}, "coupon.code is required"),
    ({"code": "a b", "kind": "percent", "percent": "5"}, "coupon.code: "),
    ({"code": "x", "kind": ""}, "coupon.kind is required"),
    ({"code": "x", "kind": "bogo"}, "coupon.kind: "),
    ({"code": "x", "kind": "percent"}, "coupon.percent: is required"),
    ({"code": "x", "kind": "percent", "percent": "0"}, "coupon.percent: must be more than 0 and at most 100"),
    ({"code": "x", "kind": "percent", "percent": "101"}, "coupon.percent: must be more than 0"),
    ({"code": "x", "kind": "percent", "percent": "1e2"}, "coupon.percent: "),
    ({"code": "x", "kind": "percent", "percent": "x" * 5000}, "coupon.percent: "),
    ({"code": "x", "kind": "percent", "percent": "5", "currency": "USD"}, "coupon.amount: "),
    ({"code": "x", "kind": "amount", "amount": "5"}, "coupon.currency: is required"),
    ({"code": "x", "kind": "amount", "amount": "5", "currency": "ABC"}, "coupon.currency: unknown currency"),
    ({"code": "x", "kind": "amount", "amount": "5.001", "currency": "USD"}, "coupon.amount: "),
    ({"code": "x", "kind": "amount", "amount": "-5", "currency": "USD"}, "coupon.amount: must be positive"),
    ({"code": "x", "kind": "amount", "amount": "9" * 30, "currency": "USD"}, "coupon.amount: "),
    ({"code": "x", "kind": "percent", "percent": "5", "duration": "sometimes"}, "coupon.duration: "),
    ({"code": "x", "kind": "percent", "percent": "5", "duration": "repeating"}, "coupon.periods: "),
    ({"code": "x", "kind": "percent", "percent": "5", "duration": "repeating", "periods": -1}, "coupon.periods: "),
    ({"code": "x", "kind": "percent", "percent": "5", "periods": 2}, "coupon.periods: only a repeating coupon"),
    ({"code": "x", "kind": "percent", "percent": "5", "applies_to": ["ok", "NOT OK"]}, "coupon.applies_to[1]: "),
    ({"code": "x", "kind": "percent", "percent": "5", "max_redemptions": -1}, "coupon.max_redemptions"),
    ({"code": "x", "kind": "percent", "percent": "5", "name": "n" * 300}, "coupon.name: "),
]


def test_create_coupon_bad_input_names_the_field(api: Api) -> None:
    problems = []
    for fields, words in BAD_COUPONS:
        err = api.fails("CreateCoupon", pb.CreateCouponRequest(coupon=pb.Coupon(**fields)))
        if err.code() != grpc.StatusCode.INVALID_ARGUMENT or words not in (err.details() or ""):
            problems.append((fields, err.code(), err.details()))
    bad_ts = pb.Coupon(code="x", kind="percent", percent="5", redeem_by=Timestamp(seconds=-(10**11)))
    err = api.fails("CreateCoupon", pb.CreateCouponRequest(coupon=bad_ts))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "coupon.redeem_by" in (err.details() or "")
    assert not problems, problems
    assert api.call("ListCoupons", pb.ListCouponsRequest()).coupons == []
    for request, words in [
        (pb.ListCouponsRequest(page_size=-1), "page_size"),
        (pb.ListCouponsRequest(page_size=1001), "page_size"),
        (pb.ListCouponsRequest(page_token="forged!"), "page_token"),
    ]:
        err = api.fails("ListCoupons", request)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and words in (err.details() or ""), err.details()


def test_apply_list_and_remove_discounts(api: Api) -> None:
    sub_id = _world(api)
    _coupon(api, "WELCOME", duration="repeating", periods=2)
    _coupon(api, "five", kind="amount", percent="", amount="5", currency="USD", duration="forever")
    start = datetime.now(UTC) + timedelta(days=2)
    d1 = api.call("ApplyCoupon", pb.ApplyCouponRequest(coupon="WELCOME", customer="cus_1"))
    assert (d1.coupon, d1.customer, d1.subscription_id, d1.status, d1.periods_used, d1.periods_remaining) == (
        "WELCOME", "cus_1", 0, "active", 0, 2,
    )  # fmt: skip
    assert d1.terms == "12.5% off, for 2 periods" and not d1.HasField("removed_at") and d1.HasField("starts_at")
    d2 = api.call("ApplyCoupon", pb.ApplyCouponRequest(coupon="five", subscription_id=sub_id, starts_at=_ts(start)))
    assert (d2.subscription_id, d2.customer, d2.status) == (sub_id, "cus_1", "scheduled")
    assert not d2.HasField("periods_remaining") and d2.starts_at.ToDatetime(tzinfo=UTC) == start
    d3 = api.call("ApplyCoupon", pb.ApplyCouponRequest(coupon="WELCOME", customer="cus_eur"))
    listed = api.call("ListDiscounts", pb.ListDiscountsRequest(page_size=2), key=api.read)
    assert [d.id for d in listed.discounts] == [d1.id, d2.id] and listed.next_page_token
    rest = api.call("ListDiscounts", pb.ListDiscountsRequest(page_size=2, page_token=listed.next_page_token))
    assert [d.id for d in rest.discounts] == [d3.id] and rest.next_page_token == ""
    mine = api.call("ListDiscounts", pb.ListDiscountsRequest(customer="cus_1"))
    assert [d.id for d in mine.discounts] == [d1.id, d2.id]
    assert [d.id for d in api.call("ListDiscounts", pb.ListDiscountsRequest(subscription_id=sub_id)).discounts] == [
        d2.id
    ]
    removed = api.call("RemoveDiscount", pb.RemoveDiscountRequest(id=d1.id))
    assert removed.status == "removed" and removed.HasField("removed_at")
    assert api.call("RemoveDiscount", pb.RemoveDiscountRequest(id=d1.id)).removed_at == removed.removed_at
    assert [d.id for d in api.call("ListDiscounts", pb.ListDiscountsRequest()).discounts] == [d2.id, d3.id]
    everything = api.call("ListDiscounts", pb.ListDiscountsRequest(include_removed=True))
    assert [d.id for d in everything.discounts] == [d1.id, d2.id, d3.id]
    assert api.call("ListDiscounts", pb.ListDiscountsRequest(), key=api.other.key).discounts == []
    assert [c.times_applied for c in api.call("ListCoupons", pb.ListCouponsRequest()).coupons] == [2, 1]


def test_discount_rpcs_bad_input(api: Api) -> None:
    sub_id = _world(api)
    _coupon(api, "WELCOME")
    _coupon(api, "eur", kind="amount", percent="", amount="5", currency="EUR")
    _coupon(api, "gone", redeem_by=_ts(datetime(2026, 1, 2, tzinfo=UTC)))
    _coupon(api, "one", max_redemptions=1)
    api.call("ApplyCoupon", pb.ApplyCouponRequest(coupon="one", customer="cus_1"))
    d = api.call("ApplyCoupon", pb.ApplyCouponRequest(coupon="WELCOME", customer="cus_1"))
    invalid, missing, refused, exists = (
        grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.ALREADY_EXISTS,
    )  # fmt: skip
    cases: list[tuple[str, Any, grpc.StatusCode, str]] = [
        ("ApplyCoupon", pb.ApplyCouponRequest(customer="cus_1"), invalid, "coupon is required"),
        ("ApplyCoupon", pb.ApplyCouponRequest(coupon="WELCOME"), invalid, "exactly one"),
        ("ApplyCoupon", pb.ApplyCouponRequest(coupon="WELCOME", customer="cus_1", subscription_id=sub_id), invalid,
         "exactly one"),
        ("ApplyCoupon", pb.ApplyCouponRequest(coupon="WELCOME", subscription_id=-3), invalid, "subscription_id"),
        ("ApplyCoupon", pb.ApplyCouponRequest(coupon="WELCOME", subscription_id=2**40), invalid, "subscription_id"),
        ("ApplyCoupon", pb.ApplyCouponRequest(coupon="WELCOME", customer="cus_1",
                                              starts_at=Timestamp(seconds=10**12)), invalid, "starts_at"),
        ("ApplyCoupon", pb.ApplyCouponRequest(coupon="nope", customer="cus_1"), missing, "no coupon 'nope'"),
        ("ApplyCoupon", pb.ApplyCouponRequest(coupon="WELCOME", customer="ghost"), missing, "no customer 'ghost'"),
        ("ApplyCoupon", pb.ApplyCouponRequest(coupon="WELCOME", subscription_id=sub_id + 99), missing,
         "no subscription"),
        ("ApplyCoupon", pb.ApplyCouponRequest(coupon="eur", customer="cus_1"), refused, "pays in USD"),
        ("ApplyCoupon", pb.ApplyCouponRequest(coupon="gone", customer="cus_1"), refused, "could be applied until"),
        ("ApplyCoupon", pb.ApplyCouponRequest(coupon="one", customer="cus_eur"), refused, "its limit"),
        ("ApplyCoupon", pb.ApplyCouponRequest(coupon="WELCOME", customer="cus_1"), exists, f"discount {d.id}"),
        ("ListDiscounts", pb.ListDiscountsRequest(customer="ghost"), missing, "no customer 'ghost'"),
        ("ListDiscounts", pb.ListDiscountsRequest(subscription_id=-1), invalid, "subscription_id"),
        ("ListDiscounts", pb.ListDiscountsRequest(page_size=5000), invalid, "page_size"),
        ("ListDiscounts", pb.ListDiscountsRequest(page_token="eyJ4IjoxfQ"), invalid, "page_token"),
        ("RemoveDiscount", pb.RemoveDiscountRequest(), invalid, "id must be"),
        ("RemoveDiscount", pb.RemoveDiscountRequest(id=-1), invalid, "id must be"),
        ("RemoveDiscount", pb.RemoveDiscountRequest(id=2**40), invalid, "id must be"),
        ("RemoveDiscount", pb.RemoveDiscountRequest(id=d.id + 99), missing, f"no discount {d.id + 99}"),
    ]  # fmt: skip
    problems = []
    for method, request, code, words in cases:
        err = api.fails(method, request)
        if err.code() != code or words not in (err.details() or ""):
            problems.append((method, str(request), err.code(), err.details()))
    assert not problems, problems
    # a read key may list but not change
    err = api.fails("ApplyCoupon", pb.ApplyCouponRequest(coupon="WELCOME", customer="cus_eur"), key=api.read)
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    # tenant B cannot see or remove A's discount
    err = api.fails("RemoveDiscount", pb.RemoveDiscountRequest(id=d.id), key=api.other.key)
    assert err.code() == grpc.StatusCode.NOT_FOUND


def test_the_sdk_round_trip(api: Api) -> None:
    _world(api)
    with BillingClient(api.server.target, api.admin) as billing:
        c = billing.create_coupon("WELCOME", percent=Decimal("12.5"), duration="repeating", periods=2)
        assert (c.percent, c.periods) == ("12.5", 2)
        assert billing.create_coupon("five", amount="5", currency="USD").amount == "5.00"
        with pytest.raises(TypeError):
            billing.create_coupon("float", percent=12.5)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            billing.create_coupon("neither")
        assert [x.code for x in billing.iter_coupons(page_size=1)] == ["WELCOME", "five"]
        d = billing.apply_coupon("WELCOME", customer="cus_1")
        assert d.periods_remaining == 2 and d.status == "active"
        assert [x.id for x in billing.iter_discounts(customer="cus_1", page_size=1)] == [d.id]
        assert billing.remove_discount(d.id).status == "removed"
        assert [x.id for x in billing.iter_discounts(include_removed=True)] == [d.id]
        with pytest.raises(TallyApiError) as info:
            billing.apply_coupon("five", customer="cus_eur")
        assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION and "pays in EUR" in info.value.message
