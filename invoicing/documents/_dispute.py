"""Disputes: a customer flags one line of an issued invoice with a reason; finance answers with a credit note
for a chosen amount of that line, or a rejection with a note; both sides read the outcome from the dispute.

Rules (docs/portal.md has the reasons):

* Only a line of an issued invoice (finalized, partially paid or paid; an invoice or an adjustment, not a
  credit note) that charges something (a positive `charge`, `minimum_true_up`, `cap_adjustment` or
  `proration_adjustment` line) can be flagged, and only while some of it is left to credit.
* One open dispute per line: the `disputes.open_line` column holds the line's position while the dispute is
  open, under a unique (invoice, open_line) constraint, so two flags racing each other cannot both land.
* A credit is a credit note (its own number in the credit note series) with one `line_credit` line of minus
  the amount, taxed at the invoice's rate, issued in the same transaction that resolves the dispute: it pays
  down what the invoice still owes and the rest goes to the customer's cash wallet, exactly as a correction's
  credit note does (`finalize_in`, `_booking.book_credit_balance`). Its key is derived from the dispute, so a
  dispute can never produce two credit notes.
* The amount is at most what the line can still be credited: its amount, plus or minus what corrections of
  the invoice changed on it, less earlier credits of that line (void documents do not count).
* Resolving is idempotent: the same decision again returns the dispute unchanged (`changed` False); another
  decision on a resolved dispute is refused, because the first one is already known to the customer.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import ColumnElement

from invoicing.catalog import get_customer, stored_utc, utc
from invoicing.documents._invoice import (
    _NOT_RECOMPUTED,
    _identity,
    finalize_in,
    write_drafts,
)
from invoicing.documents._numbers import number_label
from invoicing.documents._rater import DraftInvoice, DraftLine
from invoicing.events import NewEvent, emit
from invoicing.ledger.transfer import write_transaction
from invoicing.tables import customers, disputes, invoice_lines, invoices
from metering.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from metering.text import control_problem
from rating.unit import currency as currency_unit

#: open → credited | rejected; a resolution is final.
DISPUTE_STATUSES = ("open", "credited", "rejected")
DECISIONS = ("credit", "reject")
#: Invoice statuses whose lines can be flagged and credited: issued and not void or written off.
FLAGGABLE = ("finalized", "partially_paid", "paid")
#: Line kinds that bill something (a positive one can be disputed); tax, credits, points and discounts cannot.
DISPUTABLE_KINDS = ("charge", "minimum_true_up", "cap_adjustment", "proration_adjustment")
REASON_MAX = 1000
NOTE_MAX = 1000
ACTOR_MAX = 100
#: Most disputes one page may hold.
PAGE_LIMIT_MAX = 1000
_ID_MAX = 2**31 - 1


@dataclass(frozen=True, slots=True)
class Dispute:
    id: int
    invoice_id: int
    invoice_label: str  # INV-000042
    line_position: int
    charge: str  # the line's charge code
    meter: str | None
    line_kind: str
    customer: str  # external id
    currency: str
    line_amount: int  # minor units, as the line bills it
    reason: str
    status: str  # open | credited | rejected
    opened_by: str
    opened_at: datetime
    resolved_by: str | None = None
    resolved_at: datetime | None = None
    note: str | None = None
    credit_amount: int | None = None  # minor units credited (before tax)
    credit_note_id: int | None = None
    credit_note_label: str | None = None
    #: False when the call found the dispute already so (a repeated resolution): nothing was written.
    changed: bool = True

    def money(self, minor: int | None) -> str | None:
        """Minor units as an exact decimal string in the dispute's currency."""
        if minor is None:
            return None
        return format(Decimal(minor).scaleb(-currency_unit(self.currency).scale), "f")

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "invoice_id": self.invoice_id, "invoice": self.invoice_label, "line": self.line_position,
            "charge": self.charge, "meter": self.meter, "line_kind": self.line_kind, "customer": self.customer,
            "currency": self.currency, "line_amount": self.money(self.line_amount), "reason": self.reason,
            "status": self.status, "opened_by": self.opened_by, "opened_at": self.opened_at.isoformat(),
            "resolved_by": self.resolved_by,
            "resolved_at": None if self.resolved_at is None else self.resolved_at.isoformat(),
            "note": self.note, "credit_amount": self.money(self.credit_amount), "credit_note_id": self.credit_note_id,
            "credit_note": self.credit_note_label,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class DisputePage:
    disputes: list[Dispute]
    #: Pass as `after_id` for the next page; None when this page is the last.
    next_after_id: int | None


