"""Invoices: writing drafts (credits through the ledger in the same transaction), reading them, their
lifecycle (finalize with gapless numbers, mark paid, void), corrections, previews and exports.

Rules (docs/invoicing.md has the reasons):

* An invoice is keyed by what it bills (`idempotency_key`, unique per tenant): writing the same draft
  twice writes nothing the second time.
* Money is integer minor units. Lines are rounded once each (see `invoicing.documents._rater`); tax once per
  invoice; `total == sum(lines)` always (an inclusive tax line carries 0 and names the included tax).
* Credits are ledger spends with ids derived from the invoice key, made in the transaction that writes
  the invoice, so `credits_applied` always equals what the ledger moved.
* draft → finalized → paid; draft or finalized → void. Only a draft's status may change to finalized,
  guarded in the UPDATE itself, and a number is taken from the tenant's counter row in that same
  transaction, so numbers are gapless. Finalized invoices never change: corrections are new invoices.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, DateTime, Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from invoicing.catalog import BillingCycle, floor_quarter_hour, get_customer, stored_utc, utc
from invoicing.documents._rater import DraftInvoice, DraftLine, Rater, TaxRate, points_money, tax_amount
from invoicing.events import NewEvent, emit
from invoicing.ledger.grant import spend
from invoicing.ledger.tables import ledger_accounts
from invoicing.ledger.transfer import write_transaction
from invoicing.subscriptions import DueItem, due_periods, list_subscriptions
from invoicing.tables import invoice_lines, invoices, number_series, tax_rates
from metering.errors import FailedPrecondition, InvalidArgument, NotFound
from metering.transactions import begin_write
from rating.unit import currency as currency_unit

#: finalized = issued and open; closed = a zero-total document kept for lineage, never numbered or sent.
STATUSES = ("draft", "finalized", "partially_paid", "paid", "void", "uncollectible", "closed")
LINE_KINDS = (
    "charge", "minimum_true_up", "cap_adjustment", "credit", "points", "sla_credit", "tax", "proration_adjustment",
)  # fmt: skip


# --- read models --------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class InvoiceLine:
    position: int
    kind: str
    charge_code: str
    meter: str | None
    group_key: str
    plan_version_id: int | None
    period_start: datetime
    period_end: datetime
    quantity: Decimal
    unit_price: str | None
    amount: int
    amount_exact: str
    detail: dict[str, Any]
    lineage: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Invoice:
    id: int | None  # None for a preview
    key: str
    kind: str  # invoice | adjustment | credit_note | preview
    status: str
    number: int | None
    customer_id: int
    subscription_id: int | None
    plan_version_id: int | None
    corrects_invoice_id: int | None
    currency: str
    timing: str | None
    period_start: datetime
    period_end: datetime
    span_start: datetime
    span_end: datetime
    due_at: datetime
    subtotal: int
    tax: int
    credits_applied: int
    total: int
    tax_region: str
    tax_rate: str
    tax_inclusive: bool
    lines: tuple[InvoiceLine, ...]
    number_series: str | None = None  # the series its number came from (NULL before numbering by series)
    customer_external_id: str = ""
    finalized_at: datetime | None = None  # the issue date
    payment_due_at: datetime | None = None  # finalized_at + the seller's payment terms
    paid_at: datetime | None = None
    voided_at: datetime | None = None
    amount_paid: int = 0  # payments applied to it (minor units)
    amount_due: int = 0  # still owed: total less payments and credit notes applied; 0 unless open

    @property
    def scale(self) -> int:
        return currency_unit(self.currency).scale

    def money(self, minor: int) -> Decimal:
        return Decimal(minor).scaleb(-self.scale)

    @property
    def label(self) -> str:
        if self.number is None:
            return f"draft {self.id}" if self.id else "preview"
        return f"{SERIES_PREFIX[self.number_series or 'invoice']}-{self.number:06d}"

    def to_json(self) -> dict[str, Any]:
        m = self.money
        return {
            "id": self.id, "number": self.number, "label": self.label, "kind": self.kind, "status": self.status,
            "key": self.key, "customer_id": self.customer_id, "customer": self.customer_external_id,
            "issued_at": _opt_iso(self.finalized_at), "payment_due_at": _opt_iso(self.payment_due_at),
            "paid_at": _opt_iso(self.paid_at), "voided_at": _opt_iso(self.voided_at),
            "amount_paid": str(m(self.amount_paid)), "amount_due": str(m(self.amount_due)),
            "subscription_id": self.subscription_id,
            "plan_version_id": self.plan_version_id, "corrects_invoice_id": self.corrects_invoice_id,
            "currency": self.currency, "timing": self.timing,
            "period": [self.period_start.isoformat(), self.period_end.isoformat()],
            "span": [self.span_start.isoformat(), self.span_end.isoformat()], "due_at": self.due_at.isoformat(),
            "subtotal": str(m(self.subtotal)), "tax": str(m(self.tax)),
            "credits_applied": str(m(self.credits_applied)), "total": str(m(self.total)),
            "tax_region": self.tax_region, "tax_rate": self.tax_rate, "tax_inclusive": self.tax_inclusive,
            "lines": [
                {"position": ln.position, "kind": ln.kind, "charge": ln.charge_code, "meter": ln.meter,
                 "group": ln.group_key, "quantity": str(ln.quantity), "unit_price": ln.unit_price,
                 "amount": str(m(ln.amount)), "amount_exact": ln.amount_exact, "detail": ln.detail,
                 "lineage": ln.lineage}
                for ln in self.lines
            ],
        }  # fmt: skip


def _opt_iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


# --- events -----------------------------------------------------------------------------------------------
#: The event announcing a new invoice document, by its kind (an adjustment is an invoice too).
#: Which gapless series a document's number comes from, and its label's prefix. An adjustment (a
#: positive correction) is an invoice; a credit note has its own series, so it never takes an invoice's
#: number (finance systems and tax rules expect one gapless sequence per document type).
SERIES_OF_KIND = {"invoice": "invoice", "adjustment": "invoice", "credit_note": "credit_note"}
SERIES_PREFIX = {"invoice": "INV", "credit_note": "CN"}

CREATED_EVENT = {"invoice": "invoice.created", "adjustment": "invoice.created", "credit_note": "credit_note.created"}


def event_data(
    invoice_id: int, number: int | None, kind: str, status: str, subscription_id: int | None, currency: str,
    total: int, period_start: datetime, period_end: datetime,
) -> dict[str, Any]:  # fmt: skip
    """The `data` of every invoice event (docs/api.md): enough to act on without fetching the invoice."""
    return {
        "invoice_id": invoice_id, "number": number, "kind": kind, "status": status,
        "subscription_id": subscription_id, "currency": currency, "total": _exact(total, _scale(currency)),
        "period_start": _iso(period_start), "period_end": _iso(period_end),
    }  # fmt: skip


# A run's batch has thousands of invoices over a handful of periods and currencies: format each once.
@functools.lru_cache(maxsize=4096)
def _iso(moment: datetime) -> str:
    return stored_utc(moment).isoformat()


@functools.lru_cache(maxsize=256)
def _scale(code: str) -> int:
    return currency_unit(code).scale


def _emit_transition(conn: Connection, tenant_id: int, event: str, row: Any, status: str, number: int | None) -> None:
    """Announce a status change of invoice `row` (as read before the change); last write of the transaction."""
    data = event_data(
        int(row.id),
        number,
        row.kind,
        status,
        row.subscription_id,
        row.currency,
        int(row.total),
        row.period_start,
        row.period_end,
    )
    emit(conn, tenant_id, [NewEvent(event, _external_id(conn, int(row.customer_id)), data)])


# --- tax --------------------------------------------------------------------------------------------------
def set_tax_rate(
    engine: Engine, tenant_id: int, region: str, rate: str | Decimal, inclusive: bool, now: datetime
) -> TaxRate:
    """Tax for customers whose `tax_region` is `region`: `rate` percent, inclusive or exclusive."""
    try:
        value = Decimal(str(rate))
    except ArithmeticError:
        raise InvalidArgument(f"tax rate {rate!r} is not a decimal percent, e.g. 20 or 8.875") from None
    if not value.is_finite() or not 0 <= value <= 100:
        raise InvalidArgument(f"tax rate {rate} must be a percent between 0 and 100")
    if not region or len(region) > 32:
        raise InvalidArgument("tax region must be 1-32 characters, e.g. FR or US-CA")
    t = tax_rates.c
    with begin_write(engine) as conn:
        done = conn.execute(
            update(tax_rates)
            .where(t.tenant_id == tenant_id, t.region == region)
            .values(rate=str(value), inclusive=inclusive, updated_at=utc(now))
        ).rowcount
        if not done:
            conn.execute(
                insert(tax_rates).values(
                    tenant_id=tenant_id, region=region, rate=str(value), inclusive=inclusive, updated_at=utc(now)
                )
            )
    return TaxRate(region, value, inclusive)


# --- writing ----------------------------------------------------------------------------------------------
def _exact(minor: int, scale: int) -> str:
    """An amount already in minor units as `amount_exact` text: in currency units, like the rater's lines."""
    return format(Decimal(minor).scaleb(-scale), "f")


