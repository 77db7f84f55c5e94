"""Invoice assembly is a pure function: properties over random rated lines, tax rules and balances."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from invoicing.documents import Document, Source, assemble, assemble_all, group_key
from invoicing.documents._rater import DraftInvoice, DraftLine

T0 = datetime(2026, 1, 1, tzinfo=UTC)
FEB = datetime(2026, 2, 1, tzinfo=UTC)
DUE_US = int(FEB.timestamp()) * 1_000_000
CHARGES = ("base", "calls", "seats")


def line(kind: str, charge: str, amount: int, item: str, points: int | None = None) -> DraftLine:
    detail: dict[str, Any] = {}
    if points is not None:
        detail = {"points_unit": "pts", "points_charged": points, "points_scale": 0, "conversion_rate": "0.05"}
    return DraftLine(kind, charge, None, "", 1, T0, FEB, 1, 0, None, amount, str(amount), detail, {"item": item})


def part(sub: int, timing: str, lines: list[DraftLine], rate: str = "0", inclusive: bool = False) -> DraftInvoice:
    return DraftInvoice(f"{sub}:1:{timing}:{T0.isoformat()}", sub, 7, "cus_7", 1, "USD", timing, T0, FEB, T0, FEB,
                        FEB, "FR", Decimal(rate), inclusive, lines)  # fmt: skip


amounts = st.integers(min_value=-5_000, max_value=500_000)


@st.composite
def parts(draw: st.DrawFn) -> list[DraftInvoice]:
    rate = draw(st.sampled_from(["0", "20", "8.875", "19"]))
    inclusive = draw(st.booleans())
    out = []
    for k, timing in enumerate(draw(st.lists(st.sampled_from(["in_advance", "in_arrears"]), min_size=1, max_size=3))):
        item = f"{k + 1}:1:{timing}:{T0.isoformat()}"
        kinds = st.sampled_from(["charge", "charge", "minimum_true_up", "sla_credit"])
        lines = [
            line(draw(kinds), draw(st.sampled_from(CHARGES)), draw(amounts), item)
            for _ in range(draw(st.integers(min_value=1, max_value=4)))
        ]
        if draw(st.booleans()):
            pts = draw(st.integers(min_value=1, max_value=2_000))
            lines.append(line("charge", "credits", pts * 5, item, points=pts))  # 0.05 USD a point: 5 cents
        out.append(part(k + 1, timing, lines, rate, inclusive))
    return out


@st.composite
def sources(draw: st.DrawFn) -> dict[str, list[Source]]:
    money = [
        Source(100 + k, "USD", draw(st.integers(min_value=0, max_value=300_000)), f"g{k}",
               draw(st.sampled_from([None, frozenset({"base"}), frozenset({"calls", "seats"})])),
               draw(st.sampled_from([None, 0, DUE_US + 1])), draw(st.sampled_from([None, DUE_US, DUE_US + 10**9])))
        for k in range(draw(st.integers(min_value=0, max_value=3)))
    ]  # fmt: skip
    money += [Source(200, "USD", draw(st.integers(min_value=0, max_value=100_000)))]  # cash wallet
    points = [Source(300, "pts", draw(st.integers(min_value=0, max_value=3_000)))]
    return {"USD": money, "pts": points}


def check(doc: Document, available: dict[str, list[Source]]) -> None:
    settling = ("tax", "credit", "points")
    assert doc.subtotal == sum(ln.amount for ln in doc.lines if ln.kind not in settling)
    assert doc.credits == -sum(ln.amount for ln in doc.lines if ln.kind in ("credit", "points"))
    assert doc.total == sum(ln.amount for ln in doc.lines)  # total = Σ lines (an inclusive tax line is 0)
    due = doc.subtotal + (0 if doc.tax_inclusive else doc.tax)
    assert doc.total == due - doc.credits
    assert doc.credits == 0 or 0 <= doc.credits <= due  # never more than is due, never negative
    by_account = {s.account_id: s for ss in available.values() for s in ss}
    taken: dict[int, int] = {}
    for h in doc.holds:
        src = by_account[h.account_id]
        assert src.pays(h.charge, DUE_US) and h.amount > 0 and h.unit == src.unit
        taken[h.account_id] = taken.get(h.account_id, 0) + h.amount
    for account, amount in taken.items():
        assert amount <= by_account[account].available  # never more than was available
    money_holds = sum(h.amount for h in doc.holds if h.unit == "USD")
    assert money_holds == doc.money_credits and sum(h.amount for h in doc.holds if h.unit == "pts") <= 3_000


@settings(max_examples=300, deadline=None)
@given(parts(), sources())
def test_totals_add_up_and_credits_stay_within_balances_and_what_is_due(
    drafts: list[DraftInvoice], balances: dict[str, list[Source]]
) -> None:
    doc = assemble("doc", drafts, balances)
    check(doc, balances)
    assert assemble("doc", drafts, balances) == doc  # the same inputs, the same document
    assert assemble("doc", list(reversed(drafts)), balances).lines == doc.lines  # in one reading order
    rated = [ln for d in drafts for ln in d.lines]
    assert [ln for ln in doc.lines if ln.kind not in ("tax", "credit", "points")] == sorted(
        rated, key=lambda ln: next(i for i, d in enumerate(doc.parts) if ln in d.lines)
    )  # every rated line kept as rated, with its own lineage


@settings(max_examples=150, deadline=None)
@given(st.lists(parts(), min_size=1, max_size=4), sources())
def test_a_batch_equals_assembling_one_document_after_another(
    groups: list[list[DraftInvoice]], balances: dict[str, list[Source]]
) -> None:
    keyed = [(f"doc{k}", g) for k, g in enumerate(groups)]
    batch = assemble_all(keyed, {7: balances})
    left = balances
    one_by_one = []
    for key, g in keyed:
        doc = assemble(key, g, left)
        check(doc, left)
        taken: dict[int, int] = {}
        for h in doc.holds:
            taken[h.account_id] = taken.get(h.account_id, 0) + h.amount
        left = {u: [Source(s.account_id, s.unit, s.available - taken.get(s.account_id, 0), s.grant_id, s.applies_to,
                           s.effective_us, s.expires_us) for s in ss] for u, ss in left.items()}  # fmt: skip
        one_by_one.append(doc)
    assert batch == one_by_one
    total_held = sum(h.amount for d in batch for h in d.holds if h.unit == "USD")
    assert total_held <= sum(s.available for s in balances["USD"])


def test_a_worked_example_fee_usage_tax_grant_and_points() -> None:
    """$30 fee in advance + $12.34 usage in arrears, 20 % tax, a $10 grant for `base` only and a $50
    cash wallet; 100 points of a points-priced line (5.00), 60 in the wallet."""
    advance = part(1, "in_advance", [line("charge", "base", 3000, "1:1:in_advance")], "20")
    arrears = part(1, "in_arrears", [line("charge", "calls", 1234, "1:1:in_arrears"),
                                     line("charge", "credits", 500, "1:1:in_arrears", points=100)], "20")  # fmt: skip
    balances = {"USD": [Source(1, "USD", 1000, "g", frozenset({"base"})), Source(2, "USD", 5000)],
                "pts": [Source(3, "pts", 60)]}  # fmt: skip
    doc = assemble(group_key(7, "USD", FEB), [advance, arrears], balances)
    assert [(ln.kind, ln.charge_code, ln.amount) for ln in doc.lines] == [
        ("charge", "calls", 1234), ("charge", "credits", 500), ("charge", "base", 3000),  # arrears first
        ("tax", "tax", 947),  # 20 % of 47.34 = 9.468 → 9.47 (half even, once per document)
        ("points", "credits", -300),  # 60 points x 0.05
        ("credit", "calls", -1234), ("credit", "credits", -200), ("credit", "base", -3000), ("credit", "tax", -947),
    ]  # fmt: skip
    assert (doc.subtotal, doc.tax, doc.credits, doc.total) == (4734, 947, 5681, 0)  # the wallet covers it all
    assert [(h.account_id, h.amount) for h in doc.holds] == [(3, 60), (2, 1234), (2, 200), (1, 1000), (2, 2000),
                                                             (2, 947)]  # fmt: skip
    assert doc.timing is None and doc.subscription_id == 1 and (doc.period_start, doc.period_end) == (T0, FEB)


def test_group_key_names_customer_currency_and_billing_date() -> None:
    assert group_key(7, "USD", FEB) == "doc:7:USD:2026-02-01T00:00:00+00:00"
    assert group_key(7, "USD", FEB, 3) == "doc:7:USD:2026-02-01T00:00:00+00:00:sub:3"
    assert group_key(7, "EUR", FEB + timedelta(days=1)) != group_key(7, "USD", FEB + timedelta(days=1))