# --- checks ---------------------------------------------------------------------------------------------------
def _text(value: str, field: str, limit: int, *, required: bool) -> str:
    text = value.strip()
    if required and not text:
        raise InvalidArgument(f"{field} is required: say in a few words what is wrong")
    if len(text) > limit:
        raise InvalidArgument(f"{field} is {len(text)} characters; at most {limit}")
    problem = control_problem(text, field)
    if problem is not None:
        raise InvalidArgument(problem)
    return text


def _actor(actor: str) -> str:
    if not 1 <= len(actor) <= ACTOR_MAX:
        raise InvalidArgument(f"actor: 1 to {ACTOR_MAX} characters naming who acts (e.g. 'portal', 'api key 3')")
    return actor


def _label(row: Any) -> str:
    if row.number is None:
        return f"draft {row.id}"
    return number_label(int(row.number), row.number_series)


def _exact(minor: int, currency: str) -> str:
    return format(Decimal(minor).scaleb(-currency_unit(currency).scale), "f")


def _invoice_row(conn: Connection, tenant_id: int, invoice_id: int, customer_id: int | None, lock: bool) -> Any:
    """The invoice, locked on PostgreSQL so credits on one invoice serialise; another customer's (when
    `customer_id` is given) is as absent as one that does not exist."""
    if not 1 <= invoice_id <= _ID_MAX:
        raise InvalidArgument(f"invoice id {invoice_id}: ids run from 1 to {_ID_MAX}")
    i = invoices.c
    query = select(invoices).where(i.tenant_id == tenant_id, i.id == invoice_id)
    row = conn.execute(query.with_for_update() if lock else query).first()
    if row is None or (customer_id is not None and int(row.customer_id) != customer_id):
        raise NotFound(f"no invoice {invoice_id}; list them with `tally invoice list TENANT`")
    return row


def _line_row(conn: Connection, invoice: Any, position: int) -> Any:
    ln = invoice_lines.c
    if not 1 <= position <= _ID_MAX:
        raise InvalidArgument(f"line {position}: lines are numbered from 1, as the invoice prints them")
    row = conn.execute(select(invoice_lines).where(ln.invoice_id == invoice.id, ln.position == position)).first()
    if row is None:
        count = conn.execute(select(ln.position).where(ln.invoice_id == invoice.id)).all()
        raise NotFound(f"invoice {_label(invoice)} has no line {position}; its lines are 1 to {len(count)}")
    return row


def _check_flaggable(invoice: Any, line: Any) -> None:
    label = _label(invoice)
    if invoice.kind == "credit_note":
        raise FailedPrecondition(f"{label} is a credit note; flag the line on the invoice it corrects")
    if invoice.status not in FLAGGABLE:
        raise FailedPrecondition(
            f"invoice {label} is {invoice.status}; only a line of an issued invoice (finalized, partially paid or "
            "paid) can be disputed or credited"
        )
    if line.kind not in DISPUTABLE_KINDS or int(line.amount) <= 0:
        raise FailedPrecondition(
            f"line {line.position} of {label} is a {line.kind.replace('_', ' ')} line of "
            f"{_exact(int(line.amount), invoice.currency)} {invoice.currency}; only a line that charges something "
            "can be disputed"
        )


def _discounted(conn: Connection, invoice: Any, position: int) -> int:
    """Minor units the invoice's discount lines took off line `position` (0 or more).

    A discount line records how it was spread over the lines it took from (`detail["allocation"]`: item,
    charge, group and amount, in the order of the lines). Credit can only give back what the customer was
    charged for the line, so that share comes off what is creditable: a 10 % coupon on a $30 line leaves
    $27 to credit, not $30. Entries are matched to the invoice's positive lines in position order, so two
    lines with the same charge, group and item each get their own share."""
    ln = invoice_lines.c
    rows = conn.execute(
        select(ln.position, ln.kind, ln.charge_code, ln.group_key, ln.amount, ln.lineage, ln.detail)
        .where(ln.invoice_id == invoice.id)
        .order_by(ln.position)
    ).all()
    discounts = [json.loads(r.detail).get("allocation", []) for r in rows if r.kind == "discount"]
    if not discounts:
        return 0
    lines = [
        (int(r.position), (r.charge_code, r.group_key, json.loads(r.lineage).get("item")))
        for r in rows
        if r.kind not in _NOT_RECOMPUTED and int(r.amount) > 0
    ]
    taken = 0
    for allocation in discounts:
        used: set[int] = set()
        for entry in allocation:
            key = (entry.get("charge"), entry.get("group"), entry.get("item"))
            pos = next((p for p, k in lines if k == key and p not in used), None)
            if pos is None:
                continue
            used.add(pos)
            if pos == position:
                taken += int(entry.get("amount", 0))
    return taken


