"""Finance reports: invoice runs and their progress, revenue by plan, currency and month, receivables
ageing, SLA credits issued, and the ledger movements of one document.

Every figure comes from the stored documents and the ledger, in integer minor units summed by the
database and turned into exact Decimals once, at the currency's scale: the console's charts and tables
and any API built on these show the same numbers the documents and the journal hold.

- Revenue is what the finalize booking credits to the revenue account: every line of an issued document
  (finalized, partially paid, paid or uncollectible; credit notes and adjustments included, with their
  sign) except tax and money credits drawn from wallets (those settle the receivable, they are not
  revenue). Points lines count with their sign, as the booking does. Dated by the issue date; by plan
  through each line's plan version. A void document is not revenue (its booking was reversed).
  The all-time sum equals the revenue account's balance (tests/invoicing/insight/test_finance.py).
- Ageing: each open document's `amount_due` by how many whole days its payment due date has passed
  (`current` = not yet due). The bucket sums equal the customers' receivable balances.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import Engine, and_, func, or_, select

from invoicing.catalog import stored_utc, utc
from invoicing.documents import OPEN, SERIES_PREFIX
from invoicing.ledger import TransferFlags
from invoicing.ledger.tables import ledger_accounts, ledger_pending, ledger_transfers
from invoicing.ledger.unit import from_us, resolve_unit
from invoicing.tables import (
    customers,
    invoice_lines,
    invoice_run_items,
    invoice_runs,
    invoices,
    plan_versions,
    plans,
)
from metering.deadline import checkpoint
from metering.errors import InvalidArgument
from rating.unit import currency as currency_unit

#: Documents whose booking stands: revenue and SLA credits count them.
ISSUED = ("finalized", "partially_paid", "paid", "uncollectible")
#: Lines that are not revenue: tax is owed to the authorities, money credits settle the receivable.
NOT_REVENUE = ("tax", "credit")
#: Ageing buckets: (label, first day overdue, last day overdue or None).
AGEING_BUCKETS = (("current", None, 0), ("1-30", 1, 30), ("31-60", 31, 60), ("61-90", 61, 90), ("90+", 91, None))
RUNS_MAX = 200
WINDOW_MAX = timedelta(days=3 * 366)
LIST_MAX = 1000


def _money(minor: int, currency: str) -> Decimal:
    return Decimal(int(minor)).scaleb(-currency_unit(currency).scale)


def document_label(number: int | None, series: str | None, invoice_id: int) -> str:
    """How a document is named wherever it is shown: its number in its series, or "draft N"
    (`Invoice.label`'s rule, for rows read without loading the whole document)."""
    if number is None:
        return f"draft {invoice_id}"
    return f"{SERIES_PREFIX[series or 'invoice']}-{number:06d}"


# --- invoice runs ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RunInfo:
    id: int
    as_of: datetime
    status: str  # running | completed
    created_at: datetime
    finished_at: datetime | None
    items: int
    done: int
    failed: int
    pending: int
    invoices: int
    totals: dict[str, Decimal]  # currency → sum of the run's documents' totals (void ones left out)

    @property
    def progress_pct(self) -> int:
        """Whole percent of the run's items settled (done or failed)."""
        return 100 if self.items == 0 else (self.done + self.failed) * 100 // self.items


def list_runs(engine: Engine, tenant_id: int, limit: int = 20) -> list[RunInfo]:
    """The tenant's invoice runs, newest first, with their items by status and their documents' totals."""
    if not 1 <= limit <= RUNS_MAX:
        raise InvalidArgument(f"limit {limit}: 1 to {RUNS_MAX} runs")
    r, it, i = invoice_runs.c, invoice_run_items.c, invoices.c
    with engine.connect() as conn:
        runs = conn.execute(
            select(invoice_runs).where(r.tenant_id == tenant_id).order_by(r.id.desc()).limit(limit)
        ).all()
        ids = [int(x.id) for x in runs]
        counts: dict[int, dict[str, int]] = {}
        totals: dict[int, dict[str, Decimal]] = {}
        made: dict[int, int] = {}
        if ids:
            for row in conn.execute(
                select(it.run_id, it.status, func.count()).where(it.run_id.in_(ids)).group_by(it.run_id, it.status)
            ):
                counts.setdefault(int(row[0]), {})[str(row[1])] = int(row[2])
            for row in conn.execute(
                select(i.run_id, i.currency, func.count(), func.sum(i.total))
                .where(i.tenant_id == tenant_id, i.run_id.in_(ids), i.status != "void")
                .group_by(i.run_id, i.currency)
            ):
                run_id = int(row[0])
                made[run_id] = made.get(run_id, 0) + int(row[2])
                totals.setdefault(run_id, {})[str(row[1])] = _money(int(row[3] or 0), str(row[1]))
    out = []
    for x in runs:
        run_id = int(x.id)
        c = counts.get(run_id, {})
        finished = None if x.finished_at is None else stored_utc(x.finished_at)
        out.append(
            RunInfo(
                id=run_id,
                as_of=stored_utc(x.as_of),
                status=str(x.status),
                created_at=stored_utc(x.created_at),
                finished_at=finished,
                items=sum(c.values()),
                done=c.get("done", 0),
                failed=c.get("failed", 0),
                pending=c.get("pending", 0),
                invoices=made.get(run_id, 0),
                totals=dict(sorted(totals.get(run_id, {}).items())),
            )
        )
    return out


# --- revenue ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RevenueReport:
    start: datetime
    end: datetime
    months: list[str]  # "2026-01", ... every month of the window, oldest first
    currencies: list[str]
    by_currency: dict[str, Decimal]
    by_plan: dict[tuple[str, str], Decimal]  # (plan code, currency) → revenue; "" = lines of no plan
    by_month: dict[tuple[str, str], Decimal]  # (month, currency) → revenue
    documents: int
    by_month_plan: dict[tuple[str, str, str], Decimal] = field(default_factory=dict)  # (month, plan, currency)


def _months(start: datetime, end: datetime) -> list[str]:
    out, y, m = [], start.year, start.month
    while (y, m) < (end.year, end.month) or ((y, m) == (end.year, end.month) and end > datetime(y, m, 1, tzinfo=UTC)):
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def revenue_report(engine: Engine, tenant_id: int, start: datetime, end: datetime) -> RevenueReport:
    """Revenue of the documents issued in [start, end) (at most three years), by currency, plan and month."""
    start, end = utc(start), utc(end)
    if start >= end:
        raise InvalidArgument(f"start {start.isoformat()} is not before end {end.isoformat()}")
    if end - start > WINDOW_MAX:
        raise InvalidArgument(f"the window is {(end - start).days} days; at most {WINDOW_MAX.days}")
    i, ln = invoices.c, invoice_lines.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(i.id, i.finalized_at, i.currency, ln.plan_version_id, func.sum(ln.amount))
            .join(invoice_lines, ln.invoice_id == i.id)
            .where(i.tenant_id == tenant_id, i.status.in_(ISSUED), i.finalized_at >= start, i.finalized_at < end,
                   ln.kind.not_in(NOT_REVENUE))
            .group_by(i.id, i.finalized_at, i.currency, ln.plan_version_id)
        ).all()  # fmt: skip
        versions = {int(r.plan_version_id) for r in rows if r.plan_version_id is not None}
        codes: dict[int, str] = {}
        pv, p = plan_versions.c, plans.c
        listed = sorted(versions)
        for k in range(0, len(listed), 900):
            for version in conn.execute(
                select(pv.id, p.code).join(plans, p.id == pv.plan_id).where(pv.id.in_(listed[k : k + 900]))
            ):
                codes[int(version.id)] = str(version.code)
    by_currency: dict[str, int] = {}
    by_plan: dict[tuple[str, str], int] = {}
    by_month: dict[tuple[str, str], int] = {}
    by_month_plan: dict[tuple[str, str, str], int] = {}
    docs: set[int] = set()
    for n, row in enumerate(rows):
        if n % 1000 == 0:
            checkpoint()
        amount, ccy = int(row[4] or 0), str(row.currency)
        month = stored_utc(row.finalized_at).strftime("%Y-%m")
        plan = "" if row.plan_version_id is None else codes.get(int(row.plan_version_id), "")
        docs.add(int(row.id))
        by_currency[ccy] = by_currency.get(ccy, 0) + amount
        by_plan[(plan, ccy)] = by_plan.get((plan, ccy), 0) + amount
        by_month[(month, ccy)] = by_month.get((month, ccy), 0) + amount
        by_month_plan[(month, plan, ccy)] = by_month_plan.get((month, plan, ccy), 0) + amount
    currencies = sorted(by_currency)
    return RevenueReport(
        start, end, _months(start, end), currencies,
        {c: _money(v, c) for c, v in sorted(by_currency.items())},
        {k: _money(v, k[1]) for k, v in sorted(by_plan.items(), key=lambda kv: (kv[0][1], -kv[1], kv[0][0]))},
        {k: _money(v, k[1]) for k, v in sorted(by_month.items())},
        len(docs),
        {k: _money(v, k[2]) for k, v in sorted(by_month_plan.items())},
    )  # fmt: skip


