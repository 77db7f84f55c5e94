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


# --- documents (issue 14: one document per customer, currency and billing date) -----------------------------
#: Lines that do not bill a due item of their own: tax, discounts and what settles the rated lines.
NOT_RATED = ("tax", "credit", "points", "discount")


def item_key(
    subscription_id: int, plan_version_id: int, timing: str, period_start: datetime, span_start: datetime | None = None
) -> str:
    """A due item's key, as `DueItem.key` writes it and lines name it (`lineage["item"]`): an item billed
    in advance also names the start of the span it bills (the period start unless it was cut)."""
    base = f"{subscription_id}:{plan_version_id}:{timing}:{period_start.isoformat()}"
    return base if timing == "in_arrears" else f"{base}:{(span_start or period_start).isoformat()}"


def rated_lines(inv: Any) -> list[Any]:
    """A document's lines that bill a due item (charges, true-ups, SLA credits, proration adjustments)."""
    return [ln for ln in inv.lines if ln.kind not in NOT_RATED]


def line_items(inv: Any) -> list[str]:
    """The due item each rated line of a document bills, in line order."""
    return [str(ln.lineage["item"]) for ln in rated_lines(inv)]


def bound_items(engine: Engine, tenant_id: int) -> dict[str, int]:
    """Item key → the document that billed it, as `invoice_items` records it (every item at most once)."""
    from sqlalchemy import select

    from invoicing.tables import invoice_items

    it = invoice_items.c
    with engine.connect() as conn:
        rows = conn.execute(select(it.item_key, it.invoice_id).where(it.tenant_id == tenant_id)).all()
    out = {str(r.item_key): int(r.invoice_id) for r in rows}
    assert len(out) == len(rows), "an item is bound to two documents"
    return out


def group_of(customer_id: int, currency: str, due_at: datetime, subscription_id: int | None = None) -> str:
    """The documented grouping key of a document (`invoicing.documents._assembly.group_key`), spelled out
    here so that a change to it shows up as a failing test."""
    base = f"doc:{customer_id}:{currency}:{due_at.isoformat()}"
    return base if subscription_id is None else f"{base}:sub:{subscription_id}"


def check_documents(engine: Engine, tenant_id: int) -> dict[int, list[str]]:
    """Every invoice document is whole and grouped as documented: its rated lines bill exactly the items
    `invoice_items` binds to it (each item on one document only), its key is the group key of its customer,
    currency and billing date (`#n` for a later document of the same group), no two documents share a key,
    and its money adds up (total = Σ lines, credits = the credit and points lines). Returns document id →
    the item keys it bills, in line order without repeats."""
    from invoicing.documents import list_invoices

    bound = bound_items(engine, tenant_id)
    by_doc: dict[int, set[str]] = {}
    for key, doc in bound.items():  # a void re-issued document's items carry `|reissued:<id>`
        by_doc.setdefault(doc, set()).add(key.split("|reissued:")[0])
    out: dict[int, list[str]] = {}
    keys: set[str] = set()
    for inv in list_invoices(engine, tenant_id, limit=10_000):
        assert inv.key not in keys, f"two documents keyed {inv.key}"
        keys.add(inv.key)
        assert inv.total == sum(ln.amount for ln in inv.lines), inv.key
        assert inv.credits_applied == -sum(ln.amount for ln in inv.lines if ln.kind in ("credit", "points")), inv.key
        if inv.kind != "invoice":
            continue
        group = inv.key.split("#")[0]
        per_customer = group_of(inv.customer_id, inv.currency, inv.due_at)
        assert group in (per_customer, f"{per_customer}:sub:{inv.subscription_id}"), inv.key
        items = list(dict.fromkeys(line_items(inv)))
        assert set(items) == by_doc.pop(inv.id or 0, set()), f"{inv.key}: its lines and its bound items differ"
        out[inv.id or 0] = items
    assert not by_doc, f"items bound to documents that are not invoices: {by_doc}"
    return out
