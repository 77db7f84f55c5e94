"""The invoice run: everything due as of an instant becomes a draft invoice, exactly once.

    summary = run_cycle(engine, tenant_id, as_of)

1. `due_periods(as_of)` lists what is due, and the items are grouped into documents: one per customer,
   currency and billing date (`group_key`; per subscription too for customers invoiced per subscription).
   Each group is one unit of work, keyed by the group and its items' keys with the end of their billed
   spans (a span cut short later is new work: an adjustment). An item is billed at most once
   (`invoice_items`, unique per tenant and item); a group whose document exists already (an item that
   became due late, or a re-issue after a void) gets a new document `<group>#2`, `#3`, ...
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

import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from invoicing.catalog import stored_utc, utc
from invoicing.documents._assembly import group_key
from invoicing.documents._grouping import Preferences, group_items, preferences
from invoicing.documents._invoice import (
    BulkInsert,
    Packet,
    correction_draft,
    document_inputs,
    packet_of,
    prepare_documents,
    rerate_draft,
    write_documents,
    write_packets,
)
from invoicing.documents._parallel import Ahead, rate_items
from invoicing.documents._rater import DraftInvoice, Rater
from invoicing.events import NewEvent, emit
from invoicing.ledger.transfer import write_transaction
from invoicing.subscriptions import DueItem, due_periods
from invoicing.tables import invoice_items, invoice_run_items, invoice_runs, invoices
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
    from_workers: int = 0  # invoices written as a worker process rated and assembled them (the rest: here)
    totals: dict[str, int] = field(default_factory=dict)  # currency → sum of totals, minor units
    credits: dict[str, int] = field(default_factory=dict)  # currency → credits applied, minor units
    errors: list[str] = field(default_factory=list)
    completed: bool = False


class InjectedFailure(RuntimeError):
    """Raised by the `fail_after` test hook to simulate a crash between two batches."""


def work_key(item: DueItem) -> str:
    return f"{item.key}@{utc(item.spans[-1].end).isoformat()}"


def group_work_key(group: str, items: Sequence[DueItem]) -> str:
    digest = hashlib.sha256("\n".join(sorted(work_key(i) for i in items)).encode()).hexdigest()[:20]
    return f"{group}@{digest}"


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


def _add_items(engine: Engine, run_id: int, items: dict[str, list[DueItem]]) -> None:
    c = invoice_run_items.c

    def run(conn: Connection) -> None:
        have = set(conn.execute(select(c.item_key).where(c.run_id == run_id)).scalars())
        write = BulkInsert(conn, invoice_run_items, ("run_id", "item_key", "subscription_id", "status"))
        rows: list[tuple[Any, ...]] = []
        for k, i in items.items():  # in `items` order (the claim order), ADD_CHUNK rows per executemany
            if k not in have:
                rows.append((run_id, k, i[0].subscription_id, "pending"))
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


def _bindings(conn: Connection, tenant_id: int, keys: list[str]) -> dict[str, Any]:
    """The document that billed each item (item key → its invoice id, span end, timing and status)."""
    it, i = invoice_items.c, invoices.c
    out: dict[str, Any] = {}
    for k in range(0, len(keys), 900):
        for r in conn.execute(
            select(it.item_key, it.invoice_id, it.span_end, it.timing, i.status)
            .join(invoices, i.id == it.invoice_id)
            .where(it.tenant_id == tenant_id, it.item_key.in_(keys[k : k + 900]))
        ):
            out[r.item_key] = r
    return out


def _free_keys(conn: Connection, tenant_id: int, groups: list[str]) -> dict[str, str]:
    """A document key per group: the group itself, or `<group>#n` when documents of it exist already."""
    i = invoices.c
    taken: set[str] = set()
    for k in range(0, len(groups), 900):
        taken |= set(
            conn.execute(
                select(i.idempotency_key).where(i.tenant_id == tenant_id, i.idempotency_key.in_(groups[k : k + 900]))
            ).scalars()
        )
    out = {g: g for g in groups if g not in taken}
    for g in groups:
        if g in taken:
            n = conn.execute(
                select(func.count()).select_from(invoices).where(
                    i.tenant_id == tenant_id, i.idempotency_key.like(g.replace("%", r"\%").replace("_", r"\_") + "#%",
                                                                     escape="\\")
                )
            ).scalar_one()  # fmt: skip
            out[g] = f"{g}#{int(n) + 2}"
    return out


#: How far ahead of this server's clock a run's `as_of` may be (another machine's clock may be ahead).
AS_OF_SKEW = timedelta(minutes=5)


#: Work items (documents) from which a run rates in worker processes; below it, in process. Measured on 2
#: cores (benchmarks.invoicing): starting the workers and waiting for their first batch costs about two
#: seconds, and a worker's batch costs about what the whole in-process batch costs (rating is most of it),
#: so 20k documents ran 0.8x in process with one worker and 100k ran 1.06x with two. Small runs (the tests,
#: `tally demo`) therefore stay in process, exactly as before.
PARALLEL_MIN_ITEMS = 50_000


def worker_count(workers: int | None, due: int) -> int:
    """Rating processes for a run of `due` work items: `workers` when given (0: in process), else one per
    core (the writer is lighter than a worker and waits on the database part of the time), none below
    PARALLEL_MIN_ITEMS or on one core."""
    import multiprocessing

    if multiprocessing.current_process().daemon:
        return 0  # a daemonic process may not start children (a multiprocessing.Pool worker, say)
    if workers is not None:
        return max(0, workers)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if due < PARALLEL_MIN_ITEMS or cores < 2:
        return 0
    return min(cores, 8)


def run_cycle(
    engine: Engine,
    tenant_id: int,
    as_of: datetime,
    progress: Progress | None = None,
    *,
    batch_size: int = 200,
    explain: bool = True,
    fail_after: int | None = None,
    workers: int | None = None,
    writers: int | None = None,
) -> RunSummary:
    """Invoice everything due as of `as_of` (see the module docstring). Safe to run again, and to run
    in several processes at once; returns what this worker did.

    `workers`: processes rating and assembling batches ahead of the writer (`invoicing.documents._parallel`);
    None chooses (`worker_count`: in process below PARALLEL_MIN_ITEMS work items). `writers`: threads
    writing batches, each in its own transaction (PostgreSQL only, where writers do not serialise; default
    2 when workers rate; SQLite has one writer).
    `fail_after` is a test hook: raise `InjectedFailure` once this worker has written that many invoices
    (it runs in process).
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
    rater = Rater(engine, tenant_id, explain=explain)
    prefs = preferences(engine, tenant_id)
    groups = group_items(due, lambda version: rater.plan(version).currency, prefs)
    items = {group_work_key(g, its): its for g, its in groups.items()}
    run_id = _run_row(engine, tenant_id, at)
    summary = RunSummary(run_id, at, due=len(items))
    _add_items(engine, run_id, items)
    del due, groups
    n_workers = 0 if fail_after is not None else worker_count(workers, len(items))
    postgres = engine.dialect.name == "postgresql"
    n_writers = 1 if not (postgres and n_workers) else max(1, writers if writers is not None else 2)
    # Streaming: each batch loads its own customers and usage (`Rater.begin_batch`) and drops the last's.
    tally = _Tally(summary, progress, len(items))
    if progress:
        progress(0, len(items))
    ahead = None
    if n_workers:
        ahead = Ahead(engine, tenant_id, run_id, items, at=at, prefs=prefs, explain=explain, batch_size=batch_size,
                      workers=n_workers, lag=n_writers + 1)  # fmt: skip
    try:
        if n_writers == 1:
            _write_loop(engine, tenant_id, run_id, items, rater, batch_size, at, prefs, tally, ahead, None, fail_after)
        else:
            gate = _Gate()
            args = (engine, tenant_id, run_id, items)
            threads = [
                threading.Thread(
                    target=_write_loop,
                    name=f"invoice-writer-{n}",
                    daemon=True,
                    args=(
                        *args,
                        Rater(engine, tenant_id, explain=explain),
                        batch_size,
                        at,
                        prefs,
                        tally,
                        ahead,
                        gate,
                        None,
                    ),
                )
                for n in range(n_writers)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if tally.error is not None:
                raise tally.error
    finally:
        if ahead is not None:
            ahead.close()
    summary.completed = _finish(engine, run_id)
    return summary


class _Tally:
    """The summary and progress, shared by the writers."""

    def __init__(self, summary: RunSummary, progress: Progress | None, total: int) -> None:
        self.summary = summary
        self.progress = progress
        self.total = total
        self.handled = 0
        self.error: BaseException | None = None
        self.lock = threading.Lock()

    def add(self, outcome: BatchOutcome) -> None:
        n_claimed, written, adjustments, skipped, failures, from_workers = outcome
        with self.lock:
            summary = self.summary
            summary.from_workers += from_workers
            self.handled += n_claimed
            summary.created += len(written)
            summary.adjustments += adjustments
            summary.already_invoiced += skipped
            summary.failed += len(failures)
            summary.errors += failures
            for currency, total, credits in written:
                summary.totals[currency] = summary.totals.get(currency, 0) + total
                summary.credits[currency] = summary.credits.get(currency, 0) + credits
            if self.progress:
                self.progress(min(self.handled, self.total), self.total)


class _Gate:
    """Several writers keep each customer's documents in claim order: a batch reads the balances and
    discounts its documents depend on only once every earlier-claimed batch sharing a customer with it
    has ended (committed or rolled back), so credits are drawn in the order one writer would draw them.
    Claims themselves are serialised here, so ticket order is claim (id) order."""

    def __init__(self) -> None:
        self.claiming = threading.Lock()
        self.changed = threading.Condition()
        self.open: dict[int, frozenset[int]] = {}  # ticket → customers of a batch still in flight
        self.next = 0

    def register(self, customers: frozenset[int]) -> int:
        with self.changed:
            ticket = self.next
            self.next += 1
            self.open[ticket] = customers
            return ticket

    def wait(self, ticket: int) -> None:
        mine = self.open[ticket]
        with self.changed:
            self.changed.wait_for(lambda: not any(t < ticket and c & mine for t, c in self.open.items()))

    def done(self, ticket: int) -> None:
        with self.changed:
            self.open.pop(ticket, None)
            self.changed.notify_all()


def _write_loop(
    engine: Engine,
    tenant_id: int,
    run_id: int,
    items: dict[str, list[DueItem]],
    rater: Rater,
    batch_size: int,
    at: datetime,
    prefs: Preferences,
    tally: _Tally,
    ahead: Ahead | None,
    gate: _Gate | None,
    fail_after: int | None,
) -> None:
    """Claim, rate (or take what the workers prepared), write and commit batches until none is pending."""
    summary = tally.summary
    try:
        while True:
            if tally.error is not None:
                return
            if fail_after is not None and summary.created >= fail_after:
                raise InjectedFailure(f"injected failure after {summary.created} invoices")
            limit = batch_size if fail_after is None else max(1, min(batch_size, fail_after - summary.created))
            tickets: list[int] = []
            try:
                outcome = write_transaction(engine, partial(_batch, tenant_id=tenant_id, run_id=run_id, items=items,
                                                            rater=rater, limit=limit, at=at, prefs=prefs, ahead=ahead,
                                                            gate=gate, tickets=tickets))  # fmt: skip
            finally:
                if gate is not None:
                    for t in tickets:
                        gate.done(t)
            if outcome is None:
                return
            tally.add(outcome)
    except BaseException as exc:
        if gate is None:
            raise
        tally.error = tally.error or exc  # the first writer's failure ends the run (re-raised by run_cycle)


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


BatchOutcome = tuple[int, list[tuple[str, int, int]], int, int, list[str], int]


def _batch(
    conn: Connection,
    tenant_id: int,
    run_id: int,
    items: dict[str, list[DueItem]],
    rater: Rater,
    limit: int,
    at: datetime,
    prefs: Preferences,
    ahead: Ahead | None = None,
    gate: _Gate | None = None,
    tickets: list[int] | None = None,
) -> BatchOutcome | None:
    ticket = None
    if gate is not None:
        with gate.claiming:
            claimed = _claim(conn, run_id, limit)
            ticket = gate.register(frozenset(items[r.item_key][0].customer_id for r in claimed if r.item_key in items))
        assert tickets is not None
        tickets.append(ticket)
    else:
        claimed = _claim(conn, run_id, limit)
    if not claimed:
        return None
    failures: list[str] = []
    status: dict[int, tuple[str, int | None, str | None]] = {}
    present: list[tuple[int, str, list[DueItem]]] = []
    for r in claimed:
        its = items.get(r.item_key)
        if its is None:  # due in another worker's view only (its as_of differs): leave it to them
            status[int(r.id)] = ("failed", None, f"{r.item_key}: not due as of {at.isoformat()} in this worker")
        else:
            present.append((int(r.id), r.item_key, its))
    every = [i for _, _, its in present for i in its]
    bound = _bindings(conn, tenant_id, [i.key for i in every])
    fresh: list[tuple[int, str, list[DueItem]]] = []
    cut: list[tuple[int, DueItem, Any]] = []
    redo: list[tuple[int, int, list[DueItem]]] = []  # (row, draft id, the items it bills now)
    drafts = _draft_items(conn, {int(b.invoice_id) for b in bound.values() if b.status in ("draft", "closed")})
    skipped = 0
    for row_id, wk, its in present:
        todo, cut_here, kept = [], [], []
        for item in its:
            b = bound.get(item.key)
            if b is None:
                todo.append(item)
            elif b.timing == "in_advance" and b.status != "void" and stored_utc(b.span_end) != item.spans[-1].end:
                cut_here.append((row_id, item, b))
            else:
                kept.append(item)
        status[row_id] = ("done", None, None)
        # A span cut on a document never issued: the draft is re-rated with every item it bills (and the
        # group's new ones), provided the group holds all of them; otherwise a correction document follows.
        targets = {int(b.invoice_id) for _, _, b in cut_here}
        draft_id = next(iter(targets)) if len(targets) == 1 else None
        if draft_id is not None and draft_id in drafts and drafts[draft_id] <= {i.key for i in its}:
            mine = [i for i in its if bound.get(i.key) is None or int(bound[i.key].invoice_id) == draft_id]
            redo.append((row_id, draft_id, mine))
            skipped += len(its) - len(mine)
            continue
        cut += cut_here
        skipped += len(kept)
        if todo:
            fresh.append((row_id, wk, todo))
    if gate is not None and ticket is not None:
        gate.wait(ticket)  # earlier batches of the same customers first: they draw their balances first
    ready = _ready(conn, tenant_id, ahead, fresh, redo, cut, at, items) if ahead is not None else {}
    rest = [(row_id, its) for row_id, _, its in fresh if row_id not in ready]
    need = [i for _, its in rest for i in its] + [i for _, _, its in redo for i in its] + [i for _, i, _ in cut]
    if need:
        rater.begin_batch(need)
    rated = _rate(rater, [i for _, its in rest for i in its] + [i for _, _, its in redo for i in its], failures)
    groups: list[tuple[int, str, list[DraftInvoice]]] = []
    for row_id, its in rest:
        missing = [i.key for i in its if i.key not in rated]
        if missing:  # one document per group: a group with an item that failed to rate waits whole
            status[row_id] = ("failed", None, "; ".join(f for f in failures if f.split(":", 1)[0] in missing)[:2000])
            continue
        first = its[0]
        sub = first.subscription_id if prefs.split(first.customer_id) else None
        groups.append((row_id, group_key(first.customer_id, rated[first.key].currency, first.due_at, sub),
                       [rated[i.key] for i in its]))  # fmt: skip
    keys = _free_keys(conn, tenant_id, [g for _, g, _ in groups])
    events: list[NewEvent] = []
    docs = prepare_documents(conn, tenant_id, [(keys[g], parts) for _, g, parts in groups], discounts_at=at)
    built = {row_id: packet_of(doc, tenant_id, issue_zero=prefs.issue_zero)
             for (row_id, _, _), doc in zip(groups, docs, strict=True)}  # fmt: skip
    built.update(ready)
    order = [row_id for row_id, _, _ in fresh if row_id in built]  # claim order: ids follow it
    new = write_packets(conn, tenant_id, [built[r] for r in order], at, run_id=run_id, events=events)
    written = [(built[r].currency, *new[built[r].key][1:]) for r in order]
    for row_id in order:
        status[row_id] = ("done", new[built[row_id].key][0], None)
    adjustments = 0
    for row_id, draft_id, its in redo:
        if any(i.key not in rated for i in its):
            status[row_id] = ("failed", None, "; ".join(failures)[:2000] or "an item was not rated")
            continue
        rerated = rerate_draft(conn, tenant_id, draft_id, [rated[i.key] for i in its], at, events=events,
                               discounts_at=at, issue_zero=prefs.issue_zero)  # fmt: skip
        if rerated is not None:
            adjustments += 1
            status[row_id] = ("done", draft_id, None)
            written.append((rated[its[0].key].currency, *rerated[1:]))
    for row_id, item, orig in cut:
        key = f"{item.key}|cut|{utc(item.spans[-1].end).isoformat()}"
        recomputed = _rate(rater, [item], failures)
        if item.key not in recomputed:
            status[row_id] = ("failed", None, failures[-1] if failures else f"{item.key}: not rated")
            continue
        delta = correction_draft(conn, tenant_id, int(orig.invoice_id), [recomputed[item.key]], key,
                                 "proration_adjustment", items={item.key})  # fmt: skip
        if delta is None:
            continue
        adj = write_drafts_totals(conn, tenant_id, [delta], at, run_id=run_id, corrects={key: int(orig.invoice_id)},
                                  events=events)  # fmt: skip
        if adj:
            adjustments += 1
            written.append((delta.currency, *adj[key][1:]))
    mark = "?" if conn.dialect.name == "sqlite" else "%s"
    conn.exec_driver_sql(
        f"UPDATE {invoice_run_items.name} SET status = {mark}, invoice_id = {mark}, error = {mark} WHERE id = {mark}",
        [(st, invoice_id, error, row_id) for row_id, (st, invoice_id, error) in status.items()],
    )
    emit(conn, tenant_id, events)  # last: it holds the tenant's event head until this batch commits
    return len(claimed), written, adjustments, skipped, failures, sum(1 for r in order if r in ready)


def _ready(
    conn: Connection,
    tenant_id: int,
    ahead: Ahead,
    fresh: list[tuple[int, str, list[DueItem]]],
    redo: list[tuple[int, int, list[DueItem]]],
    cut: list[tuple[int, DueItem, Any]],
    at: datetime,
    items: dict[str, list[DueItem]],
) -> dict[int, Packet]:
    """The claimed groups whose worker-built packet is exactly what this transaction would write (see
    `invoicing.documents._parallel`): row id → packet. Every other group is rated here."""
    whole = [(row_id, wk) for row_id, wk, its in fresh if len(its) == len(items[wk])]  # none of its items billed
    if not whole:
        return {}
    got = ahead.take([wk for _, wk in whole])
    if not got:
        return {}
    keys = _free_keys(conn, tenant_id, sorted({got[wk][0][0] for _, wk in whole if wk in got}))
    # Customers with a group rated here keep all their groups here (one assembly, one order).
    here = {its[0].customer_id for _, wk, its in fresh if wk not in got}
    here |= {its[0].customer_id for _, _, its in redo} | {i.customer_id for _, i, _ in cut}
    by_customer: dict[int, list[tuple[int, str]]] = {}
    for row_id, wk in whole:
        if wk in got and keys[got[wk][0][0]] == got[wk][0][0]:
            by_customer.setdefault(got[wk][0][1].customer_id, []).append((row_id, wk))
        else:
            here.add(items[wk][0].customer_id)
    for cid in here:
        by_customer.pop(cid, None)
    if not by_customer:
        return {}
    snaps = {cid: got[rows[0][1]][1] for cid, rows in by_customer.items()}
    wants = {cid: (s.external_id, set(s.units)) for cid, s in snaps.items()}
    by_currency: dict[str, set[str]] = {}
    for s in snaps.values():
        for ccy in s.currencies:
            by_currency.setdefault(ccy, set()).add(s.external_id)
    sources, actives = document_inputs(conn, tenant_id, wants, by_currency, at)
    out: dict[int, Packet] = {}
    for cid, rows in by_customer.items():
        s = snaps[cid]
        if s.sources != sources.get(cid, {}) or s.actives != actives.get(cid, []):
            continue  # balances or discounts moved since the worker read them
        if s.shaping and (s.order != [wk for _, wk in rows] or any(got[wk][1] is not s for _, wk in rows)):
            continue  # drawn in another order or split across tasks: assembled here instead
        for row_id, wk in rows:
            out[row_id] = got[wk][0][1]
    return out


def _draft_items(conn: Connection, ids: set[int]) -> dict[int, set[str]]:
    """The item keys each of these unissued documents bills."""
    it = invoice_items.c
    out: dict[int, set[str]] = {i: set() for i in ids}
    listed = sorted(ids)
    for k in range(0, len(listed), 900):
        for r in conn.execute(select(it.invoice_id, it.item_key).where(it.invoice_id.in_(listed[k : k + 900]))):
            out[int(r.invoice_id)].add(r.item_key)
    return out


def write_drafts_totals(
    conn: Connection,
    tenant_id: int,
    drafts: Sequence[DraftInvoice],
    at: datetime,
    *,
    run_id: int | None,
    corrects: dict[str, int],
    events: list[NewEvent],
) -> dict[str, tuple[int, int, int]]:
    """Correction documents (one per draft), key → (invoice id, total, credits)."""
    docs = prepare_documents(conn, tenant_id, [(d.key, [d]) for d in drafts])
    return write_documents(conn, tenant_id, docs, at, run_id=run_id, kind="correction", corrects=corrects,
                           events=events)  # fmt: skip


_rate = rate_items


__all__ = [
    "PARALLEL_MIN_ITEMS",
    "InjectedFailure",
    "Preferences",
    "RunSummary",
    "group_items",
    "preferences",
    "run_cycle",
    "work_key",
    "worker_count",
]
