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
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, DateTime, Engine, delete, exists, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from invoicing.catalog import BillingCycle, floor_quarter_hour, get_customer, stored_utc, utc
from invoicing.documents._assembly import Discounts, Document, Hold, Source, assemble, assemble_all, group_key
from invoicing.documents._booking import (
    book_credit_balance,
    book_finalize,
    book_payment,
    book_uncollectible,
    book_void_draft,
    book_void_finalized,
    document_base,
    hold_transfers,
    load_sources,
    write_holds,
)
from invoicing.documents._discount import after_redemptions, discount_lines
from invoicing.documents._grouping import preferences
from invoicing.documents._rater import DraftInvoice, DraftLine, Rater, TaxRate
from invoicing.events import NewEvent, emit
from invoicing.ledger.tables import ledger_accounts
from invoicing.ledger.transfer import Transfer, write_transaction
from invoicing.subscriptions import DueItem, due_periods, list_subscriptions
from invoicing.tables import (
    discount_redemptions,
    invoice_items,
    invoice_lines,
    invoices,
    number_series,
    payments,
    tax_rates,
)
from metering.errors import FailedPrecondition, InvalidArgument, NotFound
from metering.transactions import begin_write
from rating.unit import currency as currency_unit

#: finalized = issued and open; closed = a zero-total document kept for lineage, never numbered or sent.
STATUSES = ("draft", "finalized", "partially_paid", "paid", "void", "uncollectible", "closed")
LINE_KINDS = (
    "charge", "minimum_true_up", "cap_adjustment", "credit", "points", "sla_credit", "tax", "proration_adjustment",
    "discount", "line_credit",
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


def _emit_transition(
    conn: Connection, tenant_id: int, event: str | Sequence[str], row: Any, status: str, number: int | None
) -> None:
    """Announce a status change of invoice `row` (as read before the change): one event, or several in
    order, in one insert; the last write of the transaction (it holds the tenant's event head)."""
    data = event_data(
        int(row.id), number, row.kind, status, row.subscription_id, row.currency, int(row.total), row.period_start,
        row.period_end,
    )  # fmt: skip
    customer = _external_id(conn, int(row.customer_id))
    names = [event] if isinstance(event, str) else list(event)
    emit(conn, tenant_id, [NewEvent(name, customer, data) for name in names])


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


Wants = dict[int, tuple[str, set[str]]]  # customer id → (external id, units its documents may draw)
Inputs = tuple[dict[int, dict[str, list[Source]]], dict[int, list[Any]]]  # (sources, active discounts) per customer


def document_wants(groups: Sequence[tuple[str, Sequence[DraftInvoice]]]) -> tuple[Wants, dict[str, set[str]]]:
    """What the documents of `groups` may draw: per customer the points units its charges are priced in,
    and per currency the customers billed in it (whose money balances `document_inputs` looks up)."""
    wants: Wants = {}
    by_currency: dict[str, set[str]] = {}
    for _, parts in groups:
        for p in parts:
            by_currency.setdefault(p.currency, set()).add(p.customer_external_id)
            units = wants.setdefault(p.customer_id, (p.customer_external_id, set()))[1]
            units |= {
                str(ln.detail["points_unit"]) for ln in p.lines if ln.kind == "charge" and "points_unit" in ln.detail
            }
    return wants, by_currency


def document_inputs(
    conn: Connection,
    tenant_id: int,
    wants: Wants,
    by_currency: dict[str, set[str]],
    discounts_at: datetime | None,
    *,
    lock: bool = True,
) -> Inputs:
    """Everything `assemble` reads besides the rated parts: the balances the customers hold now (read,
    and with `lock` on PostgreSQL locked, in the caller's transaction) and the discounts in force at
    `discounts_at` (none without it). A worker process reads them unlocked to assemble ahead of the
    writer, which reads them again, locked, and keeps the worker's documents only when they are equal."""
    wants = {cid: (ext, set(units)) for cid, (ext, units) in wants.items()}
    for ccy, names in by_currency.items():
        funded = customers_with_funds(conn, tenant_id, sorted(names), ccy)
        for _cid, (ext, units) in wants.items():
            if ext in funded:
                units.add(ccy)
    sources = load_sources(conn, tenant_id, wants, lock=lock)
    actives: dict[int, list[Any]] = {}
    if discounts_at is not None:
        from invoicing.catalog import active_discounts

        for customer_id, active in active_discounts(conn, tenant_id, sorted(wants), discounts_at).items():
            if active:
                actives[customer_id] = list(active)
    return sources, actives


def prepare_documents(
    conn: Connection,
    tenant_id: int,
    groups: Sequence[tuple[str, Sequence[DraftInvoice]]],
    discounts_at: datetime | None = None,
) -> list[Document]:
    """Assemble the documents of `groups` with the balances their customers hold now (read, and on
    PostgreSQL locked, in the caller's transaction) and, given `discounts_at`, the discounts in force
    then: the pure `assemble` decides, this only reads. Corrections pass no instant: a recomputation
    never discounts again what the original discounted."""
    wants, by_currency = document_wants(groups)
    sources, actives = document_inputs(conn, tenant_id, wants, by_currency, discounts_at)
    return assemble_all(groups, sources, {cid: discount_rule(a) for cid, a in actives.items()})


def discount_rule(active: Sequence[Any]) -> Discounts:
    """The coupon rules of one customer as `assemble`'s discount callback; a later document of the same
    batch sees the periods the earlier ones redeemed (`after_redemptions`)."""
    state = [list(active)]

    def apply(lines: Sequence[DraftLine], currency: str) -> tuple[list[DraftLine], list[Any]]:
        extra, used = discount_lines(lines, state[0], currency)
        state[0] = after_redemptions(state[0], used)
        return extra, list(used)

    return apply


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
    """Write drafts not already written (by key), one document each, in the caller's transaction;
    key → invoice id of new ones."""
    docs = prepare_documents(conn, tenant_id, [(d.key, [d]) for d in drafts])
    written = write_documents(conn, tenant_id, docs, now, run_id=run_id, kind=kind, corrects=corrects, events=events)
    return {k: v[0] for k, v in written.items()}


INVOICE_COLUMNS = (
    "id", "tenant_id", "customer_id", "subscription_id", "plan_version_id", "run_id", "idempotency_key", "kind",
    "corrects_invoice_id", "currency", "timing", "period_start", "period_end", "span_start", "span_end", "due_at",
    "status", "number", "subtotal", "tax", "credits_applied", "total", "tax_region", "tax_rate", "tax_inclusive",
    "created_at",
)  # fmt: skip
ITEM_COLUMNS = ("tenant_id", "invoice_id", "item_key", "subscription_id", "timing", "span_end")
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


@dataclass(slots=True)
class Packet:
    """One document as the writer stores it: every row already built (lines and items without the invoice
    id, which only the writer allocates), so writing it costs no Python per line beyond one tuple each.
    A worker process builds packets ahead of the writer (`invoicing.documents._parallel`); the in-process
    run builds them the same way (`packet_of`), so both write exactly the same rows."""

    key: str
    customer_id: int
    customer_external_id: str
    currency: str
    kind: str  # invoice | adjustment | credit_note
    status: str  # draft | closed
    head: tuple[Any, ...]  # the invoice row from customer_id on (INVOICE_COLUMNS[2:]), run_id / created_at None
    lines: list[tuple[Any, ...]]  # LINE_COLUMNS[1:]
    items: list[tuple[Any, ...]]  # ITEM_COLUMNS[2:]
    holds: list[Hold]
    tag: str  # what the holds' transfer ids derive from (`document_base`)
    total: int
    credits: int
    event: tuple[str, dict[str, Any]] | None  # type and data (invoice_id filled by the writer)
    redemptions: list[Any]


def packet_of(
    doc: Document,
    tenant_id: int,
    *,
    kind: str = "invoice",
    corrects_id: int | None = None,
    issue_zero: bool = False,
    tag: str | None = None,
    updated: bool = False,
) -> Packet:
    """The rows of one assembled document (see `write_documents` for the rules). Pure: a worker calls it."""
    this_kind = kind
    if kind == "correction":
        this_kind = "credit_note" if doc.subtotal < 0 else "adjustment"
    closed = this_kind == "invoice" and doc.total == 0 and doc.credits == 0 and not issue_zero
    status = "closed" if closed else "draft"
    tag = doc.key if tag is None else tag
    if doc.holds:
        # The hold ids `hold_transfers` gives the chain: named after the document, so known before writing.
        base = document_base(tenant_id, tag)
        for n, h in enumerate(doc.holds):
            line = doc.lines[h.line]
            line.detail = {**line.detail, "holds": [*line.detail.get("holds", []), f"{base}:h{n}"]}
            line.detail_json = None
    d = doc
    head = (
        d.customer_id, d.subscription_id, d.plan_version_id, None, d.key, this_kind, corrects_id, d.currency,
        d.timing, d.period_start, d.period_end, d.span_start, d.span_end, d.due_at, status, None, d.subtotal,
        d.tax, d.credits, d.total, d.tax_region, str(d.tax_rate), d.tax_inclusive, None,
    )  # fmt: skip
    lines = [
        (pos, ln.kind, ln.charge_code, ln.meter, ln.group_key, ln.plan_version_id, ln.period_start, ln.period_end,
         ln.quantity_units, ln.quantity_scale, ln.unit_price, ln.amount, ln.amount_exact,
         _dumps(ln.detail) if ln.detail_json is None else ln.detail_json,
         _dumps(ln.lineage) if ln.lineage_json is None else ln.lineage_json)
        for pos, ln in enumerate(d.lines, start=1)
    ]  # fmt: skip
    items = [(p.key, p.subscription_id, p.timing, p.span_end) for p in d.parts] if this_kind == "invoice" else []
    event = None
    if not closed:
        name = "invoice.updated" if updated else CREATED_EVENT.get(this_kind, "invoice.created")
        event = (name, event_data(0, None, this_kind, "draft", d.subscription_id, d.currency, d.total,
                                  d.period_start, d.period_end))  # fmt: skip
    return Packet(d.key, d.customer_id, d.customer_external_id, d.currency, this_kind, status, head, lines, items,
                  list(d.holds), tag, d.total, d.credits, event, list(d.redemptions))  # fmt: skip


def write_documents(
    conn: Connection,
    tenant_id: int,
    docs: Sequence[Document],
    now: datetime,
    *,
    run_id: int | None = None,
    kind: str = "invoice",
    corrects: dict[str, int] | None = None,
    known_new: bool = False,
    events: list[NewEvent] | None = None,
    issue_zero: bool = False,
    replacing: dict[str, int] | None = None,
) -> dict[str, tuple[int, int, int]]:
    """Persist assembled documents exactly as `assemble` decided: rows, lines, the items each billed,
    and the pending ledger holds of their credits. Returns key → (invoice id, total, credits) of new ones.
    `known_new`: the caller has just checked, in this transaction, that no key exists.
    `events`: receives an `invoice.created` (or `credit_note.created`) event per document written, for
    the caller to `emit` as the last statement of its transaction (one insert for the whole batch).
    A document whose total and credits are both zero is kept for lineage with status `closed` (never
    numbered or sent) unless `issue_zero` (the tenant's billing profile asks for zero-total documents).
    `replacing`: key → id of a draft whose lines and items were just removed (`rerate_draft`): that row is
    updated in place and announced as `invoice.updated`."""
    if not docs:
        return {}
    replacing = replacing or {}
    i = invoices.c
    keys = [d.key for d in docs]
    existing: set[str] = set()
    if not known_new:
        for k in range(0, len(keys), 900):
            existing |= set(
                conn.execute(
                    select(i.idempotency_key).where(i.tenant_id == tenant_id, i.idempotency_key.in_(keys[k : k + 900]))
                ).scalars()
            )
    todo = [d for d in docs if d.key not in existing or d.key in replacing]
    if not todo:
        return {}
    created = utc(now)
    corrects = corrects or {}
    stamp = int(created.timestamp() * 1e6)
    packets = [
        packet_of(d, tenant_id, kind=kind, corrects_id=corrects.get(d.key), issue_zero=issue_zero,
                  # A re-rated draft's new holds need ids of their own: its first ones stay in the ledger, voided.
                  tag=f"{d.key}|rerated:{stamp}" if d.key in replacing else None, updated=d.key in replacing)
        for d in todo
    ]  # fmt: skip
    return write_packets(conn, tenant_id, packets, now, run_id=run_id, events=events, replacing=replacing)


def write_packets(
    conn: Connection,
    tenant_id: int,
    packets: Sequence[Packet],
    now: datetime,
    *,
    run_id: int | None = None,
    events: list[NewEvent] | None = None,
    replacing: dict[str, int] | None = None,
) -> dict[str, tuple[int, int, int]]:
    """Write built documents (`packet_of`) in the caller's transaction, ids in the order given: invoice
    rows, lines and items by one executemany each (binary COPY of the lines on PostgreSQL), then the
    ledger holds of those that draw credits. Key → (invoice id, total, credits)."""
    if not packets:
        return {}
    replacing = replacing or {}
    created = utc(now)
    fresh = iter(allocate_ids(conn, invoices, sum(1 for p in packets if p.key not in replacing)))
    rows: list[tuple[Any, ...]] = []
    updates: list[tuple[Any, ...]] = []
    line_rows: list[tuple[Any, ...]] = []
    item_rows: list[tuple[Any, ...]] = []
    holds: list[Transfer] = []
    out: dict[str, tuple[int, int, int]] = {}
    for p in packets:
        invoice_id = replacing[p.key] if p.key in replacing else next(fresh)
        head = p.head
        row = (invoice_id, tenant_id, *head[:3], run_id, *head[4:-1], created)
        (updates if p.key in replacing else rows).append(row)
        out[p.key] = (invoice_id, p.total, p.credits)
        line_rows += [(invoice_id, *ln) for ln in p.lines]
        item_rows += [(tenant_id, invoice_id, *it) for it in p.items]
        if p.holds:
            chain, _ = hold_transfers(
                conn,
                tenant_id,
                p.holds,
                p.currency,
                p.customer_external_id,
                p.head[13],
                document_base(tenant_id, p.tag),
            )
            holds += chain
        if events is not None and p.event is not None:
            events.append(NewEvent(p.event[0], p.customer_external_id, {**p.event[1], "invoice_id": invoice_id}))
    BulkInsert(conn, invoices, INVOICE_COLUMNS)(rows)
    for row in updates:
        values = dict(zip(INVOICE_COLUMNS, row, strict=True))
        for kept in ("id", "tenant_id", "idempotency_key", "kind", "number", "created_at"):
            values.pop(kept, None)
        conn.execute(update(invoices).where(invoices.c.id == row[0]).values(**values))
    BulkInsert(conn, invoice_lines, LINE_COLUMNS)(line_rows)
    BulkInsert(conn, invoice_items, ITEM_COLUMNS)(item_rows)
    write_holds(conn, tenant_id, holds, int(created.timestamp() * 1_000_000))
    used = [r for p in packets for r in p.redemptions]
    if used:
        from invoicing.catalog import record_redemptions

        record_redemptions(conn, tenant_id, used)
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


# --- selecting: filters, pages, references --------------------------------------------------------------
#: What an InvoiceFilter's period is on: the billing date the document is for (`due`, `Invoice.due_at`) or
#: the day it was issued (`issued`, `finalized_at`; a draft has none, so it never matches an `issued` period).
DATE_FIELDS = ("due", "issued")
#: Most invoices one page may hold (each is loaded with its lines).
PAGE_LIMIT_MAX = 10_000
#: Ids are 32-bit keys on every database: a reference past this names nothing.
_ID_MAX = 2**31 - 1


@dataclass(frozen=True, slots=True)
class InvoiceFilter:
    """Which invoices a list or a bulk action covers. Every criterion given must hold; none given means
    every invoice of the tenant. The period is half-open, [start, end), on `date` (see DATE_FIELDS)."""

    customer: str | None = None  # the customer's external id
    status: str | None = None  # one of STATUSES
    plan: str | None = None  # a plan code: documents billing any version of it (a grouped one may bill several)
    start: datetime | None = None
    end: datetime | None = None
    date: str = "due"

    def __post_init__(self) -> None:
        if self.customer is not None and not self.customer:
            raise InvalidArgument("customer: give the customer's external id, or leave it out for every customer")
        if self.plan is not None and not self.plan:
            raise InvalidArgument("plan: give a plan code, or leave it out for every plan")
        if self.status is not None and self.status not in STATUSES:
            raise InvalidArgument(f"status {self.status!r}: one of {', '.join(STATUSES)}")
        if self.date not in DATE_FIELDS:
            raise InvalidArgument(f"date {self.date!r}: due (the billing date) or issued (the issue date)")
        for name in ("start", "end"):
            moment = getattr(self, name)
            if moment is not None and (moment.tzinfo is None or moment.utcoffset() is None):
                raise InvalidArgument(f"{name} {moment.isoformat()} has no time zone; give an instant, e.g. ...Z")
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise InvalidArgument(
                f"start {self.start.isoformat()} is not before end {self.end.isoformat()}: the period is [start, end)"
            )

    @property
    def is_empty(self) -> bool:
        return (self.customer, self.status, self.plan, self.start, self.end) == (None,) * 5

    def describe(self) -> str:
        """The criteria in words ("customer cus_42, status draft, due from 2026-01-01T00:00:00+00:00")."""
        parts = [f"{k} {v}" for k, v in (("customer", self.customer), ("status", self.status), ("plan", self.plan))
                 if v is not None]  # fmt: skip
        if self.start is not None:
            parts.append(f"{self.date} from {utc(self.start).isoformat()}")
        if self.end is not None:
            parts.append(f"{self.date} before {utc(self.end).isoformat()}")
        return ", ".join(parts) or "every invoice"


def invoice_conditions(engine: Engine, tenant_id: int, where: InvoiceFilter) -> list[Any]:
    """The WHERE clauses selecting `where`'s invoices of the tenant. The customer and the plan are looked up
    here, once (an unknown one is NotFound), so a walk over many pages reuses the clauses."""
    i = invoices.c
    out: list[Any] = [i.tenant_id == tenant_id]
    if where.customer is not None:
        out.append(i.customer_id == get_customer(engine, tenant_id, where.customer).id)
    if where.status is not None:
        out.append(i.status == where.status)
    if where.plan is not None:
        from invoicing.catalog import list_plan_versions

        versions = [v.id for v in list_plan_versions(engine, tenant_id, where.plan)]
        ln = invoice_lines.c
        out.append(
            or_(i.plan_version_id.in_(versions),
                exists().where(ln.invoice_id == i.id, ln.plan_version_id.in_(versions)))
        )  # fmt: skip
    column = i.due_at if where.date == "due" else i.finalized_at
    if where.start is not None:
        out.append(column >= utc(where.start))
    if where.end is not None:
        out.append(column < utc(where.end))
    return out


@dataclass(frozen=True, slots=True)
class InvoicePage:
    invoices: list[Invoice]
    #: Pass as `after_id` for the next page; None when this page is the last.
    next_after_id: int | None


def invoice_page(
    engine: Engine, tenant_id: int, where: InvoiceFilter | None = None, *, after_id: int = 0, limit: int = 100
) -> InvoicePage:
    """One page of the invoices `where` matches, by id, with their lines, and whether more follow (one row
    past the page is read to know)."""
    if not 1 <= limit <= PAGE_LIMIT_MAX:
        raise InvalidArgument(f"limit {limit}: 1 to {PAGE_LIMIT_MAX:,} invoices a page")
    if after_id < 0:
        raise InvalidArgument(f"after {after_id}: an invoice id (0 or more) to start after")
    conds = invoice_conditions(engine, tenant_id, where or InvoiceFilter())
    i = invoices.c
    with engine.connect() as conn:
        rows = conn.execute(select(invoices).where(*conds, i.id > after_id).order_by(i.id).limit(limit + 1)).all()
        found = _load(conn, tenant_id, rows[:limit])
    more = len(rows) > limit
    return InvoicePage(found, found[-1].id if more and found else None)


def list_invoices(
    engine: Engine,
    tenant_id: int,
    *,
    customer: str | None = None,
    status: str | None = None,
    after_id: int = 0,
    limit: int = 100,
    where: InvoiceFilter | None = None,
) -> list[Invoice]:
    """Invoices by id, with their lines: those `where` matches, or (the older keywords) of `customer`
    (external id) and in `status`. `invoice_page` also says whether more follow."""
    if where is None:
        where = InvoiceFilter(customer=customer, status=status)
    elif customer is not None or status is not None:
        raise InvalidArgument("give the criteria either in `where` or as customer=/status=, not both")
    return invoice_page(engine, tenant_id, where, after_id=after_id, limit=limit).invoices


#: An invoice reference: an id ("42"), a number as its label prints it ("INV-000042", "CN-3", any case, the
#: dash and the zeros optional) or an unnumbered document's label ("draft 12", "draft-12", as exports name files).
_REFERENCE = re.compile(r"(?P<id>\d+)|DRAFT[ -]?(?P<draft>\d+)|(?P<prefix>[A-Z]+)-?(?P<number>\d+)", re.IGNORECASE)
SERIES_OF_PREFIX = {prefix: series for series, prefix in SERIES_PREFIX.items()}


def parse_invoice_reference(text: str) -> tuple[str | None, int]:
    """(None, id) for an id or a draft's label; (series, number) for a number. Pure: nothing is looked up."""
    m = _REFERENCE.fullmatch(text.strip()) if len(text) <= 64 else None
    series = SERIES_OF_PREFIX.get(m.group("prefix").upper()) if m and m.group("prefix") else None
    if m is None or (m.group("prefix") and series is None):
        forms = ", ".join(f"{p}-000012" for p in SERIES_OF_PREFIX)
        shown = text if len(text) <= 64 else text[:61] + "..."
        raise InvalidArgument(f"invoice {shown!r} is neither an id (e.g. 12) nor a number ({forms})")
    value = int(m.group("id") or m.group("number") or m.group("draft"))
    if m.group("number"):
        return series, value
    if not 1 <= value <= _ID_MAX:
        raise InvalidArgument(f"invoice id {value}: ids run from 1 to {_ID_MAX}")
    return None, value


def resolve_invoice(engine: Engine, tenant_id: int, reference: str | int) -> int:
    """The id of the invoice `reference` names: its id, or its number as printed on it (INV-000042, CN-000003).
    Every command and RPC that takes an invoice goes through here, so each accepts both. An id is returned
    as it is (the operation that uses it says when it names nothing); a number is looked up."""
    series, value = parse_invoice_reference(str(reference))
    if series is None:
        return value
    label = f"{SERIES_PREFIX[series]}-{value:06d}"
    i = invoices.c
    # Documents numbered before number series existed (migration 0008) carry no series; they are invoices.
    in_series = i.number_series == series if series != "invoice" else or_(i.number_series == series,
                                                                          i.number_series.is_(None))  # fmt: skip
    found = None
    if value <= _ID_MAX:
        with engine.connect() as conn:
            found = conn.execute(
                select(i.id).where(i.tenant_id == tenant_id, i.number == value, in_series).order_by(i.id).limit(1)
            ).scalar_one_or_none()
    if found is None:
        raise NotFound(f"no invoice numbered {label}; list them with `tally invoice list TENANT`")
    return int(found)


# --- lifecycle --------------------------------------------------------------------------------------------
#: Statuses of an issued document that is still owed something (Σ amount_due over them = receivable).
OPEN = ("finalized", "partially_paid")


def _status(conn: Connection, tenant_id: int, invoice_id: int, lock: bool = True) -> Any:
    query = select(invoices).where(invoices.c.tenant_id == tenant_id, invoices.c.id == invoice_id)
    row = conn.execute(query.with_for_update() if lock else query).first()
    if row is None:
        raise NotFound(f"no invoice {invoice_id}; list them with `tally invoice list TENANT`")
    return row


def _stored_lines(conn: Connection, invoice_id: int) -> list[InvoiceLine]:
    q = select(invoice_lines).where(invoice_lines.c.invoice_id == invoice_id).order_by(invoice_lines.c.position)
    return [_line(r) for r in conn.execute(q)]


def _us(moment: datetime) -> int:
    return int(utc(moment).timestamp() * 1_000_000)


def _terms_days(conn: Connection, tenant_id: int) -> int:
    from invoicing.catalog import get_billing_profile

    return int(get_billing_profile(conn, tenant_id).payment_terms_days)


def finalize_invoice(engine: Engine, tenant_id: int, invoice_id: int, now: datetime) -> Invoice:
    """Draft → finalized with the next number of its series, taken in this transaction (gapless). The
    holds of its credits are posted and the receivable is booked against revenue and tax payable; a credit
    note pays down the invoice it corrects. A document that owes nothing is paid once finalized."""
    write_transaction(engine, lambda conn: finalize_in(conn, tenant_id, invoice_id, now))
    return get_invoice(engine, tenant_id, invoice_id)


def finalize_in(conn: Connection, tenant_id: int, invoice_id: int, now: datetime) -> None:
    """`finalize_invoice` in the caller's transaction: a document issued together with the change that
    causes it (a dispute's credit note is numbered in the transaction that resolves the dispute)."""
    row = _status(conn, tenant_id, invoice_id)
    if row.status != "draft":
        hint = " (a zero-total document is not issued)" if row.status == "closed" else ""
        raise FailedPrecondition(f"invoice {invoice_id} is {row.status}; only a draft can be finalized{hint}")
    corrected = None
    if row.corrects_invoice_id is not None:
        corrected = _status(conn, tenant_id, int(row.corrects_invoice_id))
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
    customer = _external_id(conn, int(row.customer_id))
    at = utc(now)
    book_finalize(conn, tenant_id, row, _stored_lines(conn, invoice_id), customer, _us(at))
    total = int(row.total)
    due = max(total, 0) if row.kind != "credit_note" else 0
    status = "finalized" if due > 0 or row.kind == "credit_note" else "paid"
    done = conn.execute(
        update(invoices).where(invoices.c.id == invoice_id, invoices.c.status == "draft")
        .values(status=status, number=number, number_series=series, finalized_at=at, amount_due=due,
                payment_due_at=at + timedelta(days=_terms_days(conn, tenant_id)),
                paid_at=at if status == "paid" else None)
    ).rowcount  # fmt: skip
    if not done:
        raise FailedPrecondition(f"invoice {invoice_id} was finalized concurrently")
    if row.kind == "credit_note" and total < 0:
        _apply_credit_note(conn, tenant_id, row, corrected, customer, -total, at)
    _emit_transition(conn, tenant_id, "invoice.finalized", row, status, number)


def _apply_credit_note(
    conn: Connection, tenant_id: int, note: Any, corrected: Any, customer: str, amount: int, at: datetime
) -> None:
    """A credit note of `amount` pays down what its invoice still owes; the rest becomes the customer's
    cash balance (they had paid it already), which their next invoice draws as a credit."""
    applied = 0
    if corrected is not None and corrected.status in OPEN:
        applied = min(amount, int(corrected.amount_due))
        left = int(corrected.amount_due) - applied
        conn.execute(
            update(invoices).where(invoices.c.id == corrected.id)
            .values(amount_due=left, status="paid" if left == 0 else corrected.status,
                    paid_at=at if left == 0 else corrected.paid_at)
        )  # fmt: skip
    book_credit_balance(
        conn, tenant_id, document_base(tenant_id, note.idempotency_key), note.currency, customer, amount - applied,
        f"credit note {note.id}", _us(at),
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Payment:
    id: int
    invoice_id: int
    key: str
    amount: int  # minor units received
    applied: int  # to the invoice; amount - applied went to the customer's cash wallet
    currency: str
    paid_at: datetime
    method: str
    reference: str
    created: bool = True  # False: this key was recorded before (an idempotent retry)

    def to_json(self) -> dict[str, Any]:
        scale = _scale(self.currency)
        return {
            "id": self.id, "invoice_id": self.invoice_id, "key": self.key, "amount": _exact(self.amount, scale),
            "applied": _exact(self.applied, scale), "to_wallet": _exact(self.amount - self.applied, scale),
            "currency": self.currency, "paid_at": self.paid_at.isoformat(), "method": self.method,
            "reference": self.reference,
        }  # fmt: skip


PAYMENT_METHODS = ("bank_transfer", "card", "direct_debit", "check", "cash", "other")


def record_payment(
    engine: Engine,
    tenant_id: int,
    invoice_id: int,
    amount: int,
    paid_at: datetime,
    *,
    method: str = "bank_transfer",
    reference: str = "",
    key: str | None = None,
    now: datetime | None = None,
) -> Payment:
    """Money received for an open invoice: it pays down what is due (partially paid until nothing is);
    an overpayment goes to the customer's cash wallet. `key` makes recording idempotent (default: the
    invoice, amount, date and reference), so a retried request records it once."""
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise InvalidArgument("amount: a payment is a positive amount, e.g. 120.00")
    if method not in PAYMENT_METHODS:
        raise InvalidArgument(f"method {method!r}: one of {', '.join(PAYMENT_METHODS)}")
    if len(reference) > 200:
        raise InvalidArgument("reference: at most 200 characters")
    paid = utc(paid_at)
    if paid > datetime.now(UTC) + timedelta(days=1):
        raise InvalidArgument(f"paid_at {paid.isoformat()} is in the future; record a payment once it is received")
    # The derived key is a digest so that a 200-character reference still fits the 100-character column.
    body = f"{invoice_id}|{amount}|{paid.isoformat()}|{reference}"
    pkey = key if key is not None else "pay:" + hashlib.sha256(body.encode()).hexdigest()[:40]
    if not 1 <= len(pkey) <= 100:
        raise InvalidArgument("key: 1..100 characters")
    p = payments.c

    def run(conn: Connection) -> Payment:
        # The invoice row is locked before the key is looked up, so two concurrent retries of one payment
        # serialise here and the second finds the first's row instead of paying twice.
        row = _status(conn, tenant_id, invoice_id)
        prior = conn.execute(select(payments).where(p.tenant_id == tenant_id, p.payment_key == pkey)).first()
        if prior is not None:
            same = (int(prior.invoice_id), int(prior.amount), stored_utc(prior.paid_at), prior.method,
                    prior.reference) == (invoice_id, amount, paid, method, reference)  # fmt: skip
            if not same:
                raise FailedPrecondition(f"payment {pkey!r} was already recorded with a different body")
            return _payment(prior, created=False)
        if row.status not in OPEN:
            hint = {"draft": "finalize it first", "paid": "it is paid in full"}.get(row.status, "")
            raise FailedPrecondition(
                f"invoice {invoice_id} is {row.status}; payments are recorded on open invoices"
                + (f" ({hint})" if hint else "")
            )
        due = int(row.amount_due)
        applied = min(amount, due)
        customer = _external_id(conn, int(row.customer_id))
        book_payment(conn, tenant_id, pkey, row.currency, customer, applied, amount - applied, reference, _us(paid))
        left = due - applied
        status = "paid" if left == 0 else "partially_paid"
        conn.execute(
            update(invoices).where(invoices.c.id == invoice_id)
            .values(amount_due=left, amount_paid=int(row.amount_paid) + applied, status=status,
                    paid_at=paid if status == "paid" else None)
        )  # fmt: skip
        new_id = conn.execute(
            insert(payments).values(
                tenant_id=tenant_id, invoice_id=invoice_id, payment_key=pkey, amount=amount, applied=applied,
                currency=row.currency, paid_at=paid, method=method, reference=reference,
                created_at=utc(now or datetime.now(UTC)),
            ).returning(p.id)
        ).scalar_one()  # fmt: skip
        names = ["invoice.payment_recorded", *(["invoice.paid"] if status == "paid" else [])]
        _emit_transition(conn, tenant_id, names, row, status, row.number)
        return Payment(int(new_id), invoice_id, pkey, amount, applied, row.currency, paid, method, reference)

    return write_transaction(engine, run)


def _payment(r: Any, created: bool = True) -> Payment:
    return Payment(int(r.id), int(r.invoice_id), r.payment_key, int(r.amount), int(r.applied), r.currency,
                   stored_utc(r.paid_at), r.method, r.reference, created)  # fmt: skip


def list_payments(engine: Engine, tenant_id: int, invoice_id: int) -> list[Payment]:
    p = payments.c
    with engine.connect() as conn:
        _status(conn, tenant_id, invoice_id, lock=False)
        rows = conn.execute(
            select(payments).where(p.tenant_id == tenant_id, p.invoice_id == invoice_id).order_by(p.id)
        ).all()
    return [_payment(r) for r in rows]


def mark_paid(engine: Engine, tenant_id: int, invoice_id: int, now: datetime) -> Invoice:
    """Record a payment of everything still due, dated `now` (method `other`)."""
    with engine.connect() as conn:
        row = _status(conn, tenant_id, invoice_id, lock=False)
    if row.status not in OPEN:
        raise FailedPrecondition(f"invoice {invoice_id} is {row.status}; only an open (finalized) invoice can be paid")
    record_payment(engine, tenant_id, invoice_id, int(row.amount_due), now, method="other",
                   key=f"{invoice_id}:paid-in-full")  # fmt: skip
    return get_invoice(engine, tenant_id, invoice_id)


def release_redemptions(conn: Connection, tenant_id: int, lines: Sequence[InvoiceLine]) -> None:
    """Forget the discount periods these lines used, so the document that bills their items again gets
    the same discounts (a once-only coupon is not spent by a document that was voided or re-rated)."""
    r = discount_redemptions.c
    for ln in lines:
        if ln.kind == "discount" and "discount" in ln.lineage and "period_start" in ln.detail:
            conn.execute(
                delete(discount_redemptions).where(
                    r.tenant_id == tenant_id, r.discount_id == int(ln.lineage["discount"]),
                    r.period_start == datetime.fromisoformat(str(ln.detail["period_start"])),
                )
            )  # fmt: skip


def rerate_draft(
    conn: Connection,
    tenant_id: int,
    invoice_id: int,
    parts: Sequence[DraftInvoice],
    now: datetime,
    *,
    events: list[NewEvent],
    discounts_at: datetime | None = None,
    issue_zero: bool = False,
) -> tuple[int, int, int] | None:
    """A correction of a document that was never issued: the draft itself is re-rated from `parts` (its
    items as they now stand) instead of being followed by a credit note. Its holds are released and its
    discount periods forgotten before it is assembled again, so it draws and discounts exactly what a
    first assembly would; id, key and run stay. Returns (id, total, credits), or None when the
    document is no longer a draft (finalized meanwhile: the caller corrects it with a new document)."""
    row = _status(conn, tenant_id, invoice_id)
    if row.status not in ("draft", "closed"):
        return None
    lines = _stored_lines(conn, invoice_id)
    book_void_draft(conn, tenant_id, lines, _us(utc(now)))
    release_redemptions(conn, tenant_id, lines)
    conn.execute(delete(invoice_lines).where(invoice_lines.c.invoice_id == invoice_id))
    conn.execute(delete(invoice_items).where(invoice_items.c.invoice_id == invoice_id))
    docs = prepare_documents(conn, tenant_id, [(row.idempotency_key, list(parts))], discounts_at=discounts_at)
    written = write_documents(conn, tenant_id, docs, now, run_id=row.run_id, events=events, issue_zero=issue_zero,
                              replacing={row.idempotency_key: invoice_id})  # fmt: skip
    return written[row.idempotency_key]


def void_invoice(
    engine: Engine, tenant_id: int, invoice_id: int, now: datetime, reason: str = "", *, reissue: bool = False
) -> Invoice:
    """Draft or finalized → void. A draft's holds are released; a finalized document's booking is reversed
    and what it drew is given back. The document (and its number) stays. With `reissue`, the items it
    billed are released so the next invoice run bills them again; otherwise they stay billed."""

    def run(conn: Connection) -> None:
        row = _status(conn, tenant_id, invoice_id)
        if row.status not in ("draft", "finalized"):
            hint = {
                "partially_paid": "it has payments: issue a credit note instead",
                "credit_note": "",
            }.get(row.status, "")
            raise FailedPrecondition(
                f"invoice {invoice_id} is {row.status}; only a draft or an unpaid finalized one can be voided"
                + (f" ({hint})" if hint else "")
            )
        lines = _stored_lines(conn, invoice_id)
        at = utc(now)
        if row.status == "draft":
            book_void_draft(conn, tenant_id, lines, _us(at))
        else:
            if row.kind == "credit_note":
                raise FailedPrecondition(
                    f"invoice {invoice_id} is a finalized credit note; correct the invoice again instead"
                )
            applied = conn.execute(
                select(func.count()).select_from(invoices).where(
                    invoices.c.corrects_invoice_id == invoice_id, invoices.c.status.in_((*OPEN, "paid"))
                )
            ).scalar_one()  # fmt: skip
            if int(row.amount_paid) or applied:
                raise FailedPrecondition(
                    f"invoice {invoice_id} has payments or finalized corrections; issue a credit note instead"
                )
            book_void_finalized(conn, tenant_id, row, lines, _external_id(conn, int(row.customer_id)), _us(at))
        conn.execute(
            update(invoices).where(invoices.c.id == invoice_id, invoices.c.status == row.status)
            .values(status="void", voided_at=at, void_reason=reason, amount_due=0)
        )  # fmt: skip
        if reissue:
            release_redemptions(conn, tenant_id, lines)  # the re-issued document gets its discounts again
            it = invoice_items.c
            for r in conn.execute(select(it.id, it.item_key).where(it.invoice_id == invoice_id)).all():
                conn.execute(
                    update(invoice_items).where(it.id == r.id)
                    .values(item_key=f"{r.item_key}|reissued:{invoice_id}"[:255])
                )  # fmt: skip
        _emit_transition(conn, tenant_id, "invoice.voided", row, "void", row.number)

    write_transaction(engine, run)
    return get_invoice(engine, tenant_id, invoice_id)


def mark_uncollectible(engine: Engine, tenant_id: int, invoice_id: int, now: datetime, reason: str = "") -> Invoice:
    """An open invoice finance gives up collecting: what is still due is written off to bad debt."""

    def run(conn: Connection) -> None:
        row = _status(conn, tenant_id, invoice_id)
        if row.status not in OPEN:
            raise FailedPrecondition(
                f"invoice {invoice_id} is {row.status}; only an open (finalized or partially paid) invoice "
                "can be marked uncollectible"
            )
        at = utc(now)
        book_uncollectible(conn, tenant_id, row, _external_id(conn, int(row.customer_id)), int(row.amount_due),
                           _us(at))  # fmt: skip
        conn.execute(
            update(invoices).where(invoices.c.id == invoice_id)
            .values(status="uncollectible", uncollectible_at=at, amount_due=0, void_reason=reason or None)
        )  # fmt: skip
        _emit_transition(conn, tenant_id, "invoice.uncollectible", row, "uncollectible", row.number)

    write_transaction(engine, run)
    return get_invoice(engine, tenant_id, invoice_id)


# --- corrections --------------------------------------------------------------------------------------------
#: Lines a correction never recomputes: they settle or discount what the rated lines bill, or credit part
#: of a line by decision (`line_credit`, a dispute's credit note: a later recomputation must not bill it again).
_NOT_RECOMPUTED = ("tax", "credit", "points", "discount", "line_credit")
Identity = tuple[str, str, str, str]  # (kind, charge, group key, due item)


def _identity(kind: str, charge: str, group: str, item: str) -> Identity:
    return ("charge" if kind == "proration_adjustment" else kind, charge, group, item)


def _billed(
    conn: Connection, tenant_id: int, original_id: int, items: set[str] | None
) -> tuple[Any, dict[Identity, int]]:
    """Original row; per line identity the amount billed so far for `items` (None: every item) by the
    original and its corrections (void ones, tax, credits and discounts excluded)."""
    orig = _status(conn, tenant_id, original_id, lock=False)
    i = invoices.c
    rows = conn.execute(
        select(i.id, i.status).where(
            i.tenant_id == tenant_id, (i.id == original_id) | (i.corrects_invoice_id == original_id)
        )
    ).all()
    live = [int(r.id) for r in rows if r.status != "void"]
    billed: dict[Identity, int] = {}
    for lr in conn.execute(select(invoice_lines).where(invoice_lines.c.invoice_id.in_(live or [-1]))):
        if lr.kind in _NOT_RECOMPUTED:
            continue
        item = str(json.loads(lr.lineage).get("item", orig.idempotency_key))
        if items is not None and item not in items:
            continue
        ident = _identity(lr.kind, lr.charge_code, lr.group_key, item)
        billed[ident] = billed.get(ident, 0) + int(lr.amount)
    return orig, billed


def correction_draft(
    conn: Connection,
    tenant_id: int,
    original_id: int,
    recomputed: Sequence[DraftInvoice],
    key: str,
    line_kind: str | None,
    items: set[str] | None = None,
) -> DraftInvoice | None:
    """Delta lines between what was billed for the original's `items` (None: all; with its corrections)
    and `recomputed` (the items rated again); None when nothing changed. `line_kind` overrides the kind
    of charge deltas (proration_adjustment). Each delta line names the item it corrects."""
    orig, billed = _billed(conn, tenant_id, original_id, items)
    fresh: dict[Identity, DraftLine] = {}
    for d in recomputed:
        for ln in d.lines:
            if ln.kind in _NOT_RECOMPUTED:
                continue
            ident = _identity(ln.kind, ln.charge_code, ln.group_key, str(ln.lineage.get("item", d.key)))
            if ident in fresh:
                fresh[ident].amount += ln.amount
            else:
                fresh[ident] = replace(ln)
    scale = currency_unit(orig.currency).scale
    lines: list[DraftLine] = []
    for ident in sorted(set(billed) | set(fresh)):
        was = billed.get(ident, 0)
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
                period_start=base.period_start if base else stored_utc(orig.period_start),
                period_end=base.period_end if base else stored_utc(orig.period_end),
                quantity_units=base.quantity_units if base else 0, quantity_scale=base.quantity_scale if base else 0,
                unit_price=base.unit_price if base else None, amount=delta, amount_exact=_exact(delta, scale),
                detail={"billed": was, "recomputed": now_amount,
                        **({"recomputed_detail": base.detail} if base else {})},
                lineage={"corrects_invoice": original_id, "item": ident[3],
                         **({"recomputed_lineage": base.lineage} if base else {})},
            )
        )  # fmt: skip
    if not lines:
        return None
    span_start = min((d.span_start for d in recomputed), default=stored_utc(orig.span_start))
    span_end = max((d.span_end for d in recomputed), default=stored_utc(orig.span_start))
    return DraftInvoice(
        key=key, subscription_id=orig.subscription_id, customer_id=int(orig.customer_id),
        customer_external_id=_external_id(conn, int(orig.customer_id)), plan_version_id=orig.plan_version_id,
        currency=orig.currency, timing=orig.timing, period_start=stored_utc(orig.period_start),
        period_end=stored_utc(orig.period_end), span_start=span_start, span_end=span_end,
        due_at=max((d.due_at for d in recomputed), default=stored_utc(orig.due_at)), tax_region=orig.tax_region,
        tax_rate=Decimal(orig.tax_rate), tax_inclusive=bool(orig.tax_inclusive), lines=lines,
    )  # fmt: skip


