"""The invoice run on every core: batches rated and assembled in worker processes, ahead of the writer.

Why it is shaped this way:

* Rating and assembling a batch is CPU work over reads (usage, customers, plans, balances); writing it is
  a few set-based statements. So worker processes (`forkserver`: never a fork of a process holding
  connections or threads) rate and assemble the next batches while the writer writes the current one,
  and hand back each document as a `Packet`: its rows already built, no per-line object left to make.
* The run's guarantees stay with the writer, which claims, checks and writes in its own transaction
  exactly as the in-process run does (`_run._batch`). A packet is a proposal: the writer keeps it only
  when the group it claimed bills none of its items yet, its document key is free, and the customer's
  balances and discounts it reads (locked, on PostgreSQL) equal those the worker assembled with. Assembly
  is a pure function of those inputs, so a kept packet is the document the in-process run would have
  written; anything else (a balance that moved, a re-run, a cut span) is rated and assembled in process,
  as before. A worker never writes.
* A customer whose balances or discounts shape its documents keeps them in one order: all of its groups
  in a batch come from one worker task, in the claim's order, or none does.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing import get_context
from typing import Any

from sqlalchemy import Engine, create_engine, event, select
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from invoicing.documents._assembly import Source, assemble_all, group_key
from invoicing.documents._grouping import Preferences
from invoicing.documents._invoice import Packet, discount_rule, document_inputs, document_wants, packet_of
from invoicing.documents._rater import DraftInvoice, Rater
from invoicing.subscriptions import DueItem
from invoicing.tables import invoice_run_items


@dataclass(slots=True)
class Snapshot:
    """What a worker assembled one customer's documents with, and in which order."""

    external_id: str
    units: set[str]  # the points units its parts are priced in
    currencies: set[str]
    sources: dict[str, list[Source]]
    actives: list[Any]
    order: list[str] = field(default_factory=list)  # work keys of its documents in this task

    @property
    def shaping(self) -> bool:
        """Balances or discounts make the customer's documents depend on each other's order."""
        return bool(self.sources) or bool(self.actives)


@dataclass(slots=True)
class Prepared:
    """A worker task's result: per work key, the document key it assembled under and its packet."""

    packets: dict[str, tuple[str, Packet]]
    customers: dict[int, Snapshot]


def rate_items(rater: Rater, batch: list[DueItem], failures: list[str]) -> dict[str, DraftInvoice]:
    """Rate the batch at once; if that fails, item by item so one bad item fails alone. Item key → draft."""
    if not batch:
        return {}
    try:
        return {i.key: d for i, d in zip(batch, rater.draft(batch), strict=True)}
    except Exception:  # narrowed below, per item
        pass
    out: dict[str, DraftInvoice] = {}
    for item in batch:
        try:
            out[item.key] = rater.draft([item])[0]
        except Exception as exc:  # any rating error fails this item only
            failures.append(f"{item.key}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    return out


def reader_engine(url: str) -> Engine:
    """A worker's read-only engine: the settings of `tally.db.make_engine` that reads depend on (SQLite:
    explicit BEGIN so a connection's reads share one snapshot, the busy timeout)."""
    if make_url(url).get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"timeout": 30}, poolclass=NullPool)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN")

        return engine
    return create_engine(url, pool_size=1, max_overflow=1)


_RATERS: dict[tuple[str, int, bool], Rater] = {}


def prepare(
    url: str, tenant_id: int, explain: bool, at: datetime, prefs: Preferences, groups: list[tuple[str, list[DueItem]]]
) -> Prepared:
    """Worker process: rate and assemble these work items (work key → its due items) as the in-process run
    would, with balances and discounts read unlocked. Groups with an item that fails to rate are left out:
    the writer rates them again and records the failure."""
    rater = _RATERS.get((url, tenant_id, explain))
    if rater is None:
        rater = _RATERS[(url, tenant_id, explain)] = Rater(reader_engine(url), tenant_id, explain=explain)
    every = [i for _, its in groups for i in its]
    rater.begin_batch(every)
    rated = rate_items(rater, every, [])
    ready: list[tuple[str, str, list[DraftInvoice]]] = []
    for wk, its in groups:
        if any(i.key not in rated for i in its):
            continue
        first = its[0]
        sub = first.subscription_id if prefs.split(first.customer_id) else None
        ready.append((wk, group_key(first.customer_id, rated[first.key].currency, first.due_at, sub),
                      [rated[i.key] for i in its]))  # fmt: skip
    pairs = [(g, parts) for _, g, parts in ready]
    wants, by_currency = document_wants(pairs)
    with rater.engine.connect() as conn:
        sources, actives = document_inputs(conn, tenant_id, wants, by_currency, at, lock=False)
    docs = assemble_all(pairs, sources, {cid: discount_rule(a) for cid, a in actives.items()})
    out = Prepared({}, {})
    for (wk, g, _), doc in zip(ready, docs, strict=True):
        out.packets[wk] = (g, packet_of(doc, tenant_id, issue_zero=prefs.issue_zero))
        cid = doc.customer_id
        snap = out.customers.get(cid)
        if snap is None:
            snap = out.customers[cid] = Snapshot(
                doc.customer_external_id, set(wants[cid][1]),
                {ccy for ccy, names in by_currency.items() if doc.customer_external_id in names},
                sources.get(cid, {}), actives.get(cid, []),
            )  # fmt: skip
        snap.order.append(wk)
    return out