# --- receivables ageing ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AgeingBucket:
    label: str
    amount: Decimal
    documents: int


@dataclass(frozen=True, slots=True)
class OpenDocument:
    id: int
    label: str
    customer: str
    currency: str
    amount_due: Decimal
    payment_due_at: datetime | None
    days_overdue: int  # 0 when not yet due
    bucket: str


@dataclass(frozen=True, slots=True)
class Ageing:
    at: datetime
    currencies: list[str]
    buckets: dict[str, list[AgeingBucket]]  # currency → the five buckets in order
    totals: dict[str, Decimal]
    oldest: list[OpenDocument]  # most overdue first, at most `limit`


def bucket_of(days_overdue: int) -> str:
    for label, _, last in AGEING_BUCKETS:
        if last is None or days_overdue <= last:
            return label
    return AGEING_BUCKETS[-1][0]


def receivables_ageing(engine: Engine, tenant_id: int, at: datetime, limit: int = 20) -> Ageing:
    """What customers owe on open documents as of `at`, by days past the payment due date."""
    if not 0 <= limit <= LIST_MAX:
        raise InvalidArgument(f"limit {limit}: 0 to {LIST_MAX} documents")
    at = utc(at)
    i, c = invoices.c, customers.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(i.id, i.number, i.number_series, i.currency, i.amount_due, i.payment_due_at, c.external_id)
            .join(customers, c.id == i.customer_id)
            .where(i.tenant_id == tenant_id, i.status.in_(OPEN), i.amount_due != 0)
        ).all()
    minor: dict[str, dict[str, list[int]]] = {}
    docs: list[OpenDocument] = []
    for n, r in enumerate(rows):
        if n % 1000 == 0:
            checkpoint()
        due = None if r.payment_due_at is None else stored_utc(r.payment_due_at)
        days = 0 if due is None or due >= at else (at - due).days + (1 if (at - due) % timedelta(days=1) else 0)
        label = bucket_of(days)
        ccy = str(r.currency)
        per = minor.setdefault(ccy, {b[0]: [0, 0] for b in AGEING_BUCKETS})
        per[label][0] += int(r.amount_due)
        per[label][1] += 1
        docs.append(OpenDocument(int(r.id), document_label(r.number, r.number_series, int(r.id)), str(r.external_id),
                                 ccy, _money(int(r.amount_due), ccy), due, days, label))  # fmt: skip
    docs.sort(key=lambda d: (-d.days_overdue, d.id))
    currencies = sorted(minor)
    return Ageing(
        at, currencies,
        {ccy: [AgeingBucket(b, _money(v[0], ccy), v[1]) for b, v in minor[ccy].items()] for ccy in currencies},
        {ccy: _money(sum(v[0] for v in minor[ccy].values()), ccy) for ccy in currencies},
        docs[:limit],
    )  # fmt: skip