def _creditable(conn: Connection, tenant_id: int, invoice: Any, line: Any) -> int:
    """What line `line` of `invoice` can still be credited, in minor units (never below 0): the line less
    what the invoice's discounts took off it, what live corrections of the invoice changed on it (same
    charge, group and due item), less earlier credits of that very line."""
    i, ln = invoices.c, invoice_lines.c
    item = str(json.loads(line.lineage).get("item", invoice.idempotency_key))
    ident = _identity(line.kind, line.charge_code, line.group_key, item)
    left = int(line.amount) - _discounted(conn, invoice, int(line.position))
    rows = conn.execute(
        select(ln.kind, ln.charge_code, ln.group_key, ln.amount, ln.lineage)
        .join(invoices, i.id == ln.invoice_id)
        .where(i.tenant_id == tenant_id, i.corrects_invoice_id == invoice.id, i.status != "void")
    ).all()
    for r in rows:
        lineage = json.loads(r.lineage)
        if r.kind == "line_credit":
            if lineage.get("line") == int(line.position):
                left += int(r.amount)
        elif r.kind not in _NOT_RECOMPUTED:
            other = _identity(r.kind, r.charge_code, r.group_key, str(lineage.get("item", invoice.idempotency_key)))
            if other == ident:
                left += int(r.amount)
    return max(left, 0)


def creditable(engine: Engine, tenant_id: int, invoice_id: int, position: int) -> int:
    """What line `position` of invoice `invoice_id` can still be credited (minor units of its currency)."""
    with engine.connect() as conn:
        invoice = _invoice_row(conn, tenant_id, invoice_id, None, lock=False)
        return _creditable(conn, tenant_id, invoice, _line_row(conn, invoice, position))


# --- reading ----------------------------------------------------------------------------------------------------
def _select(tenant_id: int) -> Any:
    d, i, ln, c = disputes.c, invoices.c, invoice_lines.c, customers.c
    note = invoices.alias("credit_note")
    n = note.c
    return (
        select(
            disputes, i.number, i.number_series, ln.charge_code, ln.meter, ln.kind.label("line_kind"),
            c.external_id, n.number.label("note_number"), n.number_series.label("note_series"),
        )
        .join(invoices, i.id == d.invoice_id)
        .join(invoice_lines, (ln.invoice_id == d.invoice_id) & (ln.position == d.line_position))
        .join(customers, c.id == d.customer_id)
        .outerjoin(note, n.id == d.credit_note_id)
        .where(d.tenant_id == tenant_id)
    )  # fmt: skip


def _dispute(r: Any, changed: bool = True) -> Dispute:
    label = number_label(int(r.number), r.number_series) if r.number is not None else ""
    note_label = None
    if r.credit_note_id is not None:
        note_label = (
            number_label(int(r.note_number), r.note_series, "credit_note")
            if r.note_number is not None else f"draft {r.credit_note_id}"
        )  # fmt: skip
    return Dispute(
        id=int(r.id), invoice_id=int(r.invoice_id), invoice_label=label, line_position=int(r.line_position),
        charge=r.charge_code, meter=r.meter, line_kind=r.line_kind, customer=r.external_id, currency=r.currency,
        line_amount=int(r.line_amount), reason=r.reason, status=r.status, opened_by=r.opened_by,
        opened_at=stored_utc(r.opened_at), resolved_by=r.resolved_by,
        resolved_at=None if r.resolved_at is None else stored_utc(r.resolved_at), note=r.note,
        credit_amount=None if r.credit_amount is None else int(r.credit_amount),
        credit_note_id=None if r.credit_note_id is None else int(r.credit_note_id), credit_note_label=note_label,
        changed=changed,
    )  # fmt: skip


def _read(conn: Connection, tenant_id: int, dispute_id: int, customer_id: int | None = None) -> Dispute:
    if not 1 <= dispute_id <= _ID_MAX:
        raise InvalidArgument(f"dispute id {dispute_id}: ids run from 1 to {_ID_MAX}")
    query = _select(tenant_id).where(disputes.c.id == dispute_id)
    if customer_id is not None:
        query = query.where(disputes.c.customer_id == customer_id)
    row = conn.execute(query).first()
    if row is None:
        raise NotFound(f"no dispute {dispute_id}; list them with `tally dispute list TENANT`")
    return _dispute(row)