def spend_base(tenant_id: int, key: str) -> str:
    """Deterministic prefix of the ledger spend ids of an invoice (ids are at most 100 bytes, no '#')."""
    return f"inv-{tenant_id}-" + hashlib.sha256(key.encode()).hexdigest()[:32]


def customers_with_funds(conn: Connection, tenant_id: int, customers: Sequence[str], unit: str) -> set[str]:
    """Customers holding any positive balance in `unit` (grants or wallets): only they can have credits."""
    a = ledger_accounts.c
    out: set[str] = set()
    names = sorted(set(customers))
    for i in range(0, len(names), 900):
        out |= {
            r.customer
            for r in conn.execute(
                select(a.customer).where(
                    a.tenant_id == tenant_id, a.unit == unit, a.customer.in_(names[i : i + 900]),
                    a.credits_posted > a.debits_posted,
                ).distinct()
            )
        }  # fmt: skip
    return out


def _apply_points(
    conn: Connection, tenant_id: int, draft: DraftInvoice, period: tuple[datetime, datetime]
) -> dict[tuple[str, str], int]:
    """Draw points-priced charges from the customer's points wallets (grants first, by the ledger's order);
    each draw becomes a `points` credit line worth the same money as the points it paid. Returns the money
    paid in points, in minor units, per (charge, group key). What the wallets cannot cover stays owed."""
    scale = currency_unit(draft.currency).scale
    at_us = int(utc(draft.due_at).timestamp()) * 1_000_000
    paid: dict[tuple[str, str], int] = {}
    charges = [ln for ln in draft.lines if ln.kind == "charge" and "points_unit" in ln.detail]
    for k, ln in enumerate(charges):
        d = ln.detail
        want = int(d["points_charged"])
        if want <= 0:
            continue
        s = spend(conn, tenant_id, f"{spend_base(tenant_id, draft.key)}-pts{k}", draft.customer_external_id, want,
                  d["points_unit"], ln.charge_code, at_us, partial=True)  # fmt: skip
        if not s.total:
            continue
        money = points_money(s.total, int(d["points_scale"]), Decimal(d["conversion_rate"]), scale)
        paid[(ln.charge_code, ln.group_key)] = paid.get((ln.charge_code, ln.group_key), 0) + money
        draft.lines.append(
            DraftLine(
                kind="points", charge_code=ln.charge_code, meter=ln.meter, group_key=ln.group_key,
                plan_version_id=ln.plan_version_id, period_start=period[0], period_end=period[1],
                quantity_units=s.total, quantity_scale=int(d["points_scale"]), unit_price=d["conversion_rate"],
                amount=-money, amount_exact=_exact(-money, scale),
                detail={"spend_id": s.id, "points_unit": d["points_unit"], "points_paid": s.total,
                        "draws": [{"grant": x.grant_id, "account": x.account_id, "amount": x.amount}
                                  for x in s.draws]},
                lineage={"item": draft.key, "rule": "ledger_points_spend"},
            )
        )  # fmt: skip
    return paid


