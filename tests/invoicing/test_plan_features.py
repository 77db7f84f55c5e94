"""Plans grant features: validated with the plan, stored with the version, checked at publish."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import Engine

from invoicing.catalog import InvalidPlan, create_plan, get_plan_version, parse_plan, publish_plan
from tests.conftest import make_tenant

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def _plan(features: list[dict[str, object]]) -> dict[str, object]:
    return {"code": "pro", "currency": "USD", "charges": [], "features": features}


def test_features_round_trip_through_publish(engine: Engine) -> None:
    t = make_tenant(engine)
    features = [
        {"key": "sso", "kind": "boolean"},
        {"key": "api", "kind": "quota", "meter": "api_calls", "amount": "10000"},
        {"key": "tokens", "kind": "limit", "meter": "tokens", "amount": "2.5"},
        {"key": "gpu", "kind": "balance", "unit": "USD"},
    ]
    create_plan(engine, t.tenant_id, _plan(features), NOW)
    version = publish_plan(engine, t.tenant_id, "pro", NOW)
    assert [(f.key, f.kind, f.meter, f.amount, f.unit) for f in version.features] == [
        ("sso", "boolean", None, None, None),
        ("api", "quota", "api_calls", Decimal("10000"), None),
        ("tokens", "limit", "tokens", Decimal("2.5"), None),
        ("gpu", "balance", None, None, "USD"),
    ]
    assert get_plan_version(engine, t.tenant_id, "pro").definition().features == list(version.features)


@pytest.mark.parametrize(
    ("feature", "path"),
    [
        ({"key": "api", "kind": "quota"}, "features[0]"),
        ({"key": "sso", "kind": "boolean", "meter": "api_calls"}, "features[0]"),
        ({"key": "gpu", "kind": "balance"}, "features[0]"),
        ({"key": "api", "kind": "quota", "meter": "api_calls", "amount": "-1"}, "features[0].amount"),
        ({"key": "Bad Key"}, "features[0].key"),
    ],
)
def test_bad_features_are_reported_by_path(feature: dict[str, object], path: str) -> None:
    with pytest.raises(InvalidPlan) as info:
        parse_plan(_plan([feature]))
    assert path in info.value.fields


def test_duplicate_feature_keys_are_refused() -> None:
    with pytest.raises(InvalidPlan) as info:
        parse_plan(_plan([{"key": "sso"}, {"key": "sso"}]))
    assert info.value.fields == ["features[1].key"]


def test_publish_checks_feature_meters_exist(engine: Engine) -> None:
    t = make_tenant(engine)
    create_plan(engine, t.tenant_id, _plan([{"key": "x", "kind": "quota", "meter": "nope", "amount": "1"}]), NOW)
    with pytest.raises(InvalidPlan) as info:
        publish_plan(engine, t.tenant_id, "pro", NOW)
    assert info.value.fields == ["features[0].meter"]


def test_a_new_draft_keeps_the_features(engine: Engine) -> None:
    from invoicing.catalog import new_draft

    t = make_tenant(engine)
    create_plan(engine, t.tenant_id, _plan([{"key": "sso"}]), NOW)
    publish_plan(engine, t.tenant_id, "pro", NOW)
    draft = new_draft(engine, t.tenant_id, "pro", NOW)
    assert draft.version == 2 and [f.key for f in draft.features] == ["sso"]
