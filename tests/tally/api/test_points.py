"""Points RPCs over a real server: units, rates, and the accrual of points earned from usage.

Every refusal is checked for its status and for the field its message names; tenancy for each RPC is in
test_access.py, this file checks what a second tenant sees of the first's units, rates and credits.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from invoicing.catalog import CustomerDefinition, create_customer, create_plan, publish_plan
from invoicing.subscriptions import create_subscription
from invoicing.tables import points_accruals
from tally.api.base import Periodic
from tests.invoicing.conftest import write_events
from tests.tally.api.conftest import Api, pb
from tests.tally.api.test_wallets import fails, ts

T0 = datetime(2026, 1, 1, tzinfo=UTC)
FEB = datetime(2026, 2, 1, tzinfo=UTC)
BAD = grpc.StatusCode.INVALID_ARGUMENT


def define(api: Api, code: str = "pts", scale: int = 0, name: str = "", key: str | None = None) -> pb.PointsUnit:
    got: pb.PointsUnit = api.call(
        "DefinePointsUnit", pb.DefinePointsUnitRequest(code=code, scale=scale, name=name), key
    )
    return got


def rate_request(**kw: Any) -> pb.SetConversionRateRequest:
    fields: dict[str, Any] = {"currency": "USD", "points_unit": "pts", "rate": "100", "valid_from": ts(T0), **kw}
    return pb.SetConversionRateRequest(**fields)


# --- units ---------------------------------------------------------------------------------------------------------


def test_define_points_unit_is_idempotent_and_lists_by_code(api: Api) -> None:
    assert define(api, "pts", 0, "Reward points") == pb.PointsUnit(code="pts", scale=0, name="Reward points")
    assert define(api, "pts", 0) == pb.PointsUnit(code="pts", scale=0, name="Reward points")  # again: unchanged
    assert define(api, "gems", 2).name == "gems"
    define(api, "coins", 1)
    first = api.call("ListPointsUnits", pb.ListPointsUnitsRequest(page_size=2))
    assert [u.code for u in first.units] == ["coins", "gems"] and first.next_page_token
    rest = api.call("ListPointsUnits", pb.ListPointsUnitsRequest(page_size=2, page_token=first.next_page_token))
    assert [u.code for u in rest.units] == ["pts"] and rest.next_page_token == ""
    other = api.call("ListPointsUnits", pb.ListPointsUnitsRequest(), api.other.key)
    assert list(other.units) == []  # another tenant's units are its own
    assert define(api, "pts", 3, key=api.other.key).scale == 3  # ... and so are their codes


@pytest.mark.parametrize(
    ("fields", "status", "fragment"),
    [
        ({"code": ""}, BAD, "code is required"),
        ({"code": "USD"}, BAD, "code: 'USD' is a currency code"),
        ({"code": "eur"}, BAD, "code: 'eur' is a currency code"),
        ({"code": "Pts"}, BAD, "code: 'Pts' is not a points unit code"),
        ({"code": "p" * 33}, BAD, "is not a points unit code"),
        ({"scale": 13}, BAD, "scale: 13 must be a whole number of decimal places from 0 to 12"),
        ({"scale": -1}, BAD, "scale: -1"),
        ({"name": "n" * 129}, BAD, "name: 129 characters; at most 128"),
        ({"scale": 2}, grpc.StatusCode.ALREADY_EXISTS, "scale: points unit 'pts' already exists with scale 0"),
        ({"name": "Other"}, grpc.StatusCode.ALREADY_EXISTS, "name: points unit 'pts' already exists named 'Points'"),
    ],
)
def test_define_points_unit_refusals_name_the_field(api: Api, fields: dict[str, Any], status: grpc.StatusCode,
                                                    fragment: str) -> None:  # fmt: skip
    define(api, "pts", 0, "Points")
    fails(
        api, "DefinePointsUnit", pb.DefinePointsUnitRequest(**{"code": "pts", "scale": 0, **fields}), status, fragment
    )
    assert [(u.code, u.scale) for u in api.call("ListPointsUnits", pb.ListPointsUnitsRequest()).units] == [("pts", 0)]


def test_list_points_units_refuses_a_forged_token(api: Api) -> None:
    fails(api, "ListPointsUnits", pb.ListPointsUnitsRequest(page_token="bm90IGEgdG9rZW4"), BAD, "page_token")
    fails(api, "ListPointsUnits", pb.ListPointsUnitsRequest(page_size=1001), BAD, "page_size")


# --- rates ---------------------------------------------------------------------------------------------------------


def test_set_conversion_rate_then_convert_at_it(api: Api) -> None:
    """The README's sequence through the API: a unit, its rate, then a conversion at that rate."""
    define(api)
    got = api.call("SetConversionRate", rate_request(valid_to=ts(FEB), rounding="half_even"))
    assert (got.currency, got.points_unit, got.rate, got.rounding) == ("USD", "pts", "100", "half_even")
    assert got.valid_from.ToDatetime(tzinfo=UTC) == T0 and got.valid_to.ToDatetime(tzinfo=UTC) == FEB
    open_ended = api.call("SetConversionRate", rate_request(rate="120.5", valid_from=ts(FEB)))
    assert open_ended.rounding == "down" and not open_ended.HasField("valid_to")
    create_customer(api.engine, api.tenant.tenant_id, CustomerDefinition(external_id="cus_42"), T0)
    api.call("TopUpWallet", pb.TopUpWalletRequest(top_up_id="t1", customer="cus_42", amount="10", unit="USD"))
    converted = api.call("ConvertCredits", pb.ConvertCreditsRequest(
        conversion_id="c1", customer="cus_42", amount="2.50", from_unit="USD", to_unit="pts"))  # fmt: skip
    assert (converted.debited.amount, converted.credited.amount, converted.rate) == ("2.00", "241", "120.5")
    # only whole multiples of 2.00 USD convert exactly at 120.5: the rest stayed, and the response says so
    assert (converted.left_in_source.unit, converted.left_in_source.amount) == ("USD", "0.50")


