"""Bulk actions over the invoices a filter matches: finalize, void, mark paid, export into a folder.

Why it is shaped this way:

* One pure rule (`skip_reason`) says in which statuses each action applies. An invoice in another status
  is skipped and counted under its reason, never an error, so running the same bulk action again is
  safe: what the first run did is skipped the second time ("already finalized", "already paid").
* Invoices are visited in id order, `batch_size` light rows (id, status, kind) at a time, and each one
  is acted on in its own transaction by the single-invoice function (`finalize_invoice`, `void_invoice`,
  `mark_paid`, the exports), so numbering, ledger bookings, events and every rule are exactly those of
  the one-at-a-time commands. One invoice refused by a rule is counted as failed with its message and the
  walk goes on. Id order also finalizes an invoice before the corrections of it (written later).
* A walk is bounded: at most `limit` invoices are examined, and inside a request with a time budget it
  stops early, before the deadline, with `next_after_id` to continue from (at least one invoice is
  handled per call, so a caller that continues always makes progress).
* Another writer may change an invoice between the scan and the action (two operators finalizing the
  same month). When the action is refused, the invoice's status is read again: if the action no longer
  applies it is counted as skipped for that reason, not as a failure.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from invoicing.documents._export import export_invoice
from invoicing.documents._invoice import (
    OPEN,
    STATUSES,
    Invoice,
    InvoiceFilter,
    finalize_invoice,
    invoice_conditions,
    mark_paid,
    void_invoice,
)
from invoicing.documents._numbers import number_label
from invoicing.tables import invoices
from metering.deadline import checkpoint, current
from metering.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound

ACTIONS = ("finalize", "void", "mark_paid", "export")
#: The statuses each action applies to (a finalized credit note cannot be voided or paid: `skip_reason`).
APPLIES_TO: dict[str, tuple[str, ...]] = {
    "finalize": ("draft",),
    "void": ("draft", "finalized"),
    "mark_paid": OPEN,
    "export": tuple(s for s in STATUSES if s != "closed"),
}
EXPORT_FORMATS = ("pdf", "csv", "json")
#: Most invoices one bulk call may examine when the caller bounds it (the API always does).
BULK_LIMIT_MAX = 100_000
BATCH_SIZE_MAX = 1_000
#: Failure messages a summary keeps (the count covers them all).
ERRORS_KEPT = 20
#: Domain refusals of one invoice: counted as failures while the walk goes on. Anything else (the database
#: gone, a full disk, the request's deadline) stops the walk: what was done is committed and a re-run resumes.
_REFUSALS = (FailedPrecondition, InvalidArgument, NotFound, AlreadyExists)

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class Walk:
    """How a bulk action goes over the invoices its filter matches: after which id it starts, how many it
    examines at most (None: all), how many light rows it reads at a time, whether it only counts what it
    would do (`dry_run`), and whom it tells of its progress (`progress(examined, total)`)."""

    after_id: int = 0
    limit: int | None = None
    dry_run: bool = False
    batch_size: int = 200
    progress: Progress | None = None


def skip_reason(action: str, status: str, kind: str) -> str | None:
    """Why `action` does not apply to an invoice in `status` of `kind` (invoice, adjustment, credit_note);
    None when it does. The wording is what a summary prints next to the count."""
    if action not in ACTIONS:
        raise InvalidArgument(f"action {action!r}: one of {', '.join(ACTIONS)}")
    if status == "closed":
        return "closed (zero total, never issued)"
    if action == "export":
        return None
    if action == "finalize":
        return None if status == "draft" else ("void" if status == "void" else "already finalized")
    if action == "void":
        if status == "finalized" and kind == "credit_note":
            return "a finalized credit note (correct the invoice again instead)"
        if status in ("draft", "finalized"):
            return None
        if status in ("partially_paid", "paid"):
            return "has payments (issue a credit note instead)"
        return "already void" if status == "void" else status
    if kind == "credit_note":  # mark_paid
        return "a credit note (nothing is due on it)"
    if status in OPEN:
        return None
    return {"paid": "already paid", "draft": "a draft (finalize it first)"}.get(status, status)


@dataclass
class BulkSummary:
    """What a bulk action did. `done` counts invoices acted on (with `dry_run`, those it would act on)."""

    action: str
    dry_run: bool
    filter: InvoiceFilter
    examined: int = 0
    done: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count
    failed: int = 0
    errors: list[str] = field(default_factory=list)  # the first ERRORS_KEPT, "INV-000003 (id 7): why"
    done_ids: list[int] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)  # export: files written (unchanged ones are not)
    #: More invoices match after this id (the limit or the time budget ended the walk): pass it as
    #: `after_id` to continue. None when every matching invoice was examined.
    next_after_id: int | None = None
    stopped_by: str = ""  # "limit" or "time" when next_after_id is set

    @property
    def applies_to(self) -> tuple[str, ...]:
        return APPLIES_TO[self.action]

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def _skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def _fail(self, invoice_id: int, number: int | None, series: str | None, message: str) -> None:
        self.failed += 1
        if len(self.errors) < ERRORS_KEPT:
            self.errors.append(f"{_label(invoice_id, number, series)}: {message}")


def _label(invoice_id: int, number: int | None, series: str | None) -> str:
    if number is None:
        return f"invoice {invoice_id}"
    return f"{number_label(number, series)} (id {invoice_id})"


def count_matching(engine: Engine, tenant_id: int, where: InvoiceFilter, after_id: int = 0) -> int:
    """How many invoices `where` matches after `after_id` (what a progress bar counts to)."""
    conds = invoice_conditions(engine, tenant_id, where)
    query = select(func.count()).select_from(invoices).where(*conds, invoices.c.id > after_id)
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def _out_of_time() -> bool:
    """Inside a request: stop while a quarter of the budget (at most 5 s) is left, to answer in time."""
    budget = current()
    if budget is None or budget.seconds is None:
        return False
    left = budget.remaining()
    return left is not None and left < min(budget.seconds / 4, 5.0)


def _walk(
    engine: Engine,
    tenant_id: int,
    where: InvoiceFilter,
    action: str,
    act: Callable[[int], bool],
    walk: Walk,
) -> BulkSummary:
    """Visit the invoices `where` matches after `after_id` in id order; `act(id)` does the action (False:
    nothing needed doing, counted as skipped "unchanged") and raises a domain error to refuse it."""
    after_id, limit, dry_run, batch_size, progress = (
        walk.after_id,
        walk.limit,
        walk.dry_run,
        walk.batch_size,
        walk.progress,
    )
    if limit is not None and not 1 <= limit <= BULK_LIMIT_MAX:
        raise InvalidArgument(f"limit {limit}: 1 to {BULK_LIMIT_MAX:,} invoices, or no limit")
    if not 1 <= batch_size <= BATCH_SIZE_MAX:
        raise InvalidArgument(f"batch size {batch_size}: 1 to {BATCH_SIZE_MAX:,}")
    if after_id < 0:
        raise InvalidArgument(f"after {after_id}: an invoice id (0 or more) to start after")
    summary = BulkSummary(action, dry_run, where)
    conds = invoice_conditions(engine, tenant_id, where)
    i = invoices.c
    total = 0
    if progress is not None:
        total = count_matching(engine, tenant_id, where, after_id)
        total = total if limit is None else min(total, limit)
        progress(0, total)
    cursor = after_id
    handled = 0
    while True:
        checkpoint()
        want = batch_size if limit is None else min(batch_size, limit - summary.examined)
        if want <= 0:
            break
        with engine.connect() as conn:
            rows = conn.execute(
                select(i.id, i.status, i.kind, i.number, i.number_series)
                .where(*conds, i.id > cursor).order_by(i.id).limit(want)
            ).all()  # fmt: skip
        for row in rows:
            if handled and _out_of_time():
                summary.next_after_id, summary.stopped_by = cursor, "time"
                return summary
            checkpoint()
            invoice_id = int(row.id)
            summary.examined += 1
            reason = skip_reason(action, row.status, row.kind)
            if reason is not None:
                summary._skip(reason)
            elif dry_run:
                summary.done += 1
                summary.done_ids.append(invoice_id)
            else:
                handled += 1
                _act_on(engine, tenant_id, summary, act, row)
            cursor = invoice_id
            if progress is not None:
                progress(summary.examined, total)
        if len(rows) < want:
            return summary
    with engine.connect() as conn:  # the limit ended the walk: does anything match after it?
        more = conn.execute(select(i.id).where(*conds, i.id > cursor).limit(1)).first()
    if more is not None:
        summary.next_after_id, summary.stopped_by = cursor, "limit"
    return summary


def _act_on(engine: Engine, tenant_id: int, summary: BulkSummary, act: Callable[[int], bool], row: Any) -> None:
    invoice_id = int(row.id)
    try:
        changed = act(invoice_id)
    except _REFUSALS as exc:
        # Changed since the scan (another writer got there first)? Then it is a skip, not a failure.
        i = invoices.c
        with engine.connect() as conn:
            now = conn.execute(select(i.status, i.kind).where(i.id == invoice_id)).first()
        reason = None if now is None else skip_reason(summary.action, now.status, now.kind)
        if reason is not None:
            summary._skip(reason)
        else:
            summary._fail(invoice_id, row.number, row.number_series, str(exc))
        return
    if changed:
        summary.done += 1
        summary.done_ids.append(invoice_id)
    else:
        summary._skip("unchanged since the last export")


def bulk_finalize(
    engine: Engine,
    tenant_id: int,
    where: InvoiceFilter,
    now: datetime,
    walk: Walk = Walk(),
) -> BulkSummary:
    """Finalize every draft `where` matches, in id order (numbers follow ids): each takes its series' next
    number. Anything not a draft is skipped and counted ("already finalized", "void", "closed ...")."""

    def act(invoice_id: int) -> bool:
        finalize_invoice(engine, tenant_id, invoice_id, now)
        return True

    return _walk(engine, tenant_id, where, "finalize", act, walk)


def bulk_void(
    engine: Engine,
    tenant_id: int,
    where: InvoiceFilter,
    now: datetime,
    reason: str,
    walk: Walk = Walk(),
    *,
    reissue: bool = False,
) -> BulkSummary:
    """Void every draft and unpaid finalized invoice `where` matches, each with `reason` (required: a mass
    void is explained on every document it touches). The filter must name at least one criterion, so that
    no caller voids a whole tenant by leaving it empty; `status="draft"` voids every draft."""
    if not reason.strip():
        raise InvalidArgument("reason is required: say why these invoices are voided (it is kept on each)")
    if len(reason) > 500:
        raise InvalidArgument(f"reason is {len(reason)} characters; at most 500")
    if where.is_empty:
        raise InvalidArgument(
            "the filter is empty: voiding needs at least one criterion (customer, status, plan or a period); "
            "status draft voids every draft"
        )

    def act(invoice_id: int) -> bool:
        void_invoice(engine, tenant_id, invoice_id, now, reason, reissue=reissue)
        return True

    return _walk(engine, tenant_id, where, "void", act, walk)


def bulk_mark_paid(
    engine: Engine,
    tenant_id: int,
    where: InvoiceFilter,
    now: datetime,
    walk: Walk = Walk(),
) -> BulkSummary:
    """Record a payment of everything still due, dated `now`, on every open invoice `where` matches (as
    `mark_paid` does one: method `other`, an idempotency key per invoice, so a re-run pays nothing twice)."""

    def act(invoice_id: int) -> bool:
        mark_paid(engine, tenant_id, invoice_id, now)
        return True

    return _walk(engine, tenant_id, where, "mark_paid", act, walk)


def export_filename(invoice: Invoice, fmt: str) -> str:
    """`INV-000042.pdf`, `CN-000003.csv`, `draft-12.json`: the label, which is unique per tenant."""
    return f"{invoice.label.replace(' ', '-')}.{fmt}"


def render_invoice(engine: Engine, tenant_id: int, invoice_id: int, fmt: str) -> tuple[Invoice, bytes]:
    """One invoice as the bytes of a PDF, CSV or JSON document, with its parties (`invoice_document`)."""
    from invoicing.documents._pdf import invoice_document, render_invoice_pdf

    doc = invoice_document(engine, tenant_id, invoice_id)
    if fmt == "pdf":
        return doc.invoice, render_invoice_pdf(doc.invoice, doc.customer, doc.profile, doc.context)
    text = export_invoice(doc.invoice, fmt, customer=doc.customer, profile=doc.profile, plan_code=doc.context.plan_code)
    return doc.invoice, text.encode()


def _write_atomically(path: Path, data: bytes) -> None:
    """Write through a temporary file in the same folder and rename it: a reader, or a crash, never sees
    half a document under the final name."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_formats(formats: Sequence[str]) -> tuple[str, ...]:
    out = tuple(dict.fromkeys(f.lower() for f in formats))
    if not out:
        raise InvalidArgument(f"formats: give at least one of {', '.join(EXPORT_FORMATS)}")
    bad = [f for f in out if f not in EXPORT_FORMATS]
    if bad:
        raise InvalidArgument(f"format {bad[0]!r}: one of {', '.join(EXPORT_FORMATS)}")
    return out


