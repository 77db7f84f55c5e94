"""Which due items share a document: one per customer, currency and billing date by default, one per
subscription when the tenant's billing profile or the customer asks for it. The run and the preview
both group through here, so an upcoming invoice looks like the one the run will write."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, select

from invoicing.documents._assembly import group_key
from invoicing.subscriptions import DueItem


@dataclass(frozen=True, slots=True)
class Preferences:
    """How a tenant wants its documents: grouping per customer (default) or per subscription, customer
    overrides, and whether zero-total documents are issued."""

    per_subscription: bool = False
    overrides: Mapping[int, bool] = field(default_factory=dict)  # customer id → per subscription
    issue_zero: bool = False

    def split(self, customer_id: int) -> bool:
        return self.overrides.get(customer_id, self.per_subscription)


def preferences(engine: Engine, tenant_id: int) -> Preferences:
    with engine.connect() as conn:
        return preferences_in(conn, tenant_id)


def preferences_in(conn: Connection, tenant_id: int) -> Preferences:
    from invoicing.catalog import get_billing_profile
    from invoicing.tables import customers

    c = customers.c
    profile = get_billing_profile(conn, tenant_id)
    overrides = {
        int(r.id): r.invoice_grouping == "subscription"
        for r in conn.execute(
            select(c.id, c.invoice_grouping).where(c.tenant_id == tenant_id, c.invoice_grouping.is_not(None))
        )
    }
    return Preferences(profile.invoice_grouping == "subscription", overrides, bool(profile.issue_zero_total))


def group_items(
    due: Sequence[DueItem], currency_of: Callable[[int], str], prefs: Preferences
) -> dict[str, list[DueItem]]:
    """Due items by the document they go on (see `group_key`), in due order, items in subscription order."""
    groups: dict[str, list[DueItem]] = {}
    for i in due:
        sub = i.subscription_id if prefs.split(i.customer_id) else None
        groups.setdefault(group_key(i.customer_id, currency_of(i.plan_version_id), i.due_at, sub), []).append(i)
    for its in groups.values():
        its.sort(key=lambda i: (i.subscription_id, i.timing != "in_arrears", i.period.start))
    return groups


__all__ = ["Preferences", "group_items", "preferences", "preferences_in"]