# --- SLA credits issued ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SlaCredit:
    invoice_id: int
    label: str
    status: str
    customer: str
    charge: str
    meter: str
    period_start: datetime
    period_end: datetime
    measured: Decimal
    credit: Decimal  # positive: what the customer was credited
    currency: str
    issued_at: datetime


@dataclass(frozen=True, slots=True)
class SlaCredits:
    credits: list[SlaCredit]  # newest first, at most `limit`
    count: int
    totals: dict[str, Decimal]  # currency → credited in the window
    by_charge: dict[tuple[str, str], Decimal] = field(default_factory=dict)  # (charge, currency) → credited


def sla_credits(engine: Engine, tenant_id: int, start: datetime, end: datetime, limit: int = 100) -> SlaCredits:
    """SLA credit lines on documents issued in [start, end): who was credited, for which charge, how much."""
    start, end = utc(start), utc(end)
    if start >= end:
        raise InvalidArgument(f"start {start.isoformat()} is not before end {end.isoformat()}")
    if not 1 <= limit <= LIST_MAX:
        raise InvalidArgument(f"limit {limit}: 1 to {LIST_MAX} credits")
    i, ln, c = invoices.c, invoice_lines.c, customers.c
    where = (i.tenant_id == tenant_id, i.status.in_(ISSUED), i.finalized_at >= start, i.finalized_at < end,
             ln.kind == "sla_credit", ln.amount != 0)  # fmt: skip
    with engine.connect() as conn:
        rows = conn.execute(
            select(i.id, i.number, i.number_series, i.status, i.currency, i.finalized_at, c.external_id,
                   ln.charge_code, ln.meter, ln.period_start, ln.period_end, ln.quantity_units, ln.quantity_scale,
                   ln.amount)
            .join(invoice_lines, ln.invoice_id == i.id).join(customers, c.id == i.customer_id)
            .where(*where).order_by(i.finalized_at.desc(), i.id.desc(), ln.position).limit(limit)
        ).all()  # fmt: skip
        sums = conn.execute(
            select(i.currency, ln.charge_code, func.count(), func.sum(ln.amount))
            .join(invoice_lines, ln.invoice_id == i.id)
            .where(*where)
            .group_by(i.currency, ln.charge_code)
        ).all()
    totals: dict[str, int] = {}
    by_charge: dict[tuple[str, str], Decimal] = {}
    count = 0
    for ccy, charge, n, amount in sums:
        totals[str(ccy)] = totals.get(str(ccy), 0) - int(amount or 0)
        by_charge[(str(charge), str(ccy))] = _money(-int(amount or 0), str(ccy))
        count += int(n)
    return SlaCredits(
        [
            SlaCredit(int(r.id), document_label(r.number, r.number_series, int(r.id)), str(r.status),
                      str(r.external_id), str(r.charge_code), str(r.meter or ""), stored_utc(r.period_start),
                      stored_utc(r.period_end), Decimal(int(r.quantity_units)).scaleb(-int(r.quantity_scale)),
                      _money(-int(r.amount), str(r.currency)), str(r.currency), stored_utc(r.finalized_at))
            for r in rows
        ],
        count,
        {k: _money(v, k) for k, v in sorted(totals.items())},
        dict(sorted(by_charge.items())),
    )  # fmt: skip


