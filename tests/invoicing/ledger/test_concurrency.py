"""Concurrent clients hammering one wallet never overdraw it, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading

from sqlalchemy import Engine

from invoicing.ledger import InsufficientFunds, Ledger, Result, Transfer
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