def get_dispute(engine: Engine, tenant_id: int, dispute_id: int, *, customer: str | None = None) -> Dispute:
    """One dispute; with `customer` (external id), another customer's is NotFound, as if it did not exist."""
    customer_id = None if customer is None else get_customer(engine, tenant_id, customer).id
    with engine.connect() as conn:
        return _read(conn, tenant_id, dispute_id, customer_id)


def dispute_page(
    engine: Engine,
    tenant_id: int,
    *,
    status: str | None = None,
    customer: str | None = None,
    invoice_id: int | None = None,
    after_id: int = 0,
    limit: int = 100,
) -> DisputePage:
    """Disputes by id (oldest first, so the queue is worked in the order customers asked), filtered by
    status, customer (external id; unknown: NotFound) and invoice; one row past the page says whether more
    follow."""
    if status is not None and status not in DISPUTE_STATUSES:
        raise InvalidArgument(f"status {status!r}: one of {', '.join(DISPUTE_STATUSES)}")
    if not 1 <= limit <= PAGE_LIMIT_MAX:
        raise InvalidArgument(f"limit {limit}: 1 to {PAGE_LIMIT_MAX} disputes a page")
    if not 0 <= after_id <= _ID_MAX:
        raise InvalidArgument(f"after {after_id}: a dispute id (0 or more) to start after")
    d = disputes.c
    conds: list[ColumnElement[bool]] = [d.id > after_id]
    if status is not None:
        conds.append(d.status == status)
    if customer is not None:
        conds.append(d.customer_id == get_customer(engine, tenant_id, customer).id)
    if invoice_id is not None:
        conds.append(d.invoice_id == invoice_id)
    with engine.connect() as conn:
        rows = conn.execute(_select(tenant_id).where(*conds).order_by(d.id).limit(limit + 1)).all()
    found = [_dispute(r) for r in rows[:limit]]
    return DisputePage(found, found[-1].id if len(rows) > limit and found else None)


def list_disputes(engine: Engine, tenant_id: int, **criteria: Any) -> list[Dispute]:
    """`dispute_page(...).disputes`."""
    return dispute_page(engine, tenant_id, **criteria).disputes


# --- events ---------------------------------------------------------------------------------------------------------
def _event(conn: Connection, tenant_id: int, name: str, dispute: Dispute) -> None:
    data: dict[str, Any] = {
        "dispute_id": dispute.id, "invoice_id": dispute.invoice_id, "invoice": dispute.invoice_label,
        "line": dispute.line_position, "charge": dispute.charge, "currency": dispute.currency,
        "line_amount": dispute.money(dispute.line_amount), "status": dispute.status, "reason": dispute.reason,
    }  # fmt: skip
    if dispute.status == "credited":
        data |= {"credit_amount": dispute.money(dispute.credit_amount), "credit_note_id": dispute.credit_note_id}
    elif dispute.status == "rejected":
        data["note"] = dispute.note
    emit(conn, tenant_id, [NewEvent(name, dispute.customer, data)])


# --- opening ----------------------------------------------------------------------------------------------------
def open_dispute(
    engine: Engine,
    tenant_id: int,
    invoice_id: int,
    line: int,
    reason: str,
    now: datetime,
    *,
    customer: str | None = None,
    actor: str = "api",
) -> Dispute:
    """Flag line `line` of invoice `invoice_id` with `reason`. `customer` (external id): the invoice must be
    theirs (the portal passes its session's customer), else it is NotFound like one that does not exist.
    ALREADY_EXISTS when the line has an open dispute; announced as `dispute.opened`."""
    text = _text(reason, "reason", REASON_MAX, required=True)
    who = _actor(actor)
    customer_id = None if customer is None else get_customer(engine, tenant_id, customer).id

    def run(conn: Connection) -> int:
        invoice = _invoice_row(conn, tenant_id, invoice_id, customer_id, lock=True)
        row = _line_row(conn, invoice, line)
        _check_flaggable(invoice, row)
        label = _label(invoice)
        d = disputes.c
        taken = conn.execute(
            select(d.id).where(d.tenant_id == tenant_id, d.invoice_id == invoice_id, d.open_line == line)
        ).scalar_one_or_none()
        if taken is not None:
            raise AlreadyExists(f"line {line} of {label} already has an open dispute ({taken}); its outcome is pending")
        if _creditable(conn, tenant_id, invoice, row) <= 0:
            raise FailedPrecondition(f"line {line} of {label} has already been credited in full")
        new_id = conn.execute(
            insert(disputes).values(
                tenant_id=tenant_id, customer_id=int(invoice.customer_id), invoice_id=invoice_id, line_position=line,
                open_line=line, reason=text, status="open", currency=invoice.currency, line_amount=int(row.amount),
                opened_by=who, opened_at=utc(now),
            ).returning(d.id)
        ).scalar_one()  # fmt: skip
        _event(conn, tenant_id, "dispute.opened", _read(conn, tenant_id, int(new_id)))
        return int(new_id)

    try:
        dispute_id = write_transaction(engine, run)
    except IntegrityError:  # a flag of the same line committed between our check and our insert
        raise AlreadyExists(f"line {line} of invoice {invoice_id} already has an open dispute") from None
    return get_dispute(engine, tenant_id, dispute_id)


