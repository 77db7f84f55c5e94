"""`kill -9` of a real invoice run process, then a re-run: the result equals a clean run.

A separate process (forked by the crash tests' launcher, tests/metering/test_crash.py, with its imports
already done) runs `run_cycle(batch_size=1)` (one transaction per document) over a few hundred due items,
grouped into documents (one per customer and billing date); it is killed with SIGKILL at a random moment
(after a random number of committed documents plus a random few milliseconds, so the kill lands inside a
batch at varying points). Then, on SQLite and PostgreSQL:

- right after the kill, what is stored is consistent: every document has all its lines and bills exactly
  the items bound to it, every ledger hold belongs to a stored document and the documents' credits equal
  the holds, done work items have documents;
- a re-run completes, and documents (totals, lines, the items each bills, numbers once finalized in the
  same order) and the ledger's invoicing transfers (holds, then posts and revenue at finalizing) are
  identical to those of a clean run on an identical copy of the data.
"""

from __future__ import annotations

import random
import shutil
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from invoicing.catalog import CustomerDefinition, create_customer
from invoicing.documents import list_invoices, run_cycle
from invoicing.documents._invoice import finalize_in
from invoicing.ledger import Grant, Ledger
from invoicing.ledger.tables import ledger_accounts, ledger_transfers
from invoicing.subscriptions import create_subscription
from invoicing.tables import customers, invoice_lines, invoice_run_items, invoices
from metering.tenant import get_tenant
from tally.db import make_engine
from tests.conftest import _create_database, _drop_database, _pg_database_url, make_tenant
from tests.invoicing.conftest import T0, bound_items, check_documents, flat, publish, write_events
from tests.metering.test_crash import Launcher, launcher  # noqa: F401 (the fixture)

pytestmark = pytest.mark.slow

FEB = datetime(2026, 2, 1, tzinfo=UTC)
CUSTOMERS = 120  # x 3 due items (Jan fee; Jan usage, Feb fee) = 360 items on 240 documents
ITEMS = CUSTOMERS * 3
EXPECTED = CUSTOMERS * 2  # documents: Jan 1 (January's fee) and Feb 1 (January's usage, February's fee)
#: The ledger transfers the invoice run and finalizing make (credits held by drafts, posted when finalized).
INVOICING_CODES = ("invoice_hold", "invoice_post", "invoice_revenue", "invoice_tax")
GRADUATED = {"model": "graduated", "tiers": [{"up_to": "5", "unit_amount": "0.10"},
                                             {"up_to": None, "unit_amount": "0.035"}]}  # fmt: skip

DRIVER = """
import sys
from datetime import UTC, datetime
from metering.tenant import get_tenant
from invoicing.documents._run import run_cycle
from tally.db import make_engine

engine = make_engine(sys.argv[1])
tid = get_tenant(engine, "acme").id

def progress(done, total):
    print(f"progress {done} {total}", flush=True)

summary = run_cycle(engine, tid, datetime(2026, 2, 1, tzinfo=UTC), progress, batch_size=1)
print(f"finished {summary.created}", flush=True)
"""


def prepare(engine: Engine) -> None:
    """The same data every time (on a database at head): customers on a flat + graduated plan, usage, and
    grants for some."""
    tid = make_tenant(engine, "acme").tenant_id
    publish(engine, tid, "pro", [
        {"code": "base", "kind": "flat", "price": flat("30")},
        {"code": "calls", "kind": "usage", "meter": "api_calls", "price": GRADUATED},
    ])  # fmt: skip
    ledger = Ledger(engine, tid, clock=lambda: T0)
    events: list[tuple[str, str, str, datetime, int, str | None]] = []
    for k in range(CUSTOMERS):
        ext = f"c{k:03d}"
        create_customer(engine, tid, CustomerDefinition(external_id=ext, timezone="UTC"), T0)
        create_subscription(engine, tid, ext, "pro", T0)
        events += [(f"{ext}-{n}", ext, "api_calls", T0 + timedelta(minutes=n), 1, None) for n in range(k % 13)]
        if k % 3 == 0:  # a grant that pays part of the documents: holds must be neither lost nor doubled
            ledger.grant(Grant(f"g-{ext}", ext, 1000 + 7 * k, "USD", kind="promotional", effective_at_us=0))
    write_events(engine, tid, events)


