"""Concurrent clients hammering one wallet never overdraw it, on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import Connection, Engine, select

from invoicing.ledger import InsufficientFunds, Ledger, Result, Transfer
from invoicing.ledger import transfer as transfer_module
from invoicing.ledger.tables import ledger_transfers
from metering.transactions import begin_write
from tests.conftest import TenantKey

THREADS = 6
ATTEMPTS = 15


def test_concurrent_spends_never_overdraw(engine: Engine, tenant: TenantKey) -> None:
    ledger = Ledger(engine, tenant.tenant_id)
    ledger.top_up("seed", "c", 5_000, "USD")
    wallet, revenue = ledger.wallet("c", "USD"), ledger.system_account("revenue", "USD")
    ok: list[int] = []
    refused: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        try:
            for i in range(ATTEMPTS):
                amount = 70 + k * 10 + i  # every client wants more than its share
                if i % 2:
                    try:
                        ledger.spend(f"s-{k}-{i}", "c", amount, "USD", "tokens")
                        outcome = True
                    except InsufficientFunds:
                        outcome = False
                else:
                    res = ledger.create_transfers([Transfer(f"t-{k}-{i}", wallet, revenue, amount, "spend")])[0]
                    assert res.result in (Result.CREATED, Result.EXCEEDS_CREDITS), res
                    outcome = res.result is Result.CREATED
                with lock:
                    (ok if outcome else refused).append(amount)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(ok) + len(refused) == THREADS * ATTEMPTS
    assert refused, "the wallet should have run dry"
    acct = ledger.account(wallet)
    assert acct.balance == 5_000 - sum(ok) >= 0
    assert min(refused) > acct.balance  # balances only fall, so every refusal was still justified at the end
    assert ledger.account(revenue).balance == sum(ok)
    assert sum(a.balance for a in ledger.accounts()) == 0


def test_concurrent_one_pass_batches_lock_in_order_and_number_in_commit_order(
    engine: Engine, tenant: TenantKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches over overlapping wallets, listed in clashing orders, from several threads: the one-pass
    path must take its account locks in one global order (no deadlock, so no retry: every transaction
    commits at its first attempt), the sequence row last (seq numbers contiguous, per batch, in commit
    order), and land every increment on the latest totals."""
    ledger = Ledger(engine, tenant.tenant_id)
    wallets = [ledger.wallet(f"c{i}", "USD") for i in range(12)]
    cash_in, revenue = ledger.system_account("cash_in", "USD"), ledger.system_account("revenue", "USD")
    assert all(
        r.ok for r in ledger.create_transfers([Transfer(f"f{i}", cash_in, w, 10**9) for i, w in enumerate(wallets)])
    )
    failures: list[BaseException] = []

    @contextmanager
    def watched(e: Engine) -> Iterator[Connection]:
        try:
            with begin_write(e) as conn:
                yield conn
        except BaseException as exc:  # a deadlock or lock error the retry loop would otherwise hide
            failures.append(exc)
            raise

    monkeypatch.setattr(transfer_module, "begin_write", watched)
    errors: list[BaseException] = []

    def client(k: int) -> None:
        try:
            order = wallets if k % 2 else wallets[::-1]
            for i in range(8):
                batch = [Transfer(f"b-{k}-{i}-{j}", w, revenue, 1 + j, "spend") for j, w in enumerate(order)]
                assert all(r.result is Result.CREATED for r in ledger.create_transfers(batch))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and failures == []
    with engine.connect() as conn:
        rows = conn.execute(
            select(ledger_transfers.c.transfer_id, ledger_transfers.c.seq)
            .where(ledger_transfers.c.tenant_id == tenant.tenant_id)
            .order_by(ledger_transfers.c.seq)
        ).all()
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
    batch_of = [r.transfer_id.rsplit("-", 1)[0] for r in rows if r.transfer_id.startswith("b-")]
    runs = [key for key, _ in itertools.groupby(batch_of)]
    assert len(runs) == len(set(runs)) == 4 * 8  # each batch's rows contiguous in seq order
    spent = 4 * 8 * sum(1 + j for j in range(len(wallets)))
    assert ledger.account(revenue).balance == spent
    assert sum(10**9 - ledger.account(w).balance for w in wallets) == spent
    assert sum(a.balance for a in ledger.accounts()) == 0