def _settle(conn: Connection, tenant_id: int, draft: DraftInvoice, funded: bool) -> tuple[int, int, int, int]:
    """Add tax and credit lines to the draft (credits drawn from the ledger now); (subtotal, tax, credits, total)."""
    subtotal = draft.subtotal
    rate = TaxRate(draft.tax_region, draft.tax_rate, draft.tax_inclusive)
    tax = tax_amount(subtotal, rate)
    first = draft.lines[0] if draft.lines else None
    period = (draft.period_start, draft.period_end)
    if rate.rate:
        draft.lines.append(
            DraftLine(
                kind="tax", charge_code="tax", meter=None, group_key="", plan_version_id=None,
                period_start=period[0], period_end=period[1], quantity_units=subtotal,
                quantity_scale=currency_unit(draft.currency).scale,
                unit_price=str(rate.rate), amount=0 if rate.inclusive else tax,
                amount_exact=_exact(tax, currency_unit(draft.currency).scale),
                detail={"region": rate.region, "rate_percent": str(rate.rate), "inclusive": rate.inclusive,
                        "tax": tax, "base": subtotal},
                lineage={"item": draft.key, "rule": "tax_rates"},
            )
        )  # fmt: skip
    due = subtotal + (0 if rate.inclusive else tax)
    paid_in_points = _apply_points(conn, tenant_id, draft, period) if due > 0 else {}
    credits = sum(paid_in_points.values())
    if funded and due > credits and first is not None:
        scale = currency_unit(draft.currency).scale
        base = spend_base(tenant_id, draft.key)
        at_us = int(utc(draft.due_at).timestamp()) * 1_000_000
        payable = [
            (ln.charge_code, ln.amount - paid_in_points.pop((ln.charge_code, ln.group_key), 0))
            for ln in draft.lines
            if ln.amount > 0 and ln.kind not in ("credit", "points")
        ]
        for k, (code, amount) in enumerate(payable):
            want = min(amount, due - credits)
            if want <= 0:
                break
            s = spend(conn, tenant_id, f"{base}-{k}", draft.customer_external_id, want, draft.currency, code, at_us,
                      partial=True)  # fmt: skip
            if s.total:
                credits += s.total
                draft.lines.append(
                    DraftLine(
                        kind="credit", charge_code=code, meter=None, group_key="", plan_version_id=None,
                        period_start=period[0], period_end=period[1], quantity_units=1, quantity_scale=0,
                        unit_price=None, amount=-s.total, amount_exact=_exact(-s.total, scale),
                        detail={"spend_id": s.id, "draws": [{"grant": d.grant_id, "account": d.account_id,
                                                              "amount": d.amount} for d in s.draws]},
                        lineage={"item": draft.key, "rule": "ledger_spend"},
                    )
                )  # fmt: skip
    return subtotal, tax, credits, due - credits