def consistent(engine: Engine, tid: int) -> int:
    """After a kill: everything stored is whole. Returns the number of documents stored."""
    with engine.connect() as conn:
        invs = conn.execute(
            select(invoices.c.id, invoices.c.idempotency_key, invoices.c.total, invoices.c.credits_applied).where(
                invoices.c.tenant_id == tid
            )
        ).all()
        sums = dict(
            conn.execute(
                select(invoice_lines.c.invoice_id, func.sum(invoice_lines.c.amount)).group_by(
                    invoice_lines.c.invoice_id
                )
            ).all()
        )
        held = conn.execute(
            select(func.coalesce(func.sum(ledger_transfers.c.amount), 0)).where(
                ledger_transfers.c.tenant_id == tid, ledger_transfers.c.code == "invoice_hold"
            )
        ).scalar_one()
        done = conn.execute(
            select(invoice_run_items.c.invoice_id).where(invoice_run_items.c.status == "done")
        ).scalars().all()  # fmt: skip
    for r in invs:
        assert sums.get(r.id) == r.total, f"invoice {r.id} is missing lines"
    assert sum(int(r.credits_applied) for r in invs) == int(held), "ledger holds without their document (or back)"
    assert set(done) <= {r.id for r in invs} and len(done) == len(set(done))
    items = check_documents(engine, tid)  # each stored document bills exactly its bound items, each item once
    assert sum(len(i) for i in items.values()) == len(bound_items(engine, tid)) < ITEMS
    return len(invs)


def fingerprint(engine: Engine, tid: int) -> list[Any]:
    """Documents by key with totals, lines, the items they bill and numbers (finalized in key order), and the
    ledger's invoicing transfers (by id: they derive from the document key, not from row ids)."""
    invs = sorted(list_invoices(engine, tid, limit=10_000), key=lambda i: i.key)
    billed: dict[Any, list[Any]] = {doc: [] for doc in (i.id for i in invs)}
    for item, doc in sorted(bound_items(engine, tid).items()):
        billed[doc].append(item)
    with engine.begin() as conn:  # `finalize_invoice`'s own steps, in one transaction rather than one commit each
        for inv in invs:
            finalize_in(conn, tid, inv.id or 0, FEB)
    with engine.connect() as conn:
        ext = dict(conn.execute(select(customers.c.id, customers.c.external_id)).all())
        a = ledger_accounts.c
        names = {
            int(r.id): (r.kind, r.customer, r.peer) for r in conn.execute(select(a.id, a.kind, a.customer, a.peer))
        }
        t = ledger_transfers.c
        moved = sorted(
            (r.transfer_id, r.code, names.get(r.debit_account_id), names.get(r.credit_account_id),
             None if r.amount is None else int(r.amount), r.ts_us)
            for r in conn.execute(
                select(t.transfer_id, t.code, t.debit_account_id, t.credit_account_id, t.amount, t.ts_us).where(
                    t.tenant_id == tid, t.code.in_(INVOICING_CODES)
                )
            )
        )  # fmt: skip
    rows = [
        (i.key, ext[i.customer_id], i.kind, i.status, i.number, i.subtotal, i.tax, i.credits_applied, i.total,
         tuple(billed[i.id]),
         tuple((ln.position, ln.kind, ln.charge_code, str(ln.quantity), ln.unit_price, ln.amount, ln.amount_exact,
                ln.lineage.get("item"))
               for ln in i.lines))
        for i in sorted(list_invoices(engine, tid, limit=10_000), key=lambda i: i.key)
    ]  # fmt: skip
    return [rows, moved]