class Ahead:
    """Work items rated in worker processes ahead of the writers: the run's pending items in claim order
    (id), cut into the writers' batches, at most `window` batches submitted and not yet taken."""

    def __init__(
        self,
        engine: Engine,
        tenant_id: int,
        run_id: int,
        items: dict[str, list[DueItem]],
        *,
        at: datetime,
        prefs: Preferences,
        explain: bool,
        batch_size: int,
        workers: int,
        lag: int = 2,
    ) -> None:
        c = invoice_run_items.c
        with engine.connect() as conn:
            keys = [
                k
                for k in conn.execute(
                    select(c.item_key).where(c.run_id == run_id, c.status == "pending").order_by(c.id)
                ).scalars()
                if k in items
            ]
        self._batches = [keys[k : k + batch_size] for k in range(0, len(keys), batch_size)]
        self._args = (engine.url.render_as_string(hide_password=False), tenant_id, explain, at, prefs)
        self._items = items
        self._pool = ProcessPoolExecutor(workers, mp_context=get_context("forkserver"))
        self._batch_of: dict[str, int] = {}  # work key → the batch (task) holding it, until taken
        self._open: dict[int, tuple[Future[Prepared], int]] = {}  # batch → its task, keys not yet taken
        self._next = 0
        self._window = workers + 2
        self._lag = lag
        self._broken = False
        self._lock = threading.Lock()
        with self._lock:
            self._fill()

    def _fill(self) -> None:
        while not self._broken and self._next < len(self._batches) and len(self._open) < self._window:
            keys = self._batches[self._next]
            try:
                fut = self._pool.submit(prepare, *self._args, [(k, self._items[k]) for k in keys])
            except (BrokenProcessPool, RuntimeError):  # a worker died: the writers rate the rest in process
                self._broken = True
                return
            self._open[self._next] = (fut, len(keys))
            for k in keys:
                self._batch_of[k] = self._next
            self._next += 1

    def take(self, keys: Sequence[str]) -> dict[str, tuple[tuple[str, Packet], Snapshot]]:
        """The packets of these work keys that a worker prepared (waiting for them), each with the snapshot
        of its customer. A key no task holds, or whose task failed, is simply absent."""
        with self._lock:
            wanted: dict[int, list[str]] = {}
            for k in keys:
                n = self._batch_of.pop(k, None)
                if n is not None and n in self._open:
                    wanted.setdefault(n, []).append(k)
            futures = {n: self._open[n][0] for n in wanted}
            for n, ks in wanted.items():
                fut, left = self._open[n]
                if left - len(ks) > 0:
                    self._open[n] = (fut, left - len(ks))
                else:
                    del self._open[n]
            if wanted:
                # Keys another worker claimed (or that failed and wait for a re-run) never come: forget
                # tasks far behind the claims, so the window keeps moving.
                for n in [n for n in self._open if n < max(wanted) - self._lag]:
                    del self._open[n]
            self._fill()
        out: dict[str, tuple[tuple[str, Packet], Snapshot]] = {}
        for n, fut in futures.items():
            try:
                got = fut.result()
            except Exception:  # a worker that died or failed: the writer rates these in process
                continue
            by_customer = {wk: snap for snap in got.customers.values() for wk in snap.order}
            for k in wanted[n]:
                if k in got.packets:
                    out[k] = (got.packets[k], by_customer[k])
        return out

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


__all__ = ["Ahead", "Prepared", "Snapshot", "prepare", "rate_items", "reader_engine"]