def write_drafts(
    conn: Connection,
    tenant_id: int,
    drafts: Sequence[DraftInvoice],
    now: datetime,
    *,
    run_id: int | None = None,
    kind: str = "invoice",
    corrects: dict[str, int] | None = None,
    events: list[NewEvent] | None = None,
) -> dict[str, int]:
    """Write drafts not already written (by key) in the caller's transaction; key → invoice id of new ones."""
    written = write_drafts_totals(
        conn, tenant_id, drafts, now, run_id=run_id, kind=kind, corrects=corrects, events=events
    )
    return {k: v[0] for k, v in written.items()}


INVOICE_COLUMNS = (
    "id", "tenant_id", "customer_id", "subscription_id", "plan_version_id", "run_id", "idempotency_key", "kind",
    "corrects_invoice_id", "currency", "timing", "period_start", "period_end", "span_start", "span_end", "due_at",
    "status", "number", "subtotal", "tax", "credits_applied", "total", "tax_region", "tax_rate", "tax_inclusive",
    "created_at",
)  # fmt: skip
LINE_COLUMNS = (
    "invoice_id", "position", "kind", "charge_code", "meter", "group_key", "plan_version_id", "period_start",
    "period_end", "quantity_units", "quantity_scale", "unit_price", "amount", "amount_exact", "detail", "lineage",
)  # fmt: skip


