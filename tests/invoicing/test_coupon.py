"""Coupons and discounts in storage, on SQLite and PostgreSQL: validation, applying, removing, what is in
force for the invoice run, and redemptions recorded once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select

from invoicing.catalog import (
    CouponDefinition,
    CustomerDefinition,
    InvalidCoupon,
    Redemption,
    active_discounts,
    apply_coupon,
    create_coupon,
    create_customer,
    get_coupon,
    get_customer,
    get_discount,
    list_coupons,
    list_discounts,
    record_redemptions,
    remove_discount,
)
from invoicing.subscriptions import cancel_subscription, create_subscription
from invoicing.tables import customers, discount_redemptions
from metering.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from metering.transactions import begin_write
from tests.conftest import TenantKey, make_tenant
from tests.invoicing.conftest import T0, published

NOW = T0 + timedelta(days=3)


def coupon(code: str = "WELCOME", **kw: Any) -> CouponDefinition:
    values: dict[str, Any] = {"code": code, "kind": "percent", "percent": "12.5"}
    values.update(kw)
    return CouponDefinition(**values)


def test_create_get_and_list_coupons(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    c = create_coupon(
        engine, tid, coupon(name="Welcome", duration="repeating", periods=3, applies_to=["calls", "base"]), NOW
    )
    assert (c.code, c.name, c.kind, c.percent, c.duration, c.periods, c.period_limit) == (
        "WELCOME", "Welcome", "percent", Decimal("12.5"), "repeating", 3, 3,
    )  # fmt: skip
    assert c.applies_to == ("base", "calls") and c.created_at == NOW and c.times_applied == 0
    assert c.terms == "12.5% off on base, calls, for 3 periods"
    a = create_coupon(engine, tid, coupon("five-off", kind="amount", percent=None, amount="5.00", currency="USD"), NOW)
    assert (a.amount, a.currency, a.amount_decimal, a.name, a.period_limit) == (
        500,
        "USD",
        Decimal("5.00"),
        "five-off",
        1,
    )
    jpy = create_coupon(engine, tid, coupon("yen", kind="amount", percent=None, amount=Decimal("300"), currency="JPY",
                                            duration="forever"), NOW)  # fmt: skip
    assert jpy.amount == 300 and jpy.period_limit is None and jpy.terms == "300 JPY off, forever"
    assert create_coupon(engine, tid, coupon("full", percent="100.000"), NOW).percent == Decimal(100)
    assert get_coupon(engine, tid, "WELCOME") == c
    page = list_coupons(engine, tid, limit=2)
    assert [x.code for x in page.coupons] == ["WELCOME", "five-off"] and page.next_after == "five-off"
    page = list_coupons(engine, tid, after=page.next_after, limit=2)
    assert [x.code for x in page.coupons] == ["full", "yen"] and page.next_after is None
    with pytest.raises(AlreadyExists, match="WELCOME"):
        create_coupon(engine, tid, coupon(), NOW)
    # another tenant sees nothing, and may use the same code
    other = make_tenant(engine, "other")
    with pytest.raises(NotFound):
        get_coupon(engine, other.tenant_id, "WELCOME")
    assert create_coupon(engine, other.tenant_id, coupon(), NOW).code == "WELCOME"


#: (definition changes, the field named, words of the reason)
INVALID: list[tuple[dict[str, Any], str, str]] = [
    ({"code": ""}, "code", "1 to 64"),
    ({"code": "a b"}, "code", "1 to 64"),
    ({"code": "x" * 65}, "code", "1 to 64"),
    ({"name": "x" * 257}, "name", "at most 256"),
    ({"name": "a\x00b"}, "name", "control character"),
    ({"kind": "bogo"}, "kind", "percent or amount"),
    ({"duration": "sometimes"}, "duration", "once, repeating or forever"),
    ({"percent": None}, "percent", "required"),
    ({"percent": "0"}, "percent", "more than 0 and at most 100"),
    ({"percent": "100.01"}, "percent", "more than 0 and at most 100"),
    ({"percent": "-5"}, "percent", "more than 0"),
    ({"percent": "1e1"}, "percent", "plain notation"),
    ({"percent": "NaN"}, "percent", "plain notation"),
    ({"percent": 12.5}, "percent", "floats are not accepted"),
    ({"percent": "0." + "0" * 30 + "1"}, "percent", "digits"),
    ({"amount": "5"}, "amount", "no amount"),
    ({"kind": "amount", "percent": None}, "amount", "required"),
    ({"kind": "amount", "percent": None, "amount": "5"}, "currency", "required"),
    ({"kind": "amount", "amount": "5", "currency": "USD"}, "percent", "no percent"),
    ({"kind": "amount", "percent": None, "amount": "5", "currency": "XXX"}, "currency", "unknown currency"),
    ({"kind": "amount", "percent": None, "amount": "0", "currency": "USD"}, "amount", "positive"),
    ({"kind": "amount", "percent": None, "amount": "5.001", "currency": "USD"}, "amount", "decimal places"),
    ({"kind": "amount", "percent": None, "amount": "5.5", "currency": "JPY"}, "amount", "decimal places"),
    ({"kind": "amount", "percent": None, "amount": "99999999999999999999", "currency": "USD"}, "amount", "64 bits"),
    ({"duration": "repeating"}, "periods", "1 to 1200"),
    ({"duration": "repeating", "periods": 0}, "periods", "1 to 1200"),
    ({"periods": 3}, "periods", "only a repeating coupon"),
    ({"applies_to": ["Base"]}, "applies_to[0]", "not a charge code"),
    ({"applies_to": ["c"] * 101}, "applies_to", "at most 100"),
    ({"max_redemptions": 0}, "max_redemptions", "1 to"),
]


def test_invalid_coupons_name_the_field(engine: Engine, tenant: TenantKey) -> None:
    for kw, field, words in INVALID:
        with pytest.raises(InvalidCoupon, match=words) as info:
            create_coupon(engine, tenant.tenant_id, coupon(**kw), NOW)
        assert info.value.field == field and str(info.value).startswith(f"{field}: "), (kw, str(info.value))
    assert list_coupons(engine, tenant.tenant_id).coupons == []


def _world(engine: Engine, tid: int) -> tuple[int, int]:
    """Customer cus_1 (USD) with one subscription, cus_2 (EUR) with none; returns (subscription id, plan)."""
    create_customer(engine, tid, CustomerDefinition(external_id="cus_1", name="Ada"), T0)
    create_customer(engine, tid, CustomerDefinition(external_id="cus_2", currency="EUR"), T0)
    plan = published(engine, tid, "pro")
    return create_subscription(engine, tid, "cus_1", "pro", T0).id, plan


def test_apply_list_remove(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    sub_id, _ = _world(engine, tid)
    create_coupon(engine, tid, coupon(duration="repeating", periods=2), NOW)
    create_coupon(engine, tid, coupon("five", kind="amount", percent=None, amount="5", currency="USD"), NOW)
    d1 = apply_coupon(engine, tid, "WELCOME", NOW, customer="cus_1")
    assert (d1.customer, d1.subscription_id, d1.starts_at, d1.removed_at, d1.periods_used) == (
        "cus_1",
        None,
        NOW,
        None,
        0,
    )
    assert d1.periods_remaining == 2 and d1.status(NOW) == "active" and d1.coupon.code == "WELCOME"
    later = NOW + timedelta(days=10)
    d2 = apply_coupon(engine, tid, "five", NOW, subscription_id=sub_id, starts_at=later)
    assert d2.subscription_id == sub_id and d2.customer == "cus_1" and d2.status(NOW) == "scheduled"
    assert get_coupon(engine, tid, "five").times_applied == 1
    # the same coupon twice on the same target is refused; on another target it is fine
    with pytest.raises(AlreadyExists, match=f"discount {d1.id}"):
        apply_coupon(engine, tid, "WELCOME", NOW, customer="cus_1")
    d3 = apply_coupon(engine, tid, "WELCOME", NOW, subscription_id=sub_id)
    d4 = apply_coupon(engine, tid, "WELCOME", NOW, customer="cus_2")
    assert [d.id for d in list_discounts(engine, tid).discounts] == [d1.id, d2.id, d3.id, d4.id]
    assert [d.id for d in list_discounts(engine, tid, customer="cus_1").discounts] == [d1.id, d2.id, d3.id]
    assert [d.id for d in list_discounts(engine, tid, subscription_id=sub_id).discounts] == [d2.id, d3.id]
    page = list_discounts(engine, tid, limit=3)
    assert page.next_after == d3.id
    assert [d.id for d in list_discounts(engine, tid, after=page.next_after).discounts] == [d4.id]
    # removing ends it; a second removal changes nothing; removed ones are listed only when asked
    gone = remove_discount(engine, tid, d1.id, later)
    assert gone.removed_at == later and gone.status(later) == "removed" and gone.status(NOW) == "active"
    assert remove_discount(engine, tid, d1.id, later + timedelta(days=1)).removed_at == later
    assert d1.id not in [d.id for d in list_discounts(engine, tid).discounts]
    assert d1.id in [d.id for d in list_discounts(engine, tid, at=NOW).discounts]  # removed later than NOW
    assert d1.id in [d.id for d in list_discounts(engine, tid, include_removed=True).discounts]
    # once removed, it may be applied again
    assert apply_coupon(engine, tid, "WELCOME", later, customer="cus_1").id > d4.id
    assert get_discount(engine, tid, d2.id) == d2
    # another tenant: nothing
    other = make_tenant(engine, "other").tenant_id
    with pytest.raises(NotFound):
        remove_discount(engine, other, d2.id, NOW)
    with pytest.raises(NotFound):
        get_discount(engine, other, d2.id)
    assert list_discounts(engine, other).discounts == []


def test_apply_is_refused_with_reasons(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    sub_id, _ = _world(engine, tid)
    create_coupon(engine, tid, coupon(), NOW)
    create_coupon(engine, tid, coupon("eur", kind="amount", percent=None, amount="5", currency="EUR"), NOW)
    create_coupon(engine, tid, coupon("late", redeem_by=NOW), NOW)
    create_coupon(engine, tid, coupon("two", max_redemptions=2), NOW)
    cases: list[tuple[type[Exception], str, dict[str, Any]]] = [
        (NotFound, "no coupon 'nope'", {"code": "nope", "customer": "cus_1"}),
        (NotFound, "no customer 'ghost'", {"code": "WELCOME", "customer": "ghost"}),
        (NotFound, "no subscription 999", {"code": "WELCOME", "subscription_id": 999}),
        (NotFound, "no subscription", {"code": "WELCOME", "subscription_id": 2**40}),
        (InvalidArgument, "exactly one", {"code": "WELCOME"}),
        (InvalidArgument, "exactly one", {"code": "WELCOME", "customer": "cus_1", "subscription_id": sub_id}),
        (FailedPrecondition, "pays in USD", {"code": "eur", "customer": "cus_1"}),
        (FailedPrecondition, "could be applied until", {"code": "late", "customer": "cus_1"}),
    ]
    for error, words, kw in cases:
        code = kw.pop("code")
        with pytest.raises(error, match=words):
            apply_coupon(engine, tid, code, NOW, **kw)
    # redeem-by also binds a start after it
    create_coupon(engine, tid, coupon("soon", redeem_by=NOW + timedelta(days=1)), NOW)
    with pytest.raises(FailedPrecondition, match="could be applied until"):
        apply_coupon(engine, tid, "soon", NOW, customer="cus_1", starts_at=NOW + timedelta(days=2))
    assert apply_coupon(engine, tid, "soon", NOW, customer="cus_1").coupon.code == "soon"
    # max redemptions: applications, removed ones included
    first = apply_coupon(engine, tid, "two", NOW, customer="cus_1")
    remove_discount(engine, tid, first.id, NOW)
    apply_coupon(engine, tid, "two", NOW, customer="cus_1")
    with pytest.raises(FailedPrecondition, match="applied 2 times, its limit"):
        apply_coupon(engine, tid, "two", NOW, customer="cus_2")
    assert get_coupon(engine, tid, "two").times_applied == 2
    # a subscription that has ended
    cancel_subscription(engine, tid, sub_id, NOW)
    with pytest.raises(FailedPrecondition, match="ended"):
        apply_coupon(engine, tid, "WELCOME", NOW + timedelta(hours=1), subscription_id=sub_id)
    assert apply_coupon(engine, tid, "eur", NOW, customer="cus_2").coupon.currency == "EUR"


def test_active_discounts_and_redemptions(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    sub_id, _ = _world(engine, tid)
    cus_1 = get_customer(engine, tid, "cus_1").id
    cus_2 = get_customer(engine, tid, "cus_2").id
    create_coupon(engine, tid, coupon(duration="repeating", periods=2, applies_to=["base"]), NOW)
    create_coupon(
        engine, tid, coupon("five", kind="amount", percent=None, amount="5", currency="USD", duration="forever"), NOW
    )
    create_coupon(engine, tid, coupon("once"), NOW)
    later = NOW + timedelta(days=5)
    d_late = apply_coupon(engine, tid, "five", NOW, customer="cus_1", starts_at=later)
    d_sub = apply_coupon(engine, tid, "WELCOME", NOW, subscription_id=sub_id)
    d_once = apply_coupon(engine, tid, "once", NOW, customer="cus_2")
    d_gone = apply_coupon(engine, tid, "once", NOW, customer="cus_1")
    remove_discount(engine, tid, d_gone.id, NOW + timedelta(days=1))
    with engine.connect() as conn:
        assert active_discounts(conn, tid, [], NOW) == {}
        now_in_force = active_discounts(conn, tid, [cus_1, cus_2], NOW)
        at_later = active_discounts(conn, tid, [cus_1, cus_2, cus_1], later)
    assert [d.id for d in now_in_force[cus_1]] == [d_sub.id, d_gone.id]
    assert [d.id for d in at_later[cus_1]] == [d_sub.id, d_late.id]  # by (applied_at, id); removed one gone
    sub_d = at_later[cus_1][0]
    assert (sub_d.coupon, sub_d.kind, sub_d.percent, sub_d.subscription_id, sub_d.applies_to) == (
        "WELCOME", "percent", Decimal("12.5"), sub_id, frozenset({"base"}),
    )  # fmt: skip
    assert sub_d.periods_remaining == 2 and sub_d.redeemed == frozenset() and sub_d.applied_at == NOW
    late_d = at_later[cus_1][1]
    assert (late_d.kind, late_d.amount, late_d.currency, late_d.periods_remaining, late_d.subscription_id) == (
        "amount", 500, "USD", None, None,
    )  # fmt: skip
    assert [d.id for d in at_later[cus_2]] == [d_once.id] and at_later[cus_2][0].periods_remaining == 1

    p1, p2, p3 = (datetime(2026, m, 1, tzinfo=UTC) for m in (2, 3, 4))
    used = [Redemption(d_sub.id, p1, 125, "USD"), Redemption(d_once.id, p1, 300, "USD")]
    with begin_write(engine) as conn:
        record_redemptions(conn, tid, used)
        record_redemptions(conn, tid, [])
    with begin_write(engine) as conn:  # a re-run: nothing counted twice, even with another amount
        record_redemptions(conn, tid, [Redemption(d_sub.id, p1, 999, "USD"), Redemption(d_sub.id, p2, 125, "USD")])
    with engine.connect() as conn:
        rows = conn.execute(select(func.count()).select_from(discount_redemptions)).scalar_one()
        assert rows == 3
        got = active_discounts(conn, tid, [cus_1, cus_2], later)
    assert got[cus_1][0].periods_remaining == 0 and got[cus_1][0].redeemed == frozenset({p1, p2})
    assert got[cus_2][0].periods_remaining == 0 and got[cus_2][0].redeemed == frozenset({p1})
    assert got[cus_1][1].redeemed == frozenset()  # forever: periods are not loaded
    # more periods than allowed are the caller's to avoid; listing says what is left
    assert get_discount(engine, tid, d_sub.id).periods_used == 2
    assert get_discount(engine, tid, d_sub.id).status(later) == "used"
    with begin_write(engine) as conn:
        record_redemptions(conn, tid, [Redemption(d_sub.id, p3.astimezone(UTC), 1, "USD")])
    assert get_discount(engine, tid, d_sub.id).periods_remaining == 0
    # another tenant's discount is refused, and nothing of the batch is written
    other = make_tenant(engine, "other").tenant_id
    with pytest.raises(NotFound, match=f"no discount {d_once.id}"), begin_write(engine) as conn:
        record_redemptions(conn, other, [Redemption(d_once.id, p3, 1, "USD")])


def test_many_customers_and_redemptions_in_one_call(engine: Engine, tenant: TenantKey) -> None:
    """IN lists and multi-row inserts are chunked below every database's bound-parameter limit."""
    tid = tenant.tenant_id
    create_coupon(engine, tid, coupon(duration="repeating", periods=5), NOW)
    with begin_write(engine) as conn:
        conn.execute(
            insert(customers),
            [{"tenant_id": tid, "external_id": f"c{i}", "name": f"c{i}", "currency": "USD", "timezone": "UTC",
              "address": None, "tax_region": "", "email": "", "attributes": "{}", "created_at": T0, "updated_at": T0}
             for i in range(2000)],
        )  # fmt: skip
    ids = [apply_coupon(engine, tid, "WELCOME", NOW, customer=f"c{i}").id for i in range(0, 2000, 100)]
    p = datetime(2026, 2, 1, tzinfo=UTC)
    used = [Redemption(d, p + timedelta(days=k), 1, "USD") for d in ids for k in range(5)]
    with begin_write(engine) as conn:
        record_redemptions(conn, tid, used * 4)
    with engine.connect() as conn:
        everyone = list(conn.execute(select(customers.c.id).where(customers.c.tenant_id == tid)).scalars())
        got = active_discounts(conn, tid, everyone, NOW)
    assert sum(len(v) for v in got.values()) == 20
    assert all(d.periods_remaining == 0 and len(d.redeemed) == 5 for v in got.values() for d in v)


