"""The parallel run (batches rated and assembled in worker processes, written by one writer on SQLite and
by two on PostgreSQL) writes exactly what the in-process run writes: the same documents, totals, lines,
billed items and ledger movements (holds, then posts and revenue once finalized), on both databases.

The data is the crash test's: customers with two documents (Jan 1 and Feb 1) on a flat + graduated plan,
a third of them holding a grant that pays part of both, so the writer must reject the worker's documents
whose balances moved (a grant drawn by the customer's earlier document) and assemble those itself. Small
batches split customers over many batches and tasks; one large batch keeps every document of a customer in
one worker task, where the worker's own assembly is kept."""

from __future__ import annotations

import multiprocessing
from typing import Any

import pytest

from invoicing.documents import run_cycle
from invoicing.documents._run import PARALLEL_MIN_ITEMS, worker_count
from metering.tenant import get_tenant
from tally.db import make_engine
from tests.invoicing.test_invoice_crash import EXPECTED, FEB, backend_urls, fingerprint  # noqa: F401

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def workers_start_with_imports_done() -> None:
    """The run's worker processes come from multiprocessing's forkserver, started once per test process:
    preloading the worker's module there spares each new worker importing it (a second or two of the
    invoicing packages, numba and SQLAlchemy). No effect if this process already started its forkserver."""
    multiprocessing.set_forkserver_preload(["invoicing.documents._parallel"])


def test_small_runs_stay_in_process() -> None:
    assert worker_count(None, PARALLEL_MIN_ITEMS - 1) == 0
    assert worker_count(0, 10**9) == 0 and worker_count(3, 1) == 3


@pytest.mark.parametrize("batch_size", [7, 500])
def test_parallel_run_equals_in_process_run(backend_urls: Any, batch_size: int) -> None:  # noqa: F811 (the fixture)
    expected: list[Any] | None = None
    for name, workers in (("serial", 0), ("parallel", 2)):
        engine = make_engine(backend_urls(f"{name}{batch_size}"))
        try:
            tid = get_tenant(engine, "acme").id
            summary = run_cycle(engine, tid, FEB, batch_size=batch_size, workers=workers, writers=2)
            assert (summary.created, summary.completed, summary.failed) == (EXPECTED, True, 0)
            again = run_cycle(engine, tid, FEB, batch_size=batch_size, workers=workers, writers=2)
            if workers and batch_size == 500:
                assert summary.from_workers > EXPECTED // 2  # the workers' documents were kept, not redone here
            assert again.created == 0  # a re-run bills nothing twice
            got = fingerprint(engine, tid)
        finally:
            engine.dispose()
        if expected is None:
            expected = got
        else:
            assert got == expected, f"batch size {batch_size}: the parallel run differs from the in-process run"