# --- resolving --------------------------------------------------------------------------------------------------
def _line_credit_draft(invoice: Any, line: Any, customer: str, amount: int, key: str, dispute_id: int) -> DraftInvoice:
    """A credit note of minus `amount` on `line`, under the invoice's own tax rule (so tax is credited in
    proportion), dated like the invoice it corrects."""
    scale = currency_unit(invoice.currency).scale
    credit = DraftLine(
        kind="line_credit", charge_code=line.charge_code, meter=line.meter, group_key=line.group_key,
        plan_version_id=line.plan_version_id, period_start=stored_utc(line.period_start),
        period_end=stored_utc(line.period_end), quantity_units=0, quantity_scale=0, unit_price=None, amount=-amount,
        amount_exact=format(Decimal(-amount).scaleb(-scale), "f"),
        detail={"credited_line": int(line.position), "line_amount": int(line.amount), "dispute": dispute_id},
        lineage={"corrects_invoice": int(invoice.id), "line": int(line.position), "dispute": dispute_id,
                 "item": str(json.loads(line.lineage).get("item", invoice.idempotency_key)), "rule": "dispute"},
    )  # fmt: skip
    return DraftInvoice(
        key=key, subscription_id=invoice.subscription_id, customer_id=int(invoice.customer_id),
        customer_external_id=customer, plan_version_id=invoice.plan_version_id, currency=invoice.currency,
        timing=invoice.timing, period_start=stored_utc(invoice.period_start), period_end=stored_utc(invoice.period_end),
        span_start=stored_utc(invoice.span_start), span_end=stored_utc(invoice.span_end),
        due_at=stored_utc(invoice.due_at), tax_region=invoice.tax_region, tax_rate=Decimal(invoice.tax_rate),
        tax_inclusive=bool(invoice.tax_inclusive), lines=[credit],
    )  # fmt: skip


def _issue_credit(conn: Connection, tenant_id: int, dispute: Any, amount: int, customer: str, now: datetime) -> int:
    """Write and issue the dispute's credit note in the caller's transaction; its id."""
    invoice = _invoice_row(conn, tenant_id, int(dispute.invoice_id), None, lock=True)
    line = _line_row(conn, invoice, int(dispute.line_position))
    _check_flaggable(invoice, line)
    left = _creditable(conn, tenant_id, invoice, line)
    if amount > left:
        ccy = invoice.currency
        taken = _discounted(conn, invoice, int(line.position))
        off = f", its discounts took {_exact(taken, ccy)} {ccy}" if taken else ""
        raise InvalidArgument(
            f"amount {_exact(amount, ccy)} {ccy} is more than line {line.position} of {_label(invoice)} can still be "
            f"credited: {_exact(left, ccy)} {ccy} (the line bills {_exact(int(line.amount), ccy)} {ccy}{off})"
        )
    key = f"{invoice.idempotency_key}|dispute:{int(dispute.id)}"[:255]
    draft = _line_credit_draft(invoice, line, customer, amount, key, int(dispute.id))
    events: list[NewEvent] = []
    written = write_drafts(conn, tenant_id, [draft], now, kind="correction", corrects={key: int(invoice.id)},
                           events=events)  # fmt: skip
    if key not in written:  # the key exists: only an earlier resolution of this dispute can have written it
        raise FailedPrecondition(f"dispute {dispute.id} already has a credit note; it was resolved concurrently")
    emit(conn, tenant_id, events)
    note_id = written[key]
    finalize_in(conn, tenant_id, note_id, now)
    return note_id