class BulkInsert:
    """One driver-level executemany of positional tuples: no per-row statement compilation. Values
    go through each column type's own bind processor (memoised per distinct value, e.g. the few
    distinct instants of a batch), so what is stored is exactly what a Core insert would store."""

    def __init__(self, conn: Connection, table: Any, columns: Sequence[str]) -> None:
        self.conn = conn
        mark = "?" if conn.dialect.name == "sqlite" else "%s"
        self.sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})"
        self.procs: list[tuple[int, Any, dict[Any, Any]]] = []
        for k, name in enumerate(columns):
            col = table.c[name]
            proc = col.type._cached_bind_processor(conn.dialect)
            if isinstance(col.type, DateTime):
                inner = proc

                def proc(value: Any, inner: Any = inner) -> Any:
                    value = utc(value)
                    return value if inner is None else inner(value)

            if proc is not None:
                self.procs.append((k, proc, {}))

    def __call__(self, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        if self.procs:
            cols: list[Any] = list(zip(*rows, strict=True))
            for k, proc, memo in self.procs:
                try:
                    cols[k] = [
                        None if v is None else memo[v] if v in memo else memo.setdefault(v, proc(v)) for v in cols[k]
                    ]
                except TypeError:  # an unhashable value: not memoised
                    cols[k] = [None if v is None else proc(v) for v in cols[k]]
            rows = list(zip(*cols, strict=True))
        self.conn.exec_driver_sql(self.sql, rows)


def allocate_ids(conn: Connection, table: Any, n: int) -> list[int]:
    """`n` fresh primary keys for `table`, ascending. SQLite: the writer holds the write lock (BEGIN
    IMMEDIATE; a deferred transaction that lost the race fails to upgrade instead), so max(id) + 1 ...
    are exactly the rowids SQLite would have given. PostgreSQL: taken from the column's sequence."""
    if n <= 0:
        return []
    if conn.dialect.name == "sqlite":
        start = int(conn.exec_driver_sql(f"SELECT coalesce(max(id), 0) FROM {table.name}").scalar_one()) + 1
        return list(range(start, start + n))
    query = f"SELECT nextval(pg_get_serial_sequence('{table.name}', 'id')) FROM generate_series(1, {int(n)})"
    return sorted(int(x) for x in conn.exec_driver_sql(query).scalars())


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
_dumps = _ENCODER.encode  # json.dumps(value, sort_keys=True, separators=(",", ":")), one encoder


def write_drafts_totals(
    conn: Connection,
    tenant_id: int,
    drafts: Sequence[DraftInvoice],
    now: datetime,
    *,
    run_id: int | None = None,
    kind: str = "invoice",
    corrects: dict[str, int] | None = None,
    known_new: bool = False,
    events: list[NewEvent] | None = None,
) -> dict[str, tuple[int, int, int]]:
    """`write_drafts`, returning key → (invoice id, total, credits applied) of the new invoices.
    `known_new`: the caller has just checked, in this transaction, that no draft's key exists.
    `events`: receives an `invoice.created` (or `credit_note.created`) event per invoice written, for
    the caller to `emit` as the last statement of its transaction (one insert for the whole batch)."""
    if not drafts:
        return {}
    i = invoices.c
    keys = [d.key for d in drafts]
    existing: set[str] = set()
    if not known_new:
        for k in range(0, len(keys), 900):
            existing |= set(
                conn.execute(
                    select(i.idempotency_key).where(i.tenant_id == tenant_id, i.idempotency_key.in_(keys[k : k + 900]))
                ).scalars()
            )
    todo = [d for d in drafts if d.key not in existing]
    if not todo:
        return {}
    by_currency: dict[str, list[str]] = {}
    for d in todo:
        by_currency.setdefault(d.currency, []).append(d.customer_external_id)
    funded: set[tuple[str, str]] = set()
    for ccy, names in by_currency.items():
        funded |= {(ccy, c) for c in customers_with_funds(conn, tenant_id, names, ccy)}
    created = utc(now)
    ids = allocate_ids(conn, invoices, len(todo))
    rows = []
    line_rows = []
    out: dict[str, tuple[int, int, int]] = {}
    corrects = corrects or {}
    for d, invoice_id in zip(todo, ids, strict=True):
        subtotal, tax, credits, total = _settle(conn, tenant_id, d, (d.currency, d.customer_external_id) in funded)
        this_kind = kind
        if kind == "correction":
            this_kind = "credit_note" if subtotal < 0 else "adjustment"
        rows.append((
            invoice_id, tenant_id, d.customer_id, d.subscription_id, d.plan_version_id, run_id, d.key, this_kind,
            corrects.get(d.key), d.currency, d.timing, d.period_start, d.period_end, d.span_start, d.span_end,
            d.due_at, "draft", None, subtotal, tax, credits, total, d.tax_region, str(d.tax_rate), d.tax_inclusive,
            created,
        ))  # fmt: skip
        out[d.key] = (invoice_id, total, credits)
        if events is not None:
            events.append(
                NewEvent(
                    CREATED_EVENT.get(this_kind, "invoice.created"), d.customer_external_id,
                    event_data(invoice_id, None, this_kind, "draft", d.subscription_id, d.currency, total,
                               d.period_start, d.period_end),
                )
            )  # fmt: skip
        for pos, ln in enumerate(d.lines, start=1):
            line_rows.append((
                invoice_id, pos, ln.kind, ln.charge_code, ln.meter, ln.group_key, ln.plan_version_id,
                ln.period_start, ln.period_end, ln.quantity_units, ln.quantity_scale, ln.unit_price, ln.amount,
                ln.amount_exact, _dumps(ln.detail) if ln.detail_json is None else ln.detail_json,
                _dumps(ln.lineage) if ln.lineage_json is None else ln.lineage_json,
            ))  # fmt: skip
    BulkInsert(conn, invoices, INVOICE_COLUMNS)(rows)
    BulkInsert(conn, invoice_lines, LINE_COLUMNS)(line_rows)
    return out


# --- reading ----------------------------------------------------------------------------------------------
def _line(r: Any) -> InvoiceLine:
    return InvoiceLine(
        r.position, r.kind, r.charge_code, r.meter, r.group_key, r.plan_version_id, stored_utc(r.period_start),
        stored_utc(r.period_end), Decimal(int(r.quantity_units)).scaleb(-int(r.quantity_scale)), r.unit_price,
        int(r.amount), r.amount_exact, json.loads(r.detail), json.loads(r.lineage),
    )  # fmt: skip


def _invoice(r: Any, lines: Sequence[InvoiceLine], external_id: str = "") -> Invoice:
    return Invoice(
        int(r.id), r.idempotency_key, r.kind, r.status, r.number, int(r.customer_id), r.subscription_id,
        r.plan_version_id, r.corrects_invoice_id, r.currency, r.timing, stored_utc(r.period_start),
        stored_utc(r.period_end), stored_utc(r.span_start), stored_utc(r.span_end), stored_utc(r.due_at),
        int(r.subtotal), int(r.tax), int(r.credits_applied), int(r.total), r.tax_region, r.tax_rate,
        bool(r.tax_inclusive), tuple(lines), r.number_series, external_id,
        _maybe(r.finalized_at), _maybe(r.payment_due_at), _maybe(r.paid_at), _maybe(r.voided_at),
        int(r.amount_paid), int(r.amount_due),
    )  # fmt: skip


def _maybe(moment: datetime | None) -> datetime | None:
    return None if moment is None else stored_utc(moment)


def _load(conn: Connection, tenant_id: int, rows: Sequence[Any]) -> list[Invoice]:
    ids = [int(r.id) for r in rows]
    by_invoice: dict[int, list[InvoiceLine]] = {x: [] for x in ids}
    for k in range(0, len(ids), 900):
        for lr in conn.execute(
            select(invoice_lines)
            .where(invoice_lines.c.invoice_id.in_(ids[k : k + 900]))
            .order_by(invoice_lines.c.invoice_id, invoice_lines.c.position)
        ):
            by_invoice[int(lr.invoice_id)].append(_line(lr))
    from invoicing.tables import customers

    wanted = sorted({int(r.customer_id) for r in rows})
    names: dict[int, str] = {}
    for k in range(0, len(wanted), 900):
        names.update(
            (int(c.id), str(c.external_id))
            for c in conn.execute(
                select(customers.c.id, customers.c.external_id).where(customers.c.id.in_(wanted[k : k + 900]))
            )
        )
    return [_invoice(r, by_invoice[int(r.id)], names.get(int(r.customer_id), "")) for r in rows]


def get_invoice(engine: Engine, tenant_id: int, invoice_id: int) -> Invoice:
    with engine.connect() as conn:
        row = conn.execute(
            select(invoices).where(invoices.c.tenant_id == tenant_id, invoices.c.id == invoice_id)
        ).first()
        if row is None:
            raise NotFound(f"no invoice {invoice_id}; list them with `tally invoice list TENANT`")
        return _load(conn, tenant_id, [row])[0]


def list_invoices(
    engine: Engine,
    tenant_id: int,
    *,
    customer: str | None = None,
    status: str | None = None,
    after_id: int = 0,
    limit: int = 100,
) -> list[Invoice]:
    """Invoices by id, with their lines; `customer` is the external id."""
    if status is not None and status not in STATUSES:
        raise InvalidArgument(f"status {status!r}: one of {', '.join(STATUSES)}")
    if not 1 <= limit <= 10_000:
        raise InvalidArgument("limit must be 1..10000")
    i = invoices.c
    query = select(invoices).where(i.tenant_id == tenant_id, i.id > after_id)
    if customer is not None:
        query = query.where(i.customer_id == get_customer(engine, tenant_id, customer).id)
    if status is not None:
        query = query.where(i.status == status)
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(i.id).limit(limit)).all()
        return _load(conn, tenant_id, rows)