def _external_id(conn: Connection, customer_id: int) -> str:
    from invoicing.tables import customers

    return str(conn.execute(select(customers.c.external_id).where(customers.c.id == customer_id)).scalar_one())


def item_keys(conn: Connection, tenant_id: int, invoice_id: int) -> list[str]:
    """The due items a document billed (as first billed: a re-issue suffix is stripped)."""
    it = invoice_items.c
    keys = conn.execute(
        select(it.item_key).where(it.tenant_id == tenant_id, it.invoice_id == invoice_id).order_by(it.id)
    ).scalars()
    return [k.split("|reissued:", 1)[0] for k in keys]


def correct_invoice(engine: Engine, tenant_id: int, invoice_id: int, at: datetime) -> Invoice | None:
    """Recompute what invoice `invoice_id` bills (history and usage as known at `at`) and write the
    difference as a new document linked to it: a credit note when it is negative, an adjustment when
    positive. The original never changes. Returns None when nothing differs. A draft is not corrected
    but re-rated in place (`rerate_draft`) and returned: it was never sent, so nothing needs reversing."""
    original = get_invoice(engine, tenant_id, invoice_id)
    if original.kind != "invoice":
        raise FailedPrecondition(f"invoice {invoice_id} is a {original.kind}; correct the invoice it corrects")
    if original.status in ("void", "closed"):
        raise FailedPrecondition(f"invoice {invoice_id} is {original.status}; nothing to correct")
    with engine.connect() as conn:
        keys = item_keys(conn, tenant_id, invoice_id)
    found = find_items(engine, tenant_id, original, at, set(keys))
    recomputed = Rater(engine, tenant_id).draft(found) if found else []

    def run(conn: Connection) -> int | None:
        events: list[NewEvent] = []
        if original.status in ("draft",) and found:
            from invoicing.documents._grouping import preferences_in

            rerated = rerate_draft(conn, tenant_id, invoice_id, recomputed, at, events=events, discounts_at=at,
                                   issue_zero=preferences_in(conn, tenant_id).issue_zero)  # fmt: skip
            if rerated is not None:
                emit(conn, tenant_id, events)
                return invoice_id
        n = conn.execute(
            select(func.count()).select_from(invoices).where(
                invoices.c.tenant_id == tenant_id, invoices.c.corrects_invoice_id == invoice_id
            )
        ).scalar_one()  # fmt: skip
        draft = correction_draft(conn, tenant_id, invoice_id, recomputed, f"{original.key}|corr|{n + 1}", None)
        if draft is None:
            return None
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