# --- ledger movements of a document ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Movement:
    transfer_id: str
    at: datetime
    code: str
    debit: str  # the account debited, e.g. "receivable (cus_1)", "revenue"
    credit: str
    amount: Decimal
    unit: str
    reference: str
    state: str  # posted | pending | voided | expired (a hold's state); posted for every other transfer


def _account(kind: str, customer: str, peer: str) -> str:
    name = f"{kind}:{peer}" if peer else kind
    return f"{name} ({customer})" if customer else name


def invoice_movements(engine: Engine, tenant_id: int, invoice_id: int) -> list[Movement]:
    """Every ledger transfer a document caused, in ledger order: its holds on credits and points (pending
    until it is finalized or voided), the finalize booking, payments, write-offs, a void's reversal.
    NotFound for another tenant's document, as for one that does not exist."""
    from invoicing.documents import document_base, get_invoice, list_payments, payment_base

    inv = get_invoice(engine, tenant_id, invoice_id)  # NotFound names it
    holds = [str(h) for ln in inv.lines for h in ln.detail.get("holds", [])]
    prefixes = [document_base(tenant_id, inv.key), *holds,
                *(payment_base(tenant_id, p.key) for p in list_payments(engine, tenant_id, invoice_id))]  # fmt: skip
    t = ledger_transfers.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(ledger_transfers, ledger_pending.c.state)
            .outerjoin(ledger_pending, and_(ledger_pending.c.tenant_id == t.tenant_id,
                                            ledger_pending.c.transfer_id == t.transfer_id))
            .where(t.tenant_id == tenant_id, or_(*(t.transfer_id.startswith(x, autoescape=True) for x in prefixes)))
            .order_by(t.seq)
        ).all()  # fmt: skip
        pending_of = {str(r.transfer_id): r for r in rows}
        a = ledger_accounts.c
        ids = {int(r.debit_account_id) for r in rows} | {int(r.credit_account_id) for r in rows}
        accounts = {
            int(x.id): _account(str(x.kind), str(x.customer), str(x.peer))
            for x in conn.execute(select(a.id, a.kind, a.customer, a.peer).where(a.tenant_id == tenant_id,
                                                                                  a.id.in_(sorted(ids))))
        } if ids else {}  # fmt: skip
        scales = {u: resolve_unit(conn, tenant_id, u).scale for u in {str(r.unit) for r in rows}}
    out = []
    for r in rows:
        flags = int(r.flags)
        amount, debit, credit = int(r.amount), int(r.debit_account_id), int(r.credit_account_id)
        state = "posted"
        if flags & TransferFlags.PENDING:
            state = str(r.state or "pending")
        elif flags & (TransferFlags.POST_PENDING | TransferFlags.VOID_PENDING):
            held = pending_of.get(str(r.pending_id))
            state = "posted" if flags & TransferFlags.POST_PENDING else "voided"
            if held is not None:  # a post or void names its hold's accounts
                debit, credit = int(held.debit_account_id), int(held.credit_account_id)
                amount = amount or int(held.amount)
        out.append(Movement(
            str(r.transfer_id), from_us(int(r.ts_us)), str(r.code), accounts.get(debit, str(debit)),
            accounts.get(credit, str(credit)), Decimal(amount).scaleb(-scales[str(r.unit)]), str(r.unit),
            str(r.reference), state,
        ))  # fmt: skip
    return out


__all__ = [
    "AGEING_BUCKETS",
    "ISSUED",
    "Ageing",
    "AgeingBucket",
    "Movement",
    "OpenDocument",
    "RevenueReport",
    "RunInfo",
    "SlaCredit",
    "SlaCredits",
    "bucket_of",
    "document_label",
    "invoice_movements",
    "list_runs",
    "receivables_ageing",
    "revenue_report",
    "sla_credits",
]