# --- lifecycle --------------------------------------------------------------------------------------------
def _status(conn: Connection, tenant_id: int, invoice_id: int, lock: bool = True) -> Any:
    query = select(invoices).where(invoices.c.tenant_id == tenant_id, invoices.c.id == invoice_id)
    row = conn.execute(query.with_for_update() if lock else query).first()
    if row is None:
        raise NotFound(f"no invoice {invoice_id}; list them with `tally invoice list TENANT`")
    return row


def finalize_invoice(engine: Engine, tenant_id: int, invoice_id: int, now: datetime) -> Invoice:
    """Draft → finalized with the tenant's next number, taken in this transaction (gapless)."""

    def run(conn: Connection) -> None:
        row = _status(conn, tenant_id, invoice_id)
        if row.status != "draft":
            raise FailedPrecondition(f"invoice {invoice_id} is {row.status}; only a draft can be finalized")
        if row.corrects_invoice_id is not None:
            corrected = _status(conn, tenant_id, int(row.corrects_invoice_id), lock=False)
            if corrected.status == "draft":  # a correction must never be numbered before what it corrects
                raise FailedPrecondition(
                    f"invoice {invoice_id} corrects invoice {corrected.id}, still a draft: finalize invoice "
                    f"{corrected.id} first, so that the correction is numbered after it"
                )
        series = SERIES_OF_KIND.get(row.kind, "invoice")
        c = number_series.c
        number = conn.execute(
            update(number_series).where(c.tenant_id == tenant_id, c.series == series)
            .values(last_number=c.last_number + 1).returning(c.last_number)
        ).scalar_one_or_none()  # fmt: skip
        if number is None:
            conn.execute(insert(number_series).values(tenant_id=tenant_id, series=series, last_number=1))
            number = 1
        done = conn.execute(
            update(invoices).where(invoices.c.id == invoice_id, invoices.c.status == "draft")
            .values(status="finalized", number=number, number_series=series, finalized_at=utc(now))
        ).rowcount  # fmt: skip
        if not done:
            raise FailedPrecondition(f"invoice {invoice_id} was finalized concurrently")
        _emit_transition(conn, tenant_id, "invoice.finalized", row, "finalized", number)

    write_transaction(engine, run)
    return get_invoice(engine, tenant_id, invoice_id)


def mark_paid(engine: Engine, tenant_id: int, invoice_id: int, now: datetime) -> Invoice:
    def run(conn: Connection) -> None:
        row = _status(conn, tenant_id, invoice_id)
        if row.status != "finalized":
            raise FailedPrecondition(f"invoice {invoice_id} is {row.status}; only a finalized invoice can be paid")
        conn.execute(
            update(invoices).where(invoices.c.id == invoice_id, invoices.c.status == "finalized")
            .values(status="paid", paid_at=utc(now))
        )  # fmt: skip
        _emit_transition(conn, tenant_id, "invoice.paid", row, "paid", row.number)

    write_transaction(engine, run)
    return get_invoice(engine, tenant_id, invoice_id)


