"""Plans: validation by charge index and field, draft → published, immutability, versions N+1."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine

from invoicing.catalog import (
    InvalidPlan,
    VersionStatus,
    create_plan,
    edit_plan,
    get_plan_version,
    list_plan_versions,
    list_plans,
    new_draft,
    parse_plan,
    publish_plan,
)
from metering.errors import AlreadyExists, FailedPrecondition, NotFound
from metering.meter import MeterDefinition, create_meter
from tests.conftest import TenantKey
from tests.invoicing.conftest import T0, flat, plan_json


def problems(raw: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidPlan) as info:
        parse_plan(raw)
    return {p.field: p.code for p in info.value.problems}


def test_valid_plan_resolves_billing_timing() -> None:
    raw = plan_json("pro")
    raw["charges"].append({"code": "support", "kind": "flat", "price": flat("5", "in_arrears")})
    plan, charges = parse_plan(raw)
    assert plan.code == "pro"
    assert [(c.code, c.billing) for c in charges] == [
        ("base", "in_advance"),
        ("calls", "in_arrears"),
        ("support", "in_arrears"),
    ]


def test_price_problems_are_reported_by_charge_index_and_field() -> None:
    raw = plan_json("pro")
    raw["charges"][1]["price"] = {
        "model": "graduated",
        "tiers": [{"up_to": "100", "unit_amount": "0.1"}, {"up_to": "50", "unit_amount": "-1"}],
    }
    raw["charges"].append({"code": "x", "kind": "usage", "meter": "m", "price": {"model": "nope"}})
    found = problems(raw)
    assert found["charges[1].price.tiers[1].unit_amount"] == "negative_amount"
    assert found["charges[2].price.model"] == "unknown_model"


def test_cross_field_rules_per_charge() -> None:
    raw = plan_json("pro", charges=[
        {"code": "a", "kind": "flat", "price": {"model": "per_unit", "unit_amount": "1"}},
        {"code": "b", "kind": "usage", "price": {"model": "per_unit", "unit_amount": "1"}},
        {"code": "c", "kind": "usage", "meter": "api_calls", "billing": "in_advance",
         "price": {"model": "per_unit", "unit_amount": "1"}},
        {"code": "c", "kind": "usage", "meter": "api_calls", "price": flat()},
        {"code": "e", "kind": "usage", "meter": "api_calls", "price": {"model": "per_unit", "unit_amount": "1",
                                                                        "currency": "EUR"}},
        {"code": "f", "kind": "usage", "meter": "api_calls", "group_by": "region",
         "price": {"model": "per_unit", "unit_amount": "1"}},
        {"code": "g", "kind": "flat", "billing": "in_arrears", "price": flat(billing="in_advance")},
    ])  # fmt: skip
    assert problems(raw) == {
        "charges[0].price.model": "flat_needs_flat_price",
        "charges[1].meter": "missing_meter",
        "charges[2].billing": "usage_in_advance",
        "charges[3].code": "duplicate_charge",
        "charges[3].kind": "usage_needs_usage_price",
        "charges[4].price.currency": "currency_mismatch",
        "charges[5].group_by": "group_by_needs_dimensional",
        "charges[6].billing": "billing_mismatch",
    }


def test_top_level_problems_and_invoice_limits() -> None:
    raw = plan_json("Bad Code", interval="daily", trial_days=-1)
    raw["invoice_limits"] = {"minimum_commitment": "10", "cap_amount": "5"}
    found = problems(raw)
    assert {"code", "interval", "trial_days"} <= set(found)
    ok = plan_json("pro")
    ok["invoice_limits"] = {"minimum_commitment": "10", "cap_amount": "5"}
    assert problems(ok) == {"invoice_limits.cap_amount": "invalid_min_max"}


def test_dimensional_group_by_is_accepted_and_checked_against_the_meter(engine: Engine, tenant: TenantKey) -> None:
    create_meter(engine, tenant.tenant_id, MeterDefinition(code="gpu", group_by=["region"]))
    price = {"model": "dimensional", "dimension": "region",
             "prices": {"eu": {"model": "per_unit", "unit_amount": "2"}}}  # fmt: skip
    create_plan(engine, tenant.tenant_id, plan_json("gpu", charges=[
        {"code": "gpu", "kind": "usage", "meter": "gpu", "group_by": "region", "price": price},
    ]), T0)  # fmt: skip
    assert publish_plan(engine, tenant.tenant_id, "gpu", T0).status is VersionStatus.PUBLISHED
    create_plan(engine, tenant.tenant_id, plan_json("calls", charges=[
        {"code": "c", "kind": "usage", "meter": "api_calls", "group_by": "region", "price": price},
        {"code": "d", "kind": "usage", "meter": "missing", "price": {"model": "per_unit", "unit_amount": "1"}},
    ]), T0)  # fmt: skip
    with pytest.raises(InvalidPlan) as info:
        publish_plan(engine, tenant.tenant_id, "calls", T0)
    assert {p.field: p.code for p in info.value.problems} == {
        "charges[0].group_by": "not_a_meter_dimension",
        "charges[1].meter": "unknown_meter",
    }
    assert get_plan_version(engine, tenant.tenant_id, "calls").status is VersionStatus.DRAFT


def test_versions_draft_publish_and_immutability(engine: Engine, tenant: TenantKey) -> None:
    t = tenant.tenant_id
    v1 = create_plan(engine, t, plan_json("pro"), T0)
    assert (v1.version, v1.status) == (1, VersionStatus.DRAFT)
    with pytest.raises(AlreadyExists, match="already exists"):
        create_plan(engine, t, plan_json("pro"), T0)
    # Editing a draft rewrites it in place.
    edited = edit_plan(engine, t, {**plan_json("pro"), "trial_days": 14}, T0)
    assert (edited.id, edited.version, edited.trial_days) == (v1.id, 1, 14)
    with pytest.raises(NotFound, match="no published plan 'pro'"):
        get_plan_version(engine, t, "pro", published=True)
    p1 = publish_plan(engine, t, "pro", T0)
    assert p1.status is VersionStatus.PUBLISHED and p1.published_at == T0
    with pytest.raises(FailedPrecondition, match="already published"):
        publish_plan(engine, t, "pro", T0)
    # Editing a published plan creates v2; v1 stays exactly as published.
    v2 = edit_plan(engine, t, {**plan_json("pro"), "name": "Pro 2"}, T0)
    assert (v2.version, v2.status, v2.name) == (2, VersionStatus.DRAFT, "Pro 2")
    assert get_plan_version(engine, t, "pro", 1) == p1
    assert get_plan_version(engine, t, "pro", published=True) == p1
    with pytest.raises(FailedPrecondition, match="already has draft v2"):
        new_draft(engine, t, "pro", T0)
    publish_plan(engine, t, "pro", T0)
    v3 = new_draft(engine, t, "pro", T0)
    assert v3.version == 3 and v3.charges == v2.charges and v3.name == "Pro 2"
    assert [v.version for v in list_plan_versions(engine, t, "pro")] == [1, 2, 3]
    [summary] = list_plans(engine, t)
    assert (summary.code, summary.latest_version, summary.latest_status, summary.published_version) == (
        "pro", 3, VersionStatus.DRAFT, 2,
    )  # fmt: skip


def test_stored_charges_round_trip(engine: Engine, tenant: TenantKey) -> None:
    v = create_plan(engine, tenant.tenant_id, plan_json("pro"), T0)
    assert v.charges[0].price.model == "flat"
    assert v.charges[1].meter == "api_calls"
    assert v.definition().model_dump(mode="json")["charges"][1]["price"]["unit_amount"] == "0.01"
    assert v.has_timing("in_advance") and v.has_timing("in_arrears")