def kill_mid_run(starter: Launcher, url: str, seed: int, log: Path) -> int:
    """Start the driver (a new process, forked by the launcher with the imports done), SIGKILL it after a
    random number of committed documents plus a random delay; returns how many progress reports it made.
    Fails if it finished before the kill."""
    rng = random.Random(seed)
    after = rng.randint(3, EXPECTED // 3)
    delay = rng.uniform(0, 0.03)
    proc = starter.start(DRIVER, ["-c", url], log)
    seen = 0
    try:
        for line in proc.stdout:
            if line.startswith("progress") and int(line.split()[1]) > 0:
                seen += 1
                if seen >= after:
                    time.sleep(delay)
                    proc.send_signal(signal.SIGKILL)
                    break
            if line.startswith("finished"):
                break
    finally:
        if seen < after:
            proc.kill()
        code = proc.wait(timeout=60)
    assert code == -signal.SIGKILL, f"driver exited {code} before the kill:\n{log.read_text()}"
    return seen


@pytest.fixture
def backend_urls(db_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[[str], str]]:
    """A factory of database URLs holding identical prepared data: the data is prepared once (on a copy of
    the run's migrated template) and each URL is a copy of it, a file on SQLite, a database on PostgreSQL
    (`CREATE DATABASE … TEMPLATE`)."""
    if db_url.startswith("sqlite"):
        template = tmp_path / "template.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), template)
        eng = make_engine(f"sqlite:///{template}")
        prepare(eng)
        eng.dispose()  # the last connection closed: the WAL is checkpointed into the file

        def sqlite_copy(name: str) -> str:
            target = tmp_path / f"{name}.db"
            shutil.copyfile(template, target)
            return f"sqlite:///{target}"

        yield sqlite_copy
        return
    admin: Engine = request.getfixturevalue("pg_admin_engine")
    prepared = f"tally_p_{uuid.uuid4().hex[:12]}"
    made = [prepared]
    _create_database(admin, prepared, request.getfixturevalue("pg_template"))
    try:
        eng = make_engine(_pg_database_url(prepared))
        prepare(eng)
        eng.dispose()  # a template must have no connections while it is copied

        def pg_copy(name: str) -> str:
            copy = f"tally_c_{uuid.uuid4().hex[:12]}"
            _create_database(admin, copy, prepared)
            made.append(copy)
            return _pg_database_url(copy)

        yield pg_copy
    finally:
        for name in reversed(made):
            _drop_database(admin, name)


def test_kill_9_then_rerun_equals_clean_run(
    backend_urls: Callable[[str], str],
    db_url: str,
    tmp_path: Path,
    launcher: Launcher,  # noqa: F811 (the fixture)
) -> None:
    seeds = [11, 23, 42] if db_url.startswith("sqlite") else [7, 19]
    clean_url = backend_urls("clean")
    clean = make_engine(clean_url)
    tid = get_tenant(clean, "acme").id
    summary = run_cycle(clean, tid, FEB)
    assert (summary.due, summary.created, summary.completed) == (EXPECTED, EXPECTED, True)
    assert sum(len(i) for i in check_documents(clean, tid).values()) == ITEMS  # every item, on its document
    expected = fingerprint(clean, tid)
    clean.dispose()
    assert len(expected[0]) == EXPECTED
    assert {m[1] for m in expected[1]} == {"invoice_hold", "invoice_post", "invoice_revenue"}  # credits were held
    for seed in seeds:
        url = backend_urls(f"seed{seed}")
        seen = kill_mid_run(launcher, url, seed, tmp_path / f"driver-{seed}.log")
        engine = make_engine(url)
        try:
            stored = consistent(engine, tid)
            assert 0 < stored < EXPECTED and stored >= seen  # killed mid-run, nothing committed was lost
            resumed = run_cycle(engine, tid, FEB)
            assert resumed.completed and resumed.created == EXPECTED - stored and not resumed.failed
            assert fingerprint(engine, tid) == expected, f"seed {seed}: re-run differs from the clean run"
        finally:
            engine.dispose()