def bulk_export(
    engine: Engine,
    tenant_id: int,
    where: InvoiceFilter,
    folder: Path,
    formats: Sequence[str] = ("pdf",),
    walk: Walk = Walk(),
) -> BulkSummary:
    """Write each invoice `where` matches into `folder` (created if missing) in each of `formats`, named by
    `export_filename`. An invoice's documents are all rendered before any is written, so a refusal (a PDF
    that cannot be set) writes none of them. A file already holding the same bytes is left alone, so a
    re-run writes only what changed (a stored invoice always renders to the same bytes)."""
    fmts = check_formats(formats)
    if folder.exists() and not folder.is_dir():
        raise InvalidArgument(f"{folder} is a file; give a folder to export into")
    summary_files: list[Path] = []

    def act(invoice_id: int) -> bool:
        rendered = [render_invoice(engine, tenant_id, invoice_id, fmt) for fmt in fmts]
        changed = False
        for fmt, (inv, data) in zip(fmts, rendered, strict=True):
            path = folder / export_filename(inv, fmt)
            if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
                continue
            _write_atomically(path, data)
            summary_files.append(path)
            changed = True
        return changed

    if not walk.dry_run:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            why = (exc.strerror or type(exc).__name__).lower()
            raise InvalidArgument(
                f"cannot create the folder {folder} ({why}); give a folder you can write to"
            ) from None
    summary = _walk(engine, tenant_id, where, "export", act, walk)
    summary.files = summary_files
    return summary


__all__ = [
    "ACTIONS",
    "APPLIES_TO",
    "BULK_LIMIT_MAX",
    "EXPORT_FORMATS",
    "BulkSummary",
    "Walk",
    "bulk_export",
    "bulk_finalize",
    "bulk_mark_paid",
    "bulk_void",
    "count_matching",
    "export_filename",
    "render_invoice",
    "skip_reason",
]
