"""The batched invoice run (shared caches across items and batches, precomputed JSON, bulk writes)
writes exactly what a straightforward per-item rating produces: for random customers in several
zones, mid-period starts and upgrades, dimensional / tiered / reference-priced charges, every due item
is billed once, on the document of its customer and billing date, and that document's lines naming
the item (`lineage["item"]`) equal the lines of `Rater(...).draft([item])` with a fresh rater (no cache
shared with any other item), in order; a document's rated lines are exactly its items' lines, and every
stored detail / lineage is the canonical JSON of that line's dicts."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select

from invoicing.catalog import CustomerDefinition, create_customer, stored_utc
from invoicing.documents import Rater, run_cycle
from invoicing.subscriptions import change_plan, create_subscription, due_periods
from invoicing.tables import invoice_lines, invoices
from metering.meter import Aggregation, MeterDefinition, create_meter
from tests.conftest import TenantKey
from tests.invoicing.conftest import NOT_RATED, T0, bound_items, check_documents, flat, group_of, publish, write_events

AS_OF = datetime(2026, 3, 1, tzinfo=UTC)
ZONES = ("UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata")
GPU = {"model": "dimensional", "dimension": "region",
       "prices": {"eu": {"model": "per_unit", "unit_amount": "0.0004"}},
       "default": {"model": "graduated", "tiers": [{"up_to": "1000", "unit_amount": "0.001"},
                                                   {"up_to": None, "unit_amount": "0.0005"}]}}  # fmt: skip


def _charges(fee: str, unit: str) -> list[Any]:
    return [
        {"code": "base", "kind": "flat", "price": flat(fee)},
        {"code": "late", "kind": "flat", "price": {**flat("7", "in_arrears"), "proration": "second"}},
        {"code": "calls", "kind": "usage", "meter": "calls", "price": {"model": "per_unit", "unit_amount": unit}},
        {"code": "gpu", "kind": "usage", "meter": "gpu", "group_by": "region", "price": GPU},
        {"code": "peak", "kind": "usage", "meter": "peak", "price": {"model": "volume", "tiers": [
            {"up_to": "10", "unit_amount": "1"}, {"up_to": None, "unit_amount": "0.5"}]}},
        {"code": "store", "kind": "usage", "meter": "calls", "price": {
            "model": "minimum_commitment", "minimum_amount": "5", "cap_amount": "40",
            "price": {"model": "package", "package_size": "100", "package_amount": "1"}}},
        # rated per event, from the stored events: batches must load their own customers' events
        {"code": "fees", "kind": "usage", "meter": "calls", "price": {
            "model": "percentage", "rate": "1.5", "fixed_amount": "0.02", "free_units_per_events": 1}},
    ]  # fmt: skip


def _scenario(engine: Engine, tid: int, seed: int) -> None:
    rng = random.Random(seed)
    create_meter(engine, tid, MeterDefinition(code="calls", aggregation=Aggregation.SUM))
    create_meter(engine, tid, MeterDefinition(code="gpu", aggregation=Aggregation.SUM, group_by=["region"]))
    create_meter(engine, tid, MeterDefinition(code="peak", aggregation=Aggregation.MAX))
    publish(engine, tid, "small", _charges("30", "0.002"))
    publish(engine, tid, "big", _charges("62", "0.001"))
    events: list[tuple[str, str, str, datetime, int, str | None]] = []
    for k in range(14):
        name = f"c{k}"
        create_customer(engine, tid, CustomerDefinition(external_id=name, timezone=rng.choice(ZONES)), T0)
        start = T0 + timedelta(days=rng.choice([0, 0, 3, 9]), hours=rng.randrange(24))
        sub = create_subscription(engine, tid, name, "small", start)
        if rng.random() < 0.4:
            change_plan(engine, tid, sub.id, "big", start + timedelta(days=rng.randrange(1, 40), hours=7))
        for j in range(rng.randrange(0, 8)):
            at = T0 + timedelta(days=rng.randrange(0, 58), minutes=rng.randrange(1440))
            meter = rng.choice(["calls", "gpu", "peak"])
            props = json.dumps({"region": rng.choice(["eu", "us", "ap"])}) if meter == "gpu" else None
            events.append((f"e{k}-{j}", name, meter, at, rng.randrange(1, 50_000), props))
    if events:
        write_events(engine, tid, events)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_batched_run_equals_per_item_rating(engine: Engine, tenant: TenantKey, seed: int) -> None:
    tid = tenant.tenant_id
    _scenario(engine, tid, seed)
    summary = run_cycle(engine, tid, AS_OF, batch_size=random.Random(seed).choice([3, 7, 500]))
    assert summary.failed == 0 and summary.completed
    with engine.connect() as conn:
        stored = {int(r.id): r for r in conn.execute(select(invoices).where(invoices.c.tenant_id == tid))}
        lines: dict[int, list[Any]] = {}
        for r in conn.execute(select(invoice_lines).order_by(invoice_lines.c.invoice_id, invoice_lines.c.position)):
            lines.setdefault(int(r.invoice_id), []).append(r)
    due = due_periods(engine, tid, AS_OF)
    bound = bound_items(engine, tid)
    assert set(bound) == {i.key for i in due}  # every item billed, once (nothing was billed before this run)
    per_doc = check_documents(engine, tid)
    assert len(per_doc) == summary.due == summary.created == len({(i.customer_id, i.due_at) for i in due})
    assert any(len(keys) > 1 for keys in per_doc.values())  # documents that group several items
    assert due
    rated: dict[int, int] = {}
    for item in due:
        doc = stored[bound[item.key]]  # the document of the item's customer, currency and billing date
        assert (doc.kind, doc.idempotency_key, stored_utc(doc.due_at)) == (
            "invoice", group_of(item.customer_id, "USD", item.due_at), item.due_at
        )  # fmt: skip
        (draft,) = Rater(engine, tid).draft([item])  # a fresh rater: nothing cached from other items
        mine = [ln for ln in lines[int(doc.id)] if ln.kind not in NOT_RATED]
        got = [ln for ln in mine if _lineage(ln.lineage).get("item") == item.key]
        rated[int(doc.id)] = rated.get(int(doc.id), 0) + len(got)
        want = [
            (ln.kind, ln.charge_code, ln.meter, ln.group_key, ln.quantity_units, ln.quantity_scale, ln.unit_price,
             ln.amount, ln.amount_exact, json.dumps(ln.detail, sort_keys=True, separators=(",", ":")),
             json.dumps(ln.lineage, sort_keys=True, separators=(",", ":")))
            for ln in draft.lines
        ]  # fmt: skip
        assert [
            (r.kind, r.charge_code, r.meter, r.group_key, r.quantity_units, r.quantity_scale, r.unit_price,
             r.amount, r.amount_exact, r.detail, r.lineage)
            for r in got
        ] == want, item.key  # fmt: skip
        for ln in draft.lines:  # precomputed JSON, when present, is the canonical JSON of the dicts
            if ln.lineage_json is not None:
                assert ln.lineage_json == json.dumps(ln.lineage, sort_keys=True, separators=(",", ":"))
            if ln.detail_json is not None:
                assert ln.detail_json == json.dumps(ln.detail, sort_keys=True, separators=(",", ":"))
    # A document's rated lines are its items' lines and nothing else.
    assert rated == {d: len([ln for ln in lines[d] if ln.kind not in NOT_RATED]) for d in rated}


def _lineage(value: Any) -> dict[str, Any]:
    """Stored lineage: JSON text (SQLite) or a decoded value (PostgreSQL)."""
    return json.loads(value) if isinstance(value, str) else dict(value)


def test_bulk_history_query_equals_per_id_query(engine: Engine, tenant: TenantKey, monkeypatch: Any) -> None:
    """`due_periods` reads histories by one joined query for large tenants: same items as by id."""
    import invoicing.subscriptions._due as billing

    tid = tenant.tenant_id
    _scenario(engine, tid, 4)
    small = due_periods(engine, tid, AS_OF)
    monkeypatch.setattr(billing, "IN_LIST_MAX", 0)
    assert due_periods(engine, tid, AS_OF) == small
