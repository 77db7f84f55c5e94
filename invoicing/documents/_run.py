"""The invoice run: everything due as of an instant becomes a draft invoice, exactly once.

    summary = run_cycle(engine, tenant_id, as_of)

1. `due_periods(as_of)` lists what is due. Each item is one unit of work, keyed by its stable `key`
   plus the end of its billed span (a span cut short later is new work: an adjustment).
2. Workers started for the same (tenant, as_of) share one `invoice_runs` row; the work items are
   inserted once (unique (run, key)).
3. Usage is streamed: each claimed batch extracts the usage of its own customers only
   (`period_columns(..., customers=...)`, once per distinct span window) and drops the previous
   batch's usage and per-item caches, so memory follows the batch size, not the tenant.
4. Loop: claim up to `batch_size` pending items in a transaction (`SELECT ... FOR UPDATE SKIP LOCKED`
   on PostgreSQL, so concurrent workers take disjoint batches; SQLite serialises writers with
   `BEGIN IMMEDIATE`), rate them in columnar batches, write each invoice with its lines and its ledger
   spends, mark the items done, commit. A worker killed mid-batch rolls back: its items are pending
   again and nothing of them was written. Invoices are unique per (tenant, key), so even two runs with
   different as_of never bill a period twice.
5. The batch's `invoice.created` / `credit_note.created` events are emitted as the last statement of
   that same transaction, in one insert: they commit with their invoices or vanish with them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from invoicing.catalog import stored_utc, utc
from invoicing.documents._invoice import BulkInsert, correction_draft, write_drafts_totals
from invoicing.documents._rater import DraftInvoice, Rater
from invoicing.events import NewEvent, emit
from invoicing.ledger.transfer import write_transaction
from invoicing.subscriptions import DueItem, due_periods
from invoicing.tables import invoice_run_items, invoice_runs, invoices
from metering.errors import InvalidArgument
from metering.transactions import begin_write

Progress = Callable[[int, int], None]
#: Work-item rows per insert when a run registers its items (bounds the transient row lists).
ADD_CHUNK = 20_000


@dataclass(slots=True)
class RunSummary:
    run_id: int
    as_of: datetime
    due: int = 0  # work items in the run
    created: int = 0  # invoices this worker wrote (adjustments included)
    adjustments: int = 0
    already_invoiced: int = 0
    failed: int = 0
    totals: dict[str, int] = field(default_factory=dict)  # currency → sum of totals, minor units
    credits: dict[str, int] = field(default_factory=dict)  # currency → credits applied, minor units
    errors: list[str] = field(default_factory=list)
    completed: bool = False


class InjectedFailure(RuntimeError):
    """Raised by the `fail_after` test hook to simulate a crash between two batches."""


def work_key(item: DueItem) -> str:
    return f"{item.key}@{utc(item.spans[-1].end).isoformat()}"


def _run_row(engine: Engine, tenant_id: int, as_of: datetime) -> int:
    r = invoice_runs.c
    for _ in range(3):
        with engine.connect() as conn:
            found = conn.execute(select(r.id).where(r.tenant_id == tenant_id, r.as_of == as_of)).scalar_one_or_none()
        if found is not None:
            return int(found)
        try:
            with begin_write(engine) as conn:
                return int(
                    conn.execute(
                        insert(invoice_runs)
                        .values(tenant_id=tenant_id, as_of=as_of, status="running", created_at=datetime.now(UTC))
                        .returning(r.id)
                    ).scalar_one()
                )
        except IntegrityError:
            continue  # another worker created it: read theirs
    raise RuntimeError("could not create or find the invoice run row")


def _add_items(engine: Engine, run_id: int, items: dict[str, DueItem]) -> None:
    c = invoice_run_items.c

    def run(conn: Connection) -> None:
        have = set(conn.execute(select(c.item_key).where(c.run_id == run_id)).scalars())
        write = BulkInsert(conn, invoice_run_items, ("run_id", "item_key", "subscription_id", "status"))
        rows: list[tuple[Any, ...]] = []
        for k, i in items.items():  # in `items` order (the claim order), ADD_CHUNK rows per executemany
            if k not in have:
                rows.append((run_id, k, i.subscription_id, "pending"))
                if len(rows) >= ADD_CHUNK:
                    write(rows)
                    rows = []
        write(rows)
        del have
        # Failed items are retried by every new invocation.
        conn.execute(update(invoice_run_items).where(c.run_id == run_id, c.status == "failed").values(status="pending"))

    write_transaction(engine, run)


def _claim(conn: Connection, run_id: int, limit: int) -> list[Any]:
    c = invoice_run_items.c
    query = select(c.id, c.item_key).where(c.run_id == run_id, c.status == "pending").order_by(c.id).limit(limit)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list(conn.execute(query).all())


def _originals(conn: Connection, tenant_id: int, keys: list[str]) -> dict[str, Any]:
    i = invoices.c
    out: dict[str, Any] = {}
    for k in range(0, len(keys), 900):
        for r in conn.execute(
            select(i.id, i.idempotency_key, i.timing, i.span_end, i.status).where(
                i.tenant_id == tenant_id, i.idempotency_key.in_(keys[k : k + 900])
            )
        ):
            out[r.idempotency_key] = r
    return out


#: How far ahead of this server's clock a run's `as_of` may be (another machine's clock may be ahead).
AS_OF_SKEW = timedelta(minutes=5)


def run_cycle(
    engine: Engine,
    tenant_id: int,
    as_of: datetime,
    progress: Progress | None = None,
    *,
    batch_size: int = 200,
    explain: bool = True,
    fail_after: int | None = None,
) -> RunSummary:
    """Invoice everything due as of `as_of` (see the module docstring). Safe to run again, and to run
    in several processes at once; returns what this worker did.

    `fail_after` is a test hook: raise `InjectedFailure` once this worker has written that many invoices.
    An `as_of` later than now (beyond `AS_OF_SKEW`) is refused: it would bill periods that have not
    ended, for usage that has not happened.
    """
    at = utc(as_of)
    latest = datetime.now(UTC) + AS_OF_SKEW
    if at > latest:
        raise InvalidArgument(
            f"as_of {at.isoformat()} is in the future (now is {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}); "
            f"a run bills what is due up to now, at most {int(AS_OF_SKEW.total_seconds())} s ahead for clock skew"
        )
    due = due_periods(engine, tenant_id, at)
    items = {work_key(i): i for i in due}
    run_id = _run_row(engine, tenant_id, at)
    summary = RunSummary(run_id, at, due=len(items))
    _add_items(engine, run_id, items)
    del due
    # Streaming: each batch loads its own customers and usage (`Rater.begin_batch`) and drops the last's.
    rater = Rater(engine, tenant_id, explain=explain)
    handled = 0
    if progress:
        progress(0, len(items))
    while True:
        if fail_after is not None and summary.created >= fail_after:
            raise InjectedFailure(f"injected failure after {summary.created} invoices")
        limit = batch_size if fail_after is None else max(1, min(batch_size, fail_after - summary.created))
        outcome = write_transaction(engine, partial(_batch, tenant_id=tenant_id, run_id=run_id, items=items,
                                                    rater=rater, limit=limit, at=at))  # fmt: skip
        if outcome is None:
            break
        n_claimed, written, adjustments, skipped, failures = outcome
        handled += n_claimed
        summary.created += len(written)
        summary.adjustments += adjustments
        summary.already_invoiced += skipped
        summary.failed += len(failures)
        summary.errors += failures
        for d, total, credits in written:
            summary.totals[d.currency] = summary.totals.get(d.currency, 0) + total
            summary.credits[d.currency] = summary.credits.get(d.currency, 0) + credits
        if progress:
            progress(min(handled, len(items)), len(items))
    summary.completed = _finish(engine, run_id)
    return summary


def _finish(engine: Engine, run_id: int) -> bool:
    c = invoice_run_items.c
    with begin_write(engine) as conn:
        left = conn.execute(select(c.id).where(c.run_id == run_id, c.status != "done").limit(1)).first()
        if left is None:
            conn.execute(
                update(invoice_runs)
                .where(invoice_runs.c.id == run_id, invoice_runs.c.status == "running")
                .values(status="completed", finished_at=datetime.now(UTC))
            )
    return left is None


BatchOutcome = tuple[int, list[tuple[DraftInvoice, int, int]], int, int, list[str]]


def _batch(
    conn: Connection, tenant_id: int, run_id: int, items: dict[str, DueItem], rater: Rater, limit: int, at: datetime
) -> BatchOutcome | None:
    claimed = _claim(conn, run_id, limit)
    if not claimed:
        return None
    failures: list[str] = []
    status: dict[int, tuple[str, int | None, str | None]] = {}
    mine = [(int(r.id), items.get(r.item_key), r.item_key) for r in claimed]
    for row_id, item, key in mine:
        if item is None:  # due in another worker's view only (its as_of differs): leave it to them
            status[row_id] = ("failed", None, f"{key}: not due as of {at.isoformat()} in this worker")
    present = [(row_id, item) for row_id, item, _ in mine if item is not None]
    originals = _originals(conn, tenant_id, [item.key for _, item in present])
    rater.begin_batch([item for _, item in present])
    fresh: list[tuple[int, DueItem]] = []
    cut: list[tuple[int, DueItem, Any]] = []
    skipped = 0
    for row_id, item in present:
        orig = originals.get(item.key)
        if orig is None:
            fresh.append((row_id, item))
        elif orig.timing == "in_advance" and orig.status != "void" and stored_utc(orig.span_end) != item.spans[-1].end:
            cut.append((row_id, item, orig))
        else:
            status[row_id] = ("done", int(orig.id), None)
            skipped += 1
    drafts: list[tuple[int, DraftInvoice]] = []
    for (row_id, _item), draft in _rate(rater, [i for _, i in fresh], failures, status, [r for r, _ in fresh]):
        drafts.append((row_id, draft))
    written: list[tuple[DraftInvoice, int, int]] = []
    events: list[NewEvent] = []
    # The keys of `fresh` were just looked up in this transaction (`_originals`): none exists.
    new = write_drafts_totals(conn, tenant_id, [d for _, d in drafts], at, run_id=run_id, known_new=True, events=events)
    for row_id, d in drafts:
        status[row_id] = ("done", new[d.key][0] if d.key in new else None, None)
    adjustments = 0
    for row_id, item, orig in cut:
        key = f"{item.key}|cut|{utc(item.spans[-1].end).isoformat()}"
        recomputed = _rate(rater, [item], failures, status, [row_id])
        if not recomputed:
            continue
        delta = correction_draft(conn, tenant_id, int(orig.id), recomputed[0][1], key, "proration_adjustment")
        adj = (
            {} if delta is None
            else write_drafts_totals(conn, tenant_id, [delta], at, run_id=run_id, kind="correction",
                                     corrects={key: int(orig.id)}, events=events)
        )  # fmt: skip
        if delta is not None and adj:
            adjustments += 1
            drafts.append((row_id, delta))
            new.update(adj)
        status[row_id] = ("done", adj[key][0] if key in adj else int(orig.id), None)
    for _, d in drafts:
        if d.key in new:
            _, t, cr = new[d.key]
            written.append((d, t, cr))
    mark = "?" if conn.dialect.name == "sqlite" else "%s"
    conn.exec_driver_sql(
        f"UPDATE {invoice_run_items.name} SET status = {mark}, invoice_id = {mark}, error = {mark} WHERE id = {mark}",
        [(st, invoice_id, error, row_id) for row_id, (st, invoice_id, error) in status.items()],
    )
    emit(conn, tenant_id, events)  # last: it holds the tenant's event head until this batch commits
    return len(claimed), written, adjustments, skipped, failures


def _rate(
    rater: Rater,
    batch: list[DueItem],
    failures: list[str],
    status: dict[int, tuple[str, int | None, str | None]],
    row_ids: list[int],
) -> list[tuple[tuple[int, DueItem], DraftInvoice]]:
    """Rate the batch at once; if that fails, item by item so one bad item fails alone."""
    if not batch:
        return []
    try:
        return list(zip(zip(row_ids, batch, strict=True), rater.draft(batch), strict=True))
    except Exception:  # narrowed below, per item
        pass
    out = []
    for row_id, item in zip(row_ids, batch, strict=True):
        try:
            out.append(((row_id, item), rater.draft([item])[0]))
        except Exception as exc:  # any rating error fails this item only
            message = f"{item.key}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            failures.append(message)
            status[row_id] = ("failed", None, message)
    return out


__all__ = ["InjectedFailure", "RunSummary", "run_cycle", "work_key"]