def resolve_dispute(
    engine: Engine,
    tenant_id: int,
    dispute_id: int,
    decision: str,
    now: datetime,
    *,
    amount: int | None = None,
    note: str = "",
    actor: str = "api",
) -> Dispute:
    """Answer an open dispute: `decision` "credit" issues a credit note of `amount` (minor units, before tax)
    on the disputed line; "reject" closes it with `note` (required: the customer reads it). The same decision
    again returns the dispute unchanged (`changed` False); a different one on a resolved dispute is refused.
    Announced as `dispute.resolved` (the credit note also as `credit_note.created` and `invoice.finalized`)."""
    if decision not in DECISIONS:
        raise InvalidArgument(f"decision {decision!r}: credit (with an amount) or reject (with a note)")
    if decision == "credit":
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise InvalidArgument("amount: a credit is a positive amount of the invoice's currency, e.g. 12.50")
        text = _text(note, "note", NOTE_MAX, required=False)
    else:
        if amount is not None:
            raise InvalidArgument("amount: a rejection credits nothing; leave the amount out")
        text = _text(note, "note", NOTE_MAX, required=True)
    who = _actor(actor)
    status = "credited" if decision == "credit" else "rejected"

    if not 1 <= dispute_id <= _ID_MAX:
        raise InvalidArgument(f"dispute id {dispute_id}: ids run from 1 to {_ID_MAX}")

    def run(conn: Connection) -> tuple[int, bool]:
        d = disputes.c
        query = select(disputes).where(d.tenant_id == tenant_id, d.id == dispute_id)
        row = conn.execute(query.with_for_update()).first()
        if row is None:
            raise NotFound(f"no dispute {dispute_id}; list them with `tally dispute list TENANT`")
        if row.status != "open":
            same = (
                row.status == status
                and (row.note or "") == text
                and (status == "rejected" or (row.credit_amount is not None and int(row.credit_amount) == amount))
            )
            if same:
                return dispute_id, False
            was = (f"credited {_exact(int(row.credit_amount), row.currency)} {row.currency}"
                   if row.status == "credited" else "rejected")  # fmt: skip
            raise FailedPrecondition(
                f"dispute {dispute_id} was already {was}; a resolution is final (the customer has seen it)"
            )
        customer = str(conn.execute(select(customers.c.external_id).where(customers.c.id == row.customer_id))
                       .scalar_one())  # fmt: skip
        note_id = _issue_credit(conn, tenant_id, row, amount or 0, customer, now) if status == "credited" else None
        done = conn.execute(
            update(disputes).where(d.id == dispute_id, d.status == "open").values(
                status=status, open_line=None, resolved_by=who, resolved_at=utc(now), note=text or None,
                credit_amount=amount if status == "credited" else None, credit_note_id=note_id,
            )
        ).rowcount  # fmt: skip
        if not done:
            raise FailedPrecondition(f"dispute {dispute_id} was resolved concurrently; read it again")
        _event(conn, tenant_id, "dispute.resolved", _read(conn, tenant_id, dispute_id))
        return dispute_id, True

    found, changed = write_transaction(engine, run)
    with engine.connect() as conn:
        out = _read(conn, tenant_id, found)
    return out if changed else replace(out, changed=False)


def latest_disputes(engine: Engine, tenant_id: int, invoice_ids: Sequence[int]) -> dict[tuple[int, int], Dispute]:
    """The latest dispute of each (invoice, line) of these invoices: what a page of invoice lines shows."""
    out: dict[tuple[int, int], Dispute] = {}
    ids = sorted(set(invoice_ids))
    with engine.connect() as conn:
        for k in range(0, len(ids), 900):
            for r in conn.execute(_select(tenant_id).where(disputes.c.invoice_id.in_(ids[k : k + 900]))
                                  .order_by(disputes.c.id)):  # fmt: skip
                out[(int(r.invoice_id), int(r.line_position))] = _dispute(r)
    return out


__all__ = [
    "DECISIONS",
    "DISPUTABLE_KINDS",
    "DISPUTE_STATUSES",
    "FLAGGABLE",
    "NOTE_MAX",
    "PAGE_LIMIT_MAX",
    "REASON_MAX",
    "Dispute",
    "DisputePage",
    "creditable",
    "dispute_page",
    "get_dispute",
    "latest_disputes",
    "list_disputes",
    "open_dispute",
    "resolve_dispute",
]
