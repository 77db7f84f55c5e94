"""Billing catalog fixtures: a tenant's customer and published plans, built through the public API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine

from invoicing.catalog import CustomerDefinition, create_customer, create_plan, publish_plan
from tests.conftest import TenantKey

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def flat(amount: str = "30", billing: str = "in_advance", currency: str = "USD") -> dict[str, Any]:
    return {"model": "flat", "amount_per_period": amount, "billing": billing, "currency": currency}


def plan_json(code: str, *, interval: str = "monthly", trial_days: int = 0, charges: list[Any] | None = None,
              currency: str = "USD") -> dict[str, Any]:  # fmt: skip
    if charges is None:
        charges = [
            {"code": "base", "kind": "flat", "price": flat(currency=currency)},
            {"code": "calls", "kind": "usage", "meter": "api_calls",
             "price": {"model": "per_unit", "unit_amount": "0.01", "currency": currency}},
        ]  # fmt: skip
    return {"code": code, "name": code.title(), "currency": currency, "interval": interval,
            "trial_days": trial_days, "charges": charges}  # fmt: skip


def published(engine: Engine, tenant_id: int, code: str, **kwargs: Any) -> int:
    create_plan(engine, tenant_id, plan_json(code, **kwargs), T0)
    return publish_plan(engine, tenant_id, code, T0).id


@pytest.fixture
def customer(engine: Engine, tenant: TenantKey) -> str:
    create_customer(engine, tenant.tenant_id, CustomerDefinition(external_id="cus_1", name="Ada", timezone="UTC"), T0)
    return "cus_1"


# --- invoice fixtures (issue 7, invoices) ---------------------------------------------------------------------
def write_events(engine: Engine, tenant_id: int, rows: list[tuple[str, str, str, datetime, int, str | None]]) -> None:
    """Write (event_id, customer, meter, ts, units, properties JSON) rows as one batch, in the given order."""
    from metering.event import PreparedBatch
    from metering.meter import get_meter
    from metering.store import open_store

    specs = {code: get_meter(engine, tenant_id, code).spec for code in {r[2] for r in rows}}
    store = open_store(engine)
    n = len(rows)
    store.write([PreparedBatch(
        tenant_id, "b", n, False, list(range(n)), [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
        [int(r[3].timestamp()) * 1_000_000 for r in rows], [r[4] for r in rows],
        [specs[r[2]].value_scale for r in rows], [r[5] for r in rows], specs=specs,
    )])  # fmt: skip
    store.close()


def publish(engine: Engine, tenant_id: int, code: str, charges: list[Any], **kwargs: Any) -> int:
    create_plan(engine, tenant_id, {**plan_json(code, charges=charges), **kwargs}, T0)
    return publish_plan(engine, tenant_id, code, T0).id