def test_concurrent_applications_keep_the_limit_and_refuse_duplicates(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    _world(engine, tid)
    create_coupon(engine, tid, coupon(max_redemptions=3), NOW)
    create_coupon(engine, tid, coupon("dup"), NOW)
    with begin_write(engine) as conn:
        conn.execute(
            insert(customers),
            [{"tenant_id": tid, "external_id": f"c{i}", "name": f"c{i}", "currency": "USD", "timezone": "UTC",
              "address": None, "tax_region": "", "email": "", "attributes": "{}", "created_at": T0, "updated_at": T0}
             for i in range(8)],
        )  # fmt: skip

    def attempt(code: str, customer: str) -> str:
        try:
            apply_coupon(engine, tid, code, NOW, customer=customer)
        except (FailedPrecondition, AlreadyExists) as exc:
            return type(exc).__name__
        return "ok"

    with ThreadPoolExecutor(4) as pool:
        limited = list(pool.map(lambda i: attempt("WELCOME", f"c{i}"), range(8)))
        doubled = list(pool.map(lambda _: attempt("dup", "cus_1"), range(6)))
    assert sorted(limited) == ["FailedPrecondition"] * 5 + ["ok"] * 3
    assert sorted(doubled) == ["AlreadyExists"] * 5 + ["ok"]
    assert get_coupon(engine, tid, "WELCOME").times_applied == 3 and get_coupon(engine, tid, "dup").times_applied == 1