def find_items(engine: Engine, tenant_id: int, invoice: Invoice, at: datetime, keys: set[str]) -> list[DueItem]:
    """The due items `keys` of a document, recomputed from their subscriptions' history as known at `at`."""
    subs = sorted({int(k.split(":", 1)[0]) for k in keys if k.split(":", 1)[0].isdigit()})
    as_of = max(utc(at), invoice.due_at)
    out: list[DueItem] = []
    for sub in subs:
        out += [i for i in due_periods(engine, tenant_id, as_of, subscription_id=sub) if i.key in keys]
    return out


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
    it = invoice_items.c
    with engine.connect() as conn:
        keys = [i.key for i in items]
        done: set[str] = set()
        for k in range(0, len(keys), 900):
            done |= set(
                conn.execute(
                    select(it.item_key).where(it.tenant_id == tenant_id, it.item_key.in_(keys[k : k + 900]))
                ).scalars()
            )
    todo = [i for i in items if i.key not in done and i.customer_id == cust.id]
    out = []
    groups: dict[str, list[DraftInvoice]] = {}
    split = preferences(engine, tenant_id).split(cust.id)  # the run's grouping, so the preview matches it
    for item, d in zip(todo, rater.draft(todo, clip=clip), strict=True):
        own = item.subscription_id if split else None
        groups.setdefault(group_key(item.customer_id, d.currency, item.due_at, own), []).append(d)
    from invoicing.catalog import active_discounts

    with engine.connect() as conn:
        active = active_discounts(conn, tenant_id, [cust.id], clip).get(cust.id, [])
    rule = discount_rule(active) if active else None
    for key, parts in groups.items():
        doc = assemble(key, parts, None, rule)  # no balances: a preview draws nothing
        lines = tuple(
            InvoiceLine(
                k, ln.kind, ln.charge_code, ln.meter, ln.group_key, ln.plan_version_id, ln.period_start, ln.period_end,
                Decimal(ln.quantity_units).scaleb(-ln.quantity_scale), ln.unit_price, ln.amount, ln.amount_exact,
                ln.detail, ln.lineage,
            )
            for k, ln in enumerate(doc.lines, start=1)
        )  # fmt: skip
        out.append(
            Invoice(
                None, doc.key, "preview", "preview", None, doc.customer_id, doc.subscription_id, doc.plan_version_id,
                None, doc.currency, doc.timing, doc.period_start, doc.period_end, doc.span_start, doc.span_end,
                doc.due_at, doc.subtotal, doc.tax, 0, doc.total, doc.tax_region, str(doc.tax_rate), doc.tax_inclusive,
                lines, customer_external_id=doc.customer_external_id,
            )
        )  # fmt: skip
    return out


def now_utc() -> datetime:
    return datetime.now(UTC)


__all__ = [
    "DATE_FIELDS",
    "Invoice",
    "InvoiceFilter",
    "InvoiceLine",
    "InvoicePage",
    "correct_invoice",
    "correction_draft",
    "finalize_in",
    "finalize_invoice",
    "find_items",
    "get_invoice",
    "invoice_conditions",
    "invoice_page",
    "item_keys",
    "list_invoices",
    "mark_paid",
    "parse_invoice_reference",
    "prepare_documents",
    "preview_invoice",
    "resolve_invoice",
    "set_tax_rate",
    "void_invoice",
    "write_documents",
    "write_drafts",
]