@pytest.mark.parametrize(
    ("fields", "status", "fragment"),
    [
        ({"rate": "-1"}, BAD, "rate: -1 must be positive"),
        ({"rate": "0"}, BAD, "rate: 0 must be positive"),
        ({"rate": "abc"}, BAD, "rate: 'abc' is not a decimal in plain notation"),
        ({"rate": "1e-3"}, BAD, "rate: '1e-3' is not a decimal in plain notation"),
        ({"rate": "0.0000000000001"}, BAD, "rate: 1E-13 has more than 12 decimal places"),
        ({"rate": ""}, BAD, "rate is required"),
        ({"currency": "XYZ"}, BAD, "currency: 'XYZ' is not a known currency"),
        ({"currency": ""}, BAD, "currency is required"),
        ({"points_unit": "USD"}, BAD, "points_unit: 'USD' is a currency"),
        ({"points_unit": "gems"}, grpc.StatusCode.NOT_FOUND, "points_unit: 'gems' is not a points unit of this tenant"),
        ({"valid_from": None}, BAD, "valid_from is required"),
        ({"valid_from": ts(FEB), "valid_to": ts(T0 + timedelta(days=20))}, BAD, "valid_to: 2026-01-21"),
        ({"valid_from": ts(T0 + timedelta(days=3))}, grpc.StatusCode.ALREADY_EXISTS,
         "valid_from: a USD->pts rate is already valid from 2026-01-01"),
        ({"rounding": "nearest"}, BAD, "rounding: 'nearest' is not a rounding rule; one of half_even, half_up, down"),
    ],
)  # fmt: skip
def test_set_conversion_rate_refusals_name_the_field(api: Api, fields: dict[str, Any], status: grpc.StatusCode,
                                                     fragment: str) -> None:  # fmt: skip
    define(api)
    api.call("SetConversionRate", rate_request(valid_to=ts(FEB)))
    request = rate_request(valid_from=ts(FEB + timedelta(days=1)))
    for name, value in fields.items():
        if value is None:
            request.ClearField(name)
        elif isinstance(value, Timestamp):
            getattr(request, name).CopyFrom(value)
        else:
            setattr(request, name, value)
    fails(api, "SetConversionRate", request, status, fragment)
    assert len(api.call("ListConversionRates", pb.ListConversionRatesRequest()).rates) == 1  # nothing written


def test_a_tenant_sets_no_rate_on_anothers_unit(api: Api) -> None:
    define(api)
    fails(api, "SetConversionRate", rate_request(), grpc.StatusCode.NOT_FOUND, "points_unit: 'pts'", api.other.key)


def test_list_conversion_rates_filters_by_pair_and_pages(api: Api) -> None:
    define(api)
    define(api, "gems", 2)
    for unit, rate, start in (("pts", "100", T0), ("gems", "5", T0), ("gems", "6", FEB)):
        api.call("SetConversionRate", rate_request(points_unit=unit, rate=rate, valid_from=ts(start),
                                                   valid_to=ts(start + timedelta(days=31))))  # fmt: skip
    api.call("SetConversionRate", rate_request(currency="EUR", rate="90"))
    every = api.call("ListConversionRates", pb.ListConversionRatesRequest()).rates
    assert [(r.currency, r.points_unit, r.rate) for r in every] == [
        ("EUR", "pts", "90"), ("USD", "gems", "5"), ("USD", "gems", "6"), ("USD", "pts", "100")
    ]  # fmt: skip
    gems = api.call("ListConversionRates", pb.ListConversionRatesRequest(currency="USD", points_unit="gems")).rates
    assert [r.rate for r in gems] == ["5", "6"]
    pts = api.call("ListConversionRates", pb.ListConversionRatesRequest(points_unit="pts")).rates
    assert [r.rate for r in pts] == ["90", "100"]
    seen, token = [], ""
    while True:
        page = api.call("ListConversionRates", pb.ListConversionRatesRequest(page_size=1, page_token=token))
        seen += [(r.currency, r.points_unit, r.rate) for r in page.rates]
        token = page.next_page_token
        if not token:
            break
    assert seen == [(r.currency, r.points_unit, r.rate) for r in every]
    assert list(api.call("ListConversionRates", pb.ListConversionRatesRequest(), api.other.key).rates) == []
    fails(api, "ListConversionRates", pb.ListConversionRatesRequest(currency="XYZ"), BAD, "currency: 'XYZ'")
    fails(api, "ListConversionRates", pb.ListConversionRatesRequest(points_unit="nope"), grpc.StatusCode.NOT_FOUND,
          "points_unit: ")  # fmt: skip
    fails(api, "ListConversionRates", pb.ListConversionRatesRequest(page_token="WzEsMiwzXQ"), BAD, "page_token")