def void_invoice(engine: Engine, tenant_id: int, invoice_id: int, now: datetime, reason: str = "") -> Invoice:
    """Draft or finalized → void. The invoice (and its number) stays, so a re-run never bills it again;
    credits it drew stay spent (issue a grant to give them back)."""

    def run(conn: Connection) -> None:
        row = _status(conn, tenant_id, invoice_id)
        if row.status not in ("draft", "finalized"):
            raise FailedPrecondition(
                f"invoice {invoice_id} is {row.status}; only a draft or finalized one can be voided"
            )
        conn.execute(
            update(invoices).where(invoices.c.id == invoice_id, invoices.c.status == row.status)
            .values(status="void", voided_at=utc(now), void_reason=reason)
        )  # fmt: skip
        _emit_transition(conn, tenant_id, "invoice.voided", row, "void", row.number)

    write_transaction(engine, run)
    return get_invoice(engine, tenant_id, invoice_id)


# --- corrections --------------------------------------------------------------------------------------------
def _billed(
    conn: Connection, tenant_id: int, original_id: int
) -> tuple[Any, dict[tuple[str, str, str], tuple[int, DraftLine | None]], int]:
    """Original row; per line identity the amount billed so far (original + corrections, void ones
    excluded, tax and credits excluded); the number of corrections so far."""
    orig = _status(conn, tenant_id, original_id, lock=False)
    i = invoices.c
    rows = conn.execute(
        select(i.id, i.status).where(
            i.tenant_id == tenant_id, (i.id == original_id) | (i.corrects_invoice_id == original_id)
        )
    ).all()
    n_corrections = len(rows) - 1
    live = [int(r.id) for r in rows if r.status != "void"]
    billed: dict[tuple[str, str, str], tuple[int, DraftLine | None]] = {}
    for lr in conn.execute(select(invoice_lines).where(invoice_lines.c.invoice_id.in_(live or [-1]))):
        if lr.kind in ("tax", "credit", "points"):
            continue
        kind = "charge" if lr.kind == "proration_adjustment" else lr.kind
        ident = (kind, lr.charge_code, lr.group_key)
        prev = billed.get(ident, (0, None))
        billed[ident] = (prev[0] + int(lr.amount), prev[1])
    return orig, billed, n_corrections


def correction_draft(
    conn: Connection, tenant_id: int, original_id: int, recomputed: DraftInvoice | None, key: str, line_kind: str | None
) -> DraftInvoice | None:
    """Delta lines between what was billed for the original (with its corrections) and `recomputed`;
    None when nothing changed. `line_kind` overrides the kind of charge deltas (proration_adjustment)."""
    orig, billed, _ = _billed(conn, tenant_id, original_id)
    fresh: dict[tuple[str, str, str], DraftLine] = {}
    for ln in recomputed.lines if recomputed is not None else []:
        if ln.identity in fresh:
            fresh[ln.identity].amount += ln.amount
        else:
            fresh[ln.identity] = replace(ln)
    scale = currency_unit(orig.currency).scale
    lines: list[DraftLine] = []
    for ident in sorted(set(billed) | set(fresh)):
        was = billed.get(ident, (0, None))[0]
        new = fresh.get(ident)
        now_amount = new.amount if new is not None else 0
        delta = now_amount - was
        if not delta:
            continue
        kind = line_kind if (line_kind and ident[0] == "charge") else ident[0]
        base = new
        lines.append(
            DraftLine(
                kind=kind, charge_code=ident[1], meter=base.meter if base else None, group_key=ident[2],
                plan_version_id=base.plan_version_id if base else orig.plan_version_id,
                period_start=stored_utc(orig.period_start), period_end=stored_utc(orig.period_end),
                quantity_units=base.quantity_units if base else 0, quantity_scale=base.quantity_scale if base else 0,
                unit_price=base.unit_price if base else None, amount=delta, amount_exact=_exact(delta, scale),
                detail={"billed": was, "recomputed": now_amount,
                        **({"recomputed_detail": base.detail} if base else {})},
                lineage={"corrects_invoice": original_id, "item": orig.idempotency_key,
                         **({"recomputed_lineage": base.lineage} if base else {})},
            )
        )  # fmt: skip
    if not lines:
        return None
    span_start = recomputed.span_start if recomputed else stored_utc(orig.span_start)
    span_end = recomputed.span_end if recomputed else stored_utc(orig.span_start)
    return DraftInvoice(
        key=key, subscription_id=orig.subscription_id, customer_id=int(orig.customer_id),
        customer_external_id=_external_id(conn, int(orig.customer_id)), plan_version_id=orig.plan_version_id,
        currency=orig.currency, timing=orig.timing, period_start=stored_utc(orig.period_start),
        period_end=stored_utc(orig.period_end), span_start=span_start, span_end=span_end,
        due_at=recomputed.due_at if recomputed else stored_utc(orig.due_at), tax_region=orig.tax_region,
        tax_rate=Decimal(orig.tax_rate), tax_inclusive=bool(orig.tax_inclusive), lines=lines,
    )  # fmt: skip


def _external_id(conn: Connection, customer_id: int) -> str:
    from invoicing.tables import customers

    return str(conn.execute(select(customers.c.external_id).where(customers.c.id == customer_id)).scalar_one())


