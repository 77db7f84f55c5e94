"""The money a plan change or a cancellation made now would move, before it is confirmed: nothing is written.

`invoicing.subscriptions.change_items` says which due items the change alters (applied virtually); they are
rated here with the invoice run's own rater, as the run will rate them, with and without the change, and the
difference per line is the preview: the unused part of an in-advance fee credited back, the new plan's fee for
the rest of the period, and (a cancellation) the usage so far billed at once. Tax follows the customer's rule,
computed once on the credits and once on the charges, as the credit note and the next invoice will.

Usage after the change is billed at the period's end as always (the old plan's prices up to the change, the
new plan's after it); it is not in the preview because it has not happened yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Engine

from invoicing.catalog import get_plan_version
from invoicing.documents._rater import DraftInvoice, Rater, tax_amount
from invoicing.subscriptions import DueItem, change_items
from metering.errors import NotFound

#: Why a preview line moves money: the unused part of an old fee, the new plan's fee, usage billed at once.
REASONS = ("unused", "new", "usage", "other")


@dataclass(frozen=True, slots=True)
class PreviewLine:
    reason: str  # one of REASONS
    plan: str  # the plan version's label, e.g. "team v2"
    plan_name: str
    charge: str
    period_start: datetime
    period_end: datetime
    amount: int  # minor units; negative: credited


@dataclass(frozen=True, slots=True)
class ChangePreview:
    subscription_id: int
    customer: str
    effective_at: datetime
    from_plan: str
    to_plan: str | None  # None: a cancellation
    currency: str
    lines: tuple[PreviewLine, ...]
    tax_region: str
    tax_rate: Decimal
    tax_inclusive: bool
    credits: int  # ≤ 0: the credited lines' sum
    charges: int  # ≥ 0: the charged lines' sum
    tax: int  # on both, each rounded once (inclusive: the part of them that is tax; not added)
    total: int  # what the change moves in all: negative is money back to the customer

    @property
    def scale(self) -> int:
        from rating.unit import currency as currency_unit

        return currency_unit(self.currency).scale

    def money(self, minor: int) -> Decimal:
        return Decimal(minor).scaleb(-self.scale)


def _lines(draft: DraftInvoice | None) -> dict[tuple[str, str, str], int]:
    out: dict[tuple[str, str, str], int] = {}
    for ln in draft.lines if draft is not None else []:
        if ln.kind in ("tax", "credit", "points", "discount"):
            continue
        key = (ln.kind, ln.charge_code, ln.group_key)
        out[key] = out.get(key, 0) + ln.amount
    return out


def preview_change(
    engine: Engine,
    tenant_id: int,
    subscription_id: int,
    at: datetime,
    *,
    plan: str | None = None,
    version: int | None = None,
    customer: str | None = None,
) -> ChangePreview:
    """What changing subscription `subscription_id` to `plan` (None: cancelling it) at `at` would bill and
    credit. `customer` (external id): the subscription must be theirs, else NotFound as if it did not exist."""
    new = None if plan is None else get_plan_version(engine, tenant_id, plan, version, published=True)
    found = change_items(engine, tenant_id, subscription_id, at, new)
    sub = found.subscription
    if customer is not None and sub.customer_external_id != customer:
        raise NotFound(f"no subscription {subscription_id}; list them with `tally subscription list TENANT`")
    keys = sorted(set(found.before) | set(found.after))
    rater = Rater(engine, tenant_id, plans=found.plans.values())
    items: list[DueItem] = [found.before[k] for k in keys if k in found.before]
    items += [found.after[k] for k in keys if k in found.after]
    drafts = rater.draft(items, clip=found.effective_at) if items else []
    rated_before = dict(zip([k for k in keys if k in found.before], drafts, strict=False))
    rated_after = dict(zip([k for k in keys if k in found.after], drafts[len(rated_before) :], strict=True))
    current = found.plans[sub.plan_version_id]
    lines: list[PreviewLine] = []
    for k in keys:
        item = found.after.get(k) or found.before[k]
        was, now = _lines(rated_before.get(k)), _lines(rated_after.get(k))
        source = rated_after.get(k) or rated_before[k]
        version_of = found.plans[item.plan_version_id]
        for ident in sorted(set(was) | set(now)):
            delta = now.get(ident, 0) - was.get(ident, 0)
            if not delta:
                continue
            if item.timing == "in_arrears":
                reason = "usage"
            elif delta < 0:
                reason = "unused"
            else:
                reason = "new" if item.plan_version_id != sub.plan_version_id or new is None else "other"
            line = next(ln for ln in source.lines if (ln.kind, ln.charge_code, ln.group_key) == ident)
            start, end = line.period_start, line.period_end
            if reason == "unused":  # the time credited: from the change to where the fee had been billed
                billed = rated_before.get(k)
                start = found.effective_at
                end = next((ln.period_end for ln in billed.lines if (ln.kind, ln.charge_code, ln.group_key) == ident),
                           end) if billed is not None else end  # fmt: skip
            lines.append(PreviewLine(reason, version_of.label, version_of.name or version_of.code, ident[1], start,
                                     end, delta))  # fmt: skip
    rule = rater.tax_rate(sub.customer_id)
    credits = sum(ln.amount for ln in lines if ln.amount < 0)
    charges = sum(ln.amount for ln in lines if ln.amount > 0)
    tax = tax_amount(credits, rule) + tax_amount(charges, rule)
    return ChangePreview(
        subscription_id=sub.id, customer=sub.customer_external_id, effective_at=found.effective_at,
        from_plan=current.label, to_plan=None if new is None else new.label, currency=current.currency,
        lines=tuple(lines), tax_region=rule.region, tax_rate=rule.rate, tax_inclusive=rule.inclusive,
        credits=credits, charges=charges, tax=tax, total=credits + charges + (0 if rule.inclusive else tax),
    )  # fmt: skip


__all__ = ["REASONS", "ChangePreview", "PreviewLine", "preview_change"]