# --- earning -------------------------------------------------------------------------------------------------------


def viewers(api: Api) -> int:
    """cus_v on plan `viewer` (0.5 pts per api call, at most 10 a month), with 30 calls in January."""
    engine, tid = api.engine, api.tenant.tenant_id
    define(api)
    create_customer(engine, tid, CustomerDefinition(external_id="cus_v"), T0)
    plan = {
        "code": "viewer",
        "charges": [],
        "earning": [
            {"code": "watch", "meter": "api_calls", "unit": "pts", "points_per_unit": "0.5", "cap_per_period": "10"}
        ],
    }
    create_plan(engine, tid, plan, T0)
    publish_plan(engine, tid, "viewer", T0)
    sub = create_subscription(engine, tid, "cus_v", "viewer", T0).id
    write_events(engine, tid, [(f"e{k}", "cus_v", "api_calls", T0 + timedelta(hours=k), 1, None) for k in range(30)])
    return sub


def test_accrue_points_credits_once_and_says_what(api: Api) -> None:
    sub = viewers(api)
    seen: list[tuple[int, str]] = []
    api.server.running.billing.listeners.append(lambda t, c: seen.append((t, c)))
    got = api.call("AccruePoints", pb.AccruePointsRequest(as_of=ts(T0 + timedelta(hours=10))))
    assert (got.credited, got.checked, [(t.unit, t.amount) for t in got.totals]) == (1, 1, [("pts", "5")])
    (c,) = got.credits
    assert (c.customer, c.subscription_id, c.plan, c.plan_version, c.rule, c.meter, c.unit) == (
        "cus_v", sub, "viewer", 1, "watch", "api_calls", "pts")  # fmt: skip
    assert (c.quantity, c.points, c.earned, c.capped) == ("10", "5", "5", False)
    assert c.transfer_id.startswith(f"~earn:s{sub}:v") and c.through.ToDatetime(tzinfo=UTC) == T0 + timedelta(hours=10)
    assert seen == [(api.tenant.tenant_id, "cus_v")]  # entitlement caches hear of the new balance

    rest = api.call("AccruePoints", pb.AccruePointsRequest(as_of=ts(FEB)))
    assert [(x.points, x.earned, x.capped) for x in rest.credits] == [("5", "10", True)]  # 15 owed, capped at 10
    assert api.call("AccruePoints", pb.AccruePointsRequest(as_of=ts(FEB))).credited == 0
    balances = api.call("GetBalances", pb.GetBalancesRequest(customer="cus_v")).totals
    assert [(b.unit, b.balance) for b in balances] == [("pts", "10")]
    assert api.call("AccruePoints", pb.AccruePointsRequest(), api.other.key).credited == 0


def test_accrue_points_refusals(api: Api) -> None:
    viewers(api)
    later = datetime.now(UTC) + timedelta(hours=1)
    fails(api, "AccruePoints", pb.AccruePointsRequest(as_of=ts(later)), BAD, "as_of: ")
    fails(api, "AccruePoints", pb.AccruePointsRequest(as_of=ts(T0), since=ts(FEB)), BAD, "since: ")
    fails(api, "AccruePoints", pb.AccruePointsRequest(), grpc.StatusCode.PERMISSION_DENIED, "admin", api.read)
    with api.engine.connect() as conn:
        assert conn.execute(points_accruals.select()).first() is None


def test_the_server_accrues_in_the_background(api: Api) -> None:
    """The server's worker runs the same accrual (its job is called here rather than waited for)."""
    viewers(api)
    (worker,) = [w for w in api.server.running.billing.workers if getattr(w, "name", "") == "points-accrual"]
    assert isinstance(worker, Periodic)
    runs = worker.job(FEB + timedelta(days=3))  # January ended within ingest's event age: still looked at
    assert [c.points for r in runs for c in r.credits] == [10]
    (late,) = worker.job(FEB + timedelta(days=60))  # January is too old for a late event now: not read again
    assert late.credits == () and late.checked == 3  # February, March and April only
    balances = api.call("GetBalances", pb.GetBalancesRequest(customer="cus_v")).totals
    assert [(b.unit, b.balance) for b in balances] == [("pts", "10")]
