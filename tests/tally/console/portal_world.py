"""A tenant billed through last month and into this one, for the portal's tests (HTTP and browser): customers
ada (FR, 20 % tax) and bob on the `team` plan since the first of last month, both months' documents issued,
a `credits` points unit at 10 per USD, and $50.00 in ada's cash wallet. Dates follow the real clock, since the
portal shows "this period" as of now."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from invoicing.catalog import CustomerDefinition, create_customer
from invoicing.documents import finalize_invoice, list_invoices, run_cycle, set_tax_rate
from invoicing.ledger import Ledger
from invoicing.subscriptions import create_subscription
from tally.console.portal._links import create_link
from tests.conftest import ServerThread, TenantKey
from tests.invoicing.conftest import flat, publish, write_events

USAGE = {"code": "calls", "kind": "usage", "meter": "api_calls", "price": {"model": "per_unit", "unit_amount": "0.01"}}


@dataclass
class World:
    server: ServerThread
    engine: Engine
    tenant: TenantKey
    this_month: datetime
    ada_invoices: list[int]  # issued, oldest first
    bob_invoices: list[int]

    @property
    def url(self) -> str:
        return self.server.http_url

    def link(self, customer: str = "ada", ttl_s: int = 3600, return_url: str = "") -> str:
        """A fresh portal link's absolute URL."""
        made = create_link(self.engine, self.tenant.tenant_id, customer, datetime.now(UTC), ttl_s=ttl_s,
                           return_url=return_url)  # fmt: skip
        return self.url + made.path


def build(engine: Engine, tenant: TenantKey, server: ServerThread) -> World:
    tid = tenant.tenant_id
    now = datetime.now(UTC)
    this_month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    last_month = (this_month - timedelta(days=1)).replace(day=1)
    set_tax_rate(engine, tid, "FR", "20", False, last_month)
    create_customer(engine, tid, CustomerDefinition(external_id="ada", name="Ada Lovelace", timezone="UTC",
                                                    tax_region="FR"), last_month)  # fmt: skip
    create_customer(engine, tid, CustomerDefinition(external_id="bob", name="Bob", timezone="UTC"), last_month)
    publish(engine, tid, "team", [{"code": "base", "kind": "flat", "price": flat("30")}, USAGE], name="Team")
    publish(engine, tid, "pro", [{"code": "base", "kind": "flat", "price": flat("100")}, USAGE], name="Pro")
    for who in ("ada", "bob"):
        create_subscription(engine, tid, who, "team", last_month)
    rows: list[Any] = [(f"l{k}", "ada", "api_calls", last_month + timedelta(hours=k), 1, None) for k in range(400)]
    rows += [(f"b{k}", "bob", "api_calls", last_month + timedelta(hours=k), 1, None) for k in range(50)]
    rows += [(f"t{k}", "ada", "api_calls", this_month + timedelta(minutes=3 * k), 1, None) for k in range(150)
             if this_month + timedelta(minutes=3 * k) < now]  # fmt: skip
    write_events(engine, tid, rows)
    run_cycle(engine, tid, this_month)
    issued: dict[str, list[int]] = {"ada": [], "bob": []}
    for inv in list_invoices(engine, tid):
        if inv.status == "draft":
            done = finalize_invoice(engine, tid, inv.id or 0, this_month)
            issued[done.customer_external_id].append(done.id or 0)
    ledger = Ledger(engine, tid)
    ledger.define_points_unit("credits", 0)
    ledger.set_rate("USD", "credits", "10", last_month)
    ledger.top_up("ada-top-up-1", "ada", ledger.amount("50", "USD"), "USD", "card top-up")
    return World(server, engine, tenant, this_month, issued["ada"], issued["bob"])


__all__ = ["World", "build"]