def correct_invoice(engine: Engine, tenant_id: int, invoice_id: int, at: datetime) -> Invoice | None:
    """Recompute what invoice `invoice_id` bills (history and usage as known at `at`) and write the
    difference as a new invoice linked to it: a credit note when it is negative, an adjustment when
    positive. The original never changes. Returns None when nothing differs."""
    original = get_invoice(engine, tenant_id, invoice_id)
    if original.kind != "invoice":
        raise FailedPrecondition(f"invoice {invoice_id} is a {original.kind}; correct the invoice it corrects")
    if original.status == "void":
        raise FailedPrecondition(f"invoice {invoice_id} is void; nothing to correct")
    item = find_item(engine, tenant_id, original, at)
    recomputed = Rater(engine, tenant_id).draft([item])[0] if item is not None else None

    def run(conn: Connection) -> int | None:
        n = conn.execute(
            select(func.count()).select_from(invoices).where(
                invoices.c.tenant_id == tenant_id, invoices.c.corrects_invoice_id == invoice_id
            )
        ).scalar_one()  # fmt: skip
        draft = correction_draft(conn, tenant_id, invoice_id, recomputed, f"{original.key}|corr|{n + 1}", None)
        if draft is None:
            return None
        events: list[NewEvent] = []
        written = write_drafts(
            conn, tenant_id, [draft], at, kind="correction", corrects={draft.key: invoice_id}, events=events
        )
        emit(conn, tenant_id, events)
        return written.get(draft.key)

    try:
        new_id = write_transaction(engine, run)
    except IntegrityError:
        raise FailedPrecondition(f"invoice {invoice_id} was corrected concurrently; retry") from None
    return None if new_id is None else get_invoice(engine, tenant_id, new_id)


def find_item(engine: Engine, tenant_id: int, invoice: Invoice, at: datetime) -> DueItem | None:
    """The due item an invoice billed, recomputed from the subscription's history as known at `at`."""
    if invoice.subscription_id is None:
        return None
    as_of = max(utc(at), invoice.due_at)
    for item in due_periods(engine, tenant_id, as_of, subscription_id=invoice.subscription_id):
        if item.key == invoice.key:
            return item
    return None


# --- preview ----------------------------------------------------------------------------------------------
def preview_invoice(engine: Engine, tenant_id: int, customer: str, at: datetime) -> list[Invoice]:
    """The customer's upcoming invoices: every item not yet invoiced that is due by the end of the
    current period, rated exactly as the run would, with usage up to `at` (floored to the quarter
    hour). Tax is computed; credits are not drawn (nothing is written), so `credits_applied` is 0."""
    cust = get_customer(engine, tenant_id, customer)
    clip = floor_quarter_hour(utc(at))
    rater = Rater(engine, tenant_id)
    items: list[DueItem] = []
    for sub in list_subscriptions(engine, tenant_id, customer):
        plan = rater.plan(sub.plan_version_id)
        period = BillingCycle.from_instant(sub.billing_anchor, plan.interval, sub.timezone).period_at(clip)
        items += due_periods(engine, tenant_id, period.end, subscription_id=sub.id)
    with engine.connect() as conn:
        keys = [i.key for i in items]
        done = set(
            conn.execute(
                select(invoices.c.idempotency_key).where(
                    invoices.c.tenant_id == tenant_id, invoices.c.idempotency_key.in_(keys or [""])
                )
            ).scalars()
        )
    todo = [i for i in items if i.key not in done and i.customer_id == cust.id]
    out = []
    for d in rater.draft(todo, clip=clip):
        subtotal = d.subtotal
        tax = tax_amount(subtotal, TaxRate(d.tax_region, d.tax_rate, d.tax_inclusive))
        total = subtotal + (0 if d.tax_inclusive else tax)
        lines = tuple(
            InvoiceLine(
                k, ln.kind, ln.charge_code, ln.meter, ln.group_key, ln.plan_version_id, ln.period_start, ln.period_end,
                Decimal(ln.quantity_units).scaleb(-ln.quantity_scale), ln.unit_price, ln.amount, ln.amount_exact,
                ln.detail, ln.lineage,
            )
            for k, ln in enumerate(d.lines, start=1)
        )  # fmt: skip
        out.append(
            Invoice(
                None, d.key, "preview", "preview", None, d.customer_id, d.subscription_id, d.plan_version_id, None,
                d.currency, d.timing, d.period_start, d.period_end, d.span_start, d.span_end, d.due_at, subtotal,
                tax, 0, total, d.tax_region, str(d.tax_rate), d.tax_inclusive, lines,
            )
        )  # fmt: skip
    return out


def now_utc() -> datetime:
    return datetime.now(UTC)


__all__ = [
    "Invoice",
    "InvoiceLine",
    "correct_invoice",
    "correction_draft",
    "finalize_invoice",
    "find_item",
    "get_invoice",
    "list_invoices",
    "mark_paid",
    "preview_invoice",
    "set_tax_rate",
    "spend_base",
    "void_invoice",
    "write_drafts",
]
