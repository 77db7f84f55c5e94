"""BillingService catalog over a real server: meters, plans and their versions, price simulation."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import grpc

from invoicing.catalog import list_plan_versions
from metering.meter import get_meter
from tally.api.base import encode_token
from tests.tally.api.conftest import Api, pb

# --- meters ----------------------------------------------------------------------------------------------------


def test_create_and_get_meter(api: Api) -> None:
    meter = pb.Meter(
        code="gpu_seconds",
        name="GPU seconds",
        aggregation="sum",
        value_scale=3,
        unit="s",
        filter={"kind": pb.StringList(values=["train", "infer"])},
        group_by=["region", "gpu"],
    )
    created = api.call("CreateMeter", pb.CreateMeterRequest(meter=meter))
    assert (created.code, created.name, created.aggregation, created.value_scale, created.unit) == (
        "gpu_seconds",
        "GPU seconds",
        "sum",
        3,
        "s",
    )
    assert list(created.filter["kind"].values) == ["infer", "train"]  # stored sorted
    assert list(created.group_by) == ["region", "gpu"]
    assert (created.unique_property, created.time_unit) == ("", "")
    assert api.call("GetMeter", pb.GetMeterRequest(code="gpu_seconds"), key=api.read) == created
    stored = get_meter(api.engine, api.tenant.tenant_id, "gpu_seconds")
    assert stored.value_scale == 3 and stored.group_by == ("region", "gpu")


def test_create_meter_options(api: Api) -> None:
    seats = api.call("CreateMeter", pb.CreateMeterRequest(meter=pb.Meter(code="seats", aggregation="gauge")))
    assert (seats.aggregation, seats.time_unit, seats.name) == ("gauge", "day", "seats")  # gauge defaults to days
    users = api.call(
        "CreateMeter",
        pb.CreateMeterRequest(meter=pb.Meter(code="mau", aggregation="unique_count", unique_property="user")),
    )
    assert (users.aggregation, users.unique_property) == ("unique_count", "user")
    plain = api.call("CreateMeter", pb.CreateMeterRequest(meter=pb.Meter(code="bytes")))
    assert (plain.aggregation, plain.value_scale) == ("sum", 0)


METER_REFUSALS: list[tuple[pb.Meter, str]] = [
    (pb.Meter(), "meter.code is required"),
    (pb.Meter(code="Bad Code"), "meter.code"),
    (pb.Meter(code="m1", aggregation="avg"), "meter.aggregation"),
    (pb.Meter(code="m1", value_scale=19), "meter.value_scale"),
    (pb.Meter(code="m1", aggregation="unique_count"), "unique_count needs unique_property"),
    (pb.Meter(code="m1", time_unit="hour"), "time_unit only applies to gauge"),
    (pb.Meter(code="m1", group_by=["a", "a"]), "meter.group_by: group_by names a property twice"),
    (pb.Meter(code="m1", filter={"kind": pb.StringList()}), "meter.filter"),
]


def test_create_meter_refuses_bad_input(api: Api) -> None:
    for meter, fragment in METER_REFUSALS:
        err = api.fails("CreateMeter", pb.CreateMeterRequest(meter=meter))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, meter
        assert fragment in (err.details() or ""), (fragment, err.details())
    codes = [m.code for m in api.call("ListMeters", pb.ListMetersRequest()).meters]
    assert codes == ["api_calls", "tokens"]  # the fixture's meters only


def test_meter_taken_and_missing(api: Api) -> None:
    err = api.fails("CreateMeter", pb.CreateMeterRequest(meter=pb.Meter(code="tokens", aggregation="count")))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS and "'tokens' already exists" in (err.details() or "")
    assert api.call("GetMeter", pb.GetMeterRequest(code="tokens")).aggregation == "sum"  # unchanged
    err = api.fails("GetMeter", pb.GetMeterRequest(code="nope"))
    assert err.code() == grpc.StatusCode.NOT_FOUND and "no meter 'nope'" in (err.details() or "")


def test_list_meters_pages(api: Api) -> None:
    for code in ("m_c", "m_a", "m_b"):
        api.call("CreateMeter", pb.CreateMeterRequest(meter=pb.Meter(code=code)))
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = api.call("ListMeters", pb.ListMetersRequest(page_size=2, page_token=token), key=api.read)
        assert len(page.meters) <= 2
        seen += [m.code for m in page.meters]
        pages += 1
        if not page.next_page_token:
            break
        token = page.next_page_token
        if pages == 1:  # ahead of the cursor ("api_calls", "m_a"): listed once; behind it: never
            api.call("CreateMeter", pb.CreateMeterRequest(meter=pb.Meter(code="zz")))
            api.call("CreateMeter", pb.CreateMeterRequest(meter=pb.Meter(code="aa")))
    assert seen == ["api_calls", "m_a", "m_b", "m_c", "tokens", "zz"]
    assert pages == 3


# --- plans -----------------------------------------------------------------------------------------------------


def _plan(code: str = "pro", **overrides: Any) -> dict[str, Any]:
    plan: dict[str, Any] = {
        "code": code,
        "name": "Pro",
        "currency": "USD",
        "interval": "monthly",
        "trial_days": 14,
        "charges": [
            {"code": "base", "kind": "flat", "price": {"model": "flat", "amount_per_period": "49", "currency": "USD"}},
            {
                "code": "calls",
                "kind": "usage",
                "meter": "api_calls",
                "price": {"model": "per_unit", "unit_amount": "0.002", "currency": "USD"},
            },
        ],
        "features": [
            {"key": "sso", "kind": "boolean"},
            {"key": "calls", "kind": "quota", "meter": "api_calls", "amount": "10000"},
            {"key": "unlimited_calls", "kind": "quota", "meter": "api_calls"},
            {"key": "ai", "kind": "balance", "unit": "USD"},
        ],
    }
    plan.update(overrides)
    return plan


def _create_plan(api: Api, definition: dict[str, Any]) -> pb.PlanVersion:
    version: pb.PlanVersion = api.call("CreatePlan", pb.CreatePlanRequest(definition_json=json.dumps(definition)))
    return version


def test_create_plan_draft_then_publish(api: Api) -> None:
    draft = _create_plan(api, _plan())
    assert (draft.code, draft.version, draft.status, draft.name, draft.currency) == ("pro", 1, "draft", "Pro", "USD")
    assert (draft.interval, draft.trial_days) == ("monthly", 14)
    assert not draft.HasField("published_at") and draft.HasField("created_at")
    definition = json.loads(draft.definition_json)
    assert [c["code"] for c in definition["charges"]] == ["base", "calls"]
    assert definition["charges"][1]["price"]["unit_amount"] == "0.002"
    assert definition["charges"][0]["billing"] == "in_advance"  # resolved from the flat price
    assert [(f.key, f.kind, f.meter, f.amount, f.unit) for f in draft.features] == [
        ("sso", "boolean", "", "", ""),
        ("calls", "quota", "api_calls", "10000", ""),
        ("unlimited_calls", "quota", "api_calls", "", ""),
        ("ai", "balance", "", "", "USD"),
    ]
    published = api.call("PublishPlan", pb.PublishPlanRequest(code="pro"))
    assert (published.version, published.status) == (1, "published") and published.HasField("published_at")
    assert api.call("GetPlan", pb.GetPlanRequest(code="pro"), key=api.read) == published


def test_create_plan_again_replaces_the_draft_or_opens_the_next(api: Api) -> None:
    _create_plan(api, _plan(name="First"))
    again = _create_plan(api, _plan(name="Second"))
    assert (again.version, again.status, again.name) == (1, "draft", "Second")  # the open draft, replaced
    api.call("PublishPlan", pb.PublishPlanRequest(code="pro"))
    v2 = _create_plan(api, _plan(name="Third", trial_days=0))
    assert (v2.version, v2.status, v2.name, v2.trial_days) == (2, "draft", "Third", 0)
    # Version 0 is the latest *published*: still v1 while v2 is a draft.
    latest = api.call("GetPlan", pb.GetPlanRequest(code="pro"))
    assert (latest.version, latest.name) == (1, "Second")
    assert api.call("GetPlan", pb.GetPlanRequest(code="pro", version=2)).name == "Third"
    versions = api.call("ListPlanVersions", pb.ListPlanVersionsRequest(code="pro"), key=api.read).versions
    assert [(v.version, v.status, v.name) for v in versions] == [(1, "published", "Second"), (2, "draft", "Third")]


def test_create_plan_reports_every_problem(api: Api) -> None:
    bad = _plan(
        currency="USD",
        trial_days=-1,
        charges=[
            {
                "code": "calls",
                "kind": "usage",
                "meter": "api_calls",
                "price": {"model": "per_unit", "unit_amount": "x"},
            },
            {"code": "gb", "kind": "usage", "price": {"model": "per_unit", "unit_amount": "1", "currency": "USD"}},
        ],
    )
    err = api.fails("CreatePlan", pb.CreatePlanRequest(definition_json=json.dumps(bad)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = err.details() or ""
    assert details.startswith("definition_json: invalid plan: ")
    assert "trial_days:" in details and "charges[0].price.unit_amount:" in details
    assert list(api.call("ListPlans", pb.ListPlansRequest()).plans) == []  # nothing was written
    # The semantic checks too, all at once, and an existing plan's draft stays as it was.
    _create_plan(api, _plan())
    bad2 = _plan(
        charges=[
            {"code": "x", "kind": "usage", "price": {"model": "per_unit", "unit_amount": "1", "currency": "EUR"}},
            {"code": "x", "kind": "flat", "price": {"model": "per_unit", "unit_amount": "1", "currency": "USD"}},
        ]
    )
    err = api.fails("CreatePlan", pb.CreatePlanRequest(definition_json=json.dumps(bad2)))
    details = err.details() or ""
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    for fragment in ("charges[0].meter:", "charges[0].price.currency:", "charges[1].code:", "charges[1].price.model:"):
        assert fragment in details, (fragment, details)
    [v1] = list_plan_versions(api.engine, api.tenant.tenant_id, "pro")
    assert [c.code for c in v1.charges] == ["base", "calls"]


def test_create_plan_refuses_bad_json(api: Api) -> None:
    cases = [
        ("", "definition_json is required"),
        ("{not json", "definition_json: not JSON"),
        ("[1, 2]", "definition_json: a plan definition is a JSON object"),
        ('{"name": "no code"}', "code: is required"),
    ]
    for text, fragment in cases:
        err = api.fails("CreatePlan", pb.CreatePlanRequest(definition_json=text))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, text
        assert fragment in (err.details() or ""), (fragment, err.details())
    assert list(api.call("ListPlans", pb.ListPlansRequest()).plans) == []


def test_publish_checks_meters_and_state(api: Api) -> None:
    charges = [
        {"code": "gb", "kind": "usage", "meter": "gb_hours", "price": {"model": "per_unit", "unit_amount": "1"}},
    ]
    _create_plan(api, _plan(charges=charges, features=[]))
    err = api.fails("PublishPlan", pb.PublishPlanRequest(code="pro"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "charges[0].meter: no meter 'gb_hours'" in (err.details() or "")
    assert api.call("GetPlan", pb.GetPlanRequest(code="pro", version=1)).status == "draft"
    api.call("CreateMeter", pb.CreateMeterRequest(meter=pb.Meter(code="gb_hours")))
    assert api.call("PublishPlan", pb.PublishPlanRequest(code="pro")).status == "published"
    err = api.fails("PublishPlan", pb.PublishPlanRequest(code="pro"))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "already published" in (err.details() or "")
    err = api.fails("PublishPlan", pb.PublishPlanRequest(code="ghost"))
    assert err.code() == grpc.StatusCode.NOT_FOUND and "no plan 'ghost'" in (err.details() or "")
    err = api.fails("PublishPlan", pb.PublishPlanRequest())
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "code is required" in (err.details() or "")


def test_get_plan_not_found_and_bad_version(api: Api) -> None:
    err = api.fails("GetPlan", pb.GetPlanRequest(code="ghost"))
    assert err.code() == grpc.StatusCode.NOT_FOUND and "no plan 'ghost'" in (err.details() or "")
    _create_plan(api, _plan())
    err = api.fails("GetPlan", pb.GetPlanRequest(code="pro"))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert "no published version yet (v1 is a draft); publish it with PublishPlan" in (err.details() or "")
    err = api.fails("GetPlan", pb.GetPlanRequest(code="pro", version=7))
    assert err.code() == grpc.StatusCode.NOT_FOUND and "v7" in (err.details() or "")
    err = api.fails("GetPlan", pb.GetPlanRequest(code="pro", version=-1))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "version must be 0" in (err.details() or "")
    err = api.fails("ListPlanVersions", pb.ListPlanVersionsRequest(code="ghost"))
    assert err.code() == grpc.StatusCode.NOT_FOUND and "no plan 'ghost'" in (err.details() or "")


def test_list_plans_pages(api: Api) -> None:
    for code in ("p_c", "p_a", "p_d", "p_b"):
        _create_plan(api, _plan(code))
    api.call("PublishPlan", pb.PublishPlanRequest(code="p_b"))
    _create_plan(api, _plan("p_b", name="Pro 2"))
    seen: list[pb.PlanSummary] = []
    token = ""
    while True:
        page = api.call("ListPlans", pb.ListPlansRequest(page_size=2, page_token=token), key=api.read)
        assert len(page.plans) <= 2
        seen += page.plans
        if not page.next_page_token:
            break
        token = page.next_page_token
    assert [p.code for p in seen] == ["p_a", "p_b", "p_c", "p_d"]
    b = seen[1]
    assert (b.latest_version, b.latest_status, b.published_version, b.name) == (2, "draft", 1, "Pro 2")
    assert (seen[0].latest_version, seen[0].latest_status, seen[0].published_version) == (1, "draft", 0)
    err = api.fails("ListPlans", pb.ListPlansRequest(page_token=encode_token(7)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "page_token" in (err.details() or "")


# --- price simulation ------------------------------------------------------------------------------------------

GRADUATED = {
    "model": "graduated",
    "currency": "USD",
    "tiers": [{"up_to": "1000", "unit_amount": "0"}, {"up_to": None, "unit_amount": "0.0015"}],
}


def test_simulate_price(api: Api) -> None:
    response = api.call(
        "SimulatePrice",
        pb.SimulatePriceRequest(price_json=json.dumps(GRADUATED), quantities=["0", "1000", "1001", "2500.5"]),
        key=api.read,
    )
    assert response.currency == "USD"
    rows = [(r.quantity, r.amount, r.amount_exact) for r in response.results]
    assert [r[0] for r in rows] == ["0", "1000", "1001", "2500.5"]
    # 1,000 free, then 0.0015 each: exact amounts keep every digit, amounts round to cents (half even).
    expected_exact = [Decimal(0), Decimal(0), Decimal("0.0015"), Decimal("1500.5") * Decimal("0.0015")]
    assert [Decimal(r[2]) for r in rows] == expected_exact
    assert [r[1] for r in rows] == ["0.00", "0.00", "0.00", "2.25"]  # 2.25075 → 2.25


def test_simulate_price_rounding_rule_of_the_price(api: Api) -> None:
    flat = {"model": "flat", "amount_per_period": "10.005", "currency": "EUR", "rounding": "up"}
    response = api.call("SimulatePrice", pb.SimulatePriceRequest(price_json=json.dumps(flat), quantities=["1"]))
    assert response.currency == "EUR"
    assert (response.results[0].amount, response.results[0].amount_exact) == ("10.01", "10.005")


SIMULATE_REFUSALS: list[tuple[str, list[str], str]] = [
    ("", ["1"], "price_json is required"),
    ("{nope", ["1"], "price_json: "),
    ('{"model": "per_unit", "unit_amount": "-1"}', ["1"], "price_json: unit_amount"),
    ('{"model": "banana"}', ["1"], "price_json: model: unknown price model"),
    ('{"model": "per_unit", "unit_amount": 0.1}', ["1"], "price_json: unit_amount"),
    (json.dumps(GRADUATED), [], "quantities: give at least one"),
    (json.dumps(GRADUATED), ["1", "abc"], "quantities[1]: 'abc' is not a decimal in plain notation"),
    (json.dumps(GRADUATED), ["1", "1e3"], "quantities[1]: '1e3' is not a decimal in plain notation"),
    (json.dumps(GRADUATED), ["5", "-2"], "quantities[1]: "),
    (json.dumps(GRADUATED), ["1"] * 10_001, "quantities: at most 10,000 per call"),
]


def test_simulate_price_refuses_bad_input(api: Api) -> None:
    for price, quantities, fragment in SIMULATE_REFUSALS:
        err = api.fails("SimulatePrice", pb.SimulatePriceRequest(price_json=price, quantities=quantities))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (price, quantities[:3])
        assert fragment in (err.details() or ""), (fragment, err.details())


def test_simulate_price_at_the_limit(api: Api) -> None:
    quantities = [str(i) for i in range(10_000)]
    response = api.call(
        "SimulatePrice", pb.SimulatePriceRequest(price_json=json.dumps(GRADUATED), quantities=quantities)
    )
    assert len(response.results) == 10_000
    assert Decimal(response.results[-1].amount_exact) == (Decimal(9_999) - 1000) * Decimal("0.0015")
