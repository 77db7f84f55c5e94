"""The one-pass bulk path gives exactly what the transfer-by-transfer path gives (hypothesis)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from invoicing.ledger import Ledger, Transfer, TransferFlags
from invoicing.ledger import transfer as transfer_module
from invoicing.ledger.tables import ledger_accounts, ledger_transfers
from metering.tenant import create_tenant

_TENANT_NO = itertools.count()


@pytest.fixture
def ledger_engine_tenant(engine: Engine) -> tuple[Engine, int]:
    return engine, create_tenant(engine, "bulk").id


batches = st.lists(
    st.tuples(
        st.integers(0, 3),  # debit: one of four wallets
        st.integers(0, 2),  # credit: revenue, another system account, or a wallet (index 2 = wallet 0)
        st.integers(1, 4_000),
        st.sampled_from([TransferFlags.NONE, TransferFlags.NONE, TransferFlags.NONE, TransferFlags.LINKED]),
    ),
    min_size=1,
    max_size=40,
)


def _state(engine: Engine, tenant_id: int) -> tuple[list[Any], list[Any]]:
    a, t = ledger_accounts.c, ledger_transfers.c
    with engine.connect() as conn:
        accounts = conn.execute(
            select(a.kind, a.customer, a.debits_posted, a.credits_posted).where(a.tenant_id == tenant_id)
            .order_by(a.kind, a.customer)
        ).all()  # fmt: skip
        rows = conn.execute(
            select(t.transfer_id, t.amount, t.flags).where(t.tenant_id == tenant_id).order_by(t.seq)
        ).all()
    return [tuple(r) for r in accounts], [tuple(r) for r in rows]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=st.lists(batches, min_size=1, max_size=4))
def test_bulk_path_equals_one_by_one(engine: Engine, script: list, monkeypatch: pytest.MonkeyPatch) -> None:
    outcomes = []
    for fast in (True, False):
        tenant = create_tenant(engine, f"bulk-{next(_TENANT_NO)}")  # examples share one database
        led = Ledger(engine, tenant.id)
        wallets = [led.wallet(f"c{i}", "USD") for i in range(4)]
        targets = [led.system_account("revenue", "USD"), led.system_account("expiry", "USD"), wallets[0]]
        for i in range(len(wallets)):
            led.top_up(f"fund{i}", f"c{i}", 5_000, "USD")
        with monkeypatch.context() as m:
            if not fast:
                m.setattr(transfer_module, "_simple_batch", lambda *args: None)
            results = []
            for b, batch in enumerate(script):
                transfers = [
                    Transfer(f"x{b}-{k}", wallets[d], targets[c], amount, "spend", flags=flags)
                    for k, (d, c, amount, flags) in enumerate(batch)
                ]
                results.append([(r.result, r.field) for r in led.create_transfers(transfers)])
        outcomes.append((results, _state(engine, tenant.id)))
    assert outcomes[0] == outcomes[1]


def test_bulk_path_is_taken_for_a_plain_batch(ledger_engine_tenant: tuple[Engine, int]) -> None:
    """Guard for the test above: a plain batch really goes through the one-pass path."""
    engine, tenant_id = ledger_engine_tenant
    led = Ledger(engine, tenant_id)
    wallet, revenue = led.wallet("c", "USD"), led.system_account("revenue", "USD")
    led.top_up("fund", "c", 1_000, "USD")
    calls: list[object] = []
    original = transfer_module._simple_batch

    def spy(*args: Any) -> Any:
        calls.append(result := original(*args))
        return result

    transfer_module._simple_batch = spy  # type: ignore[assignment]
    try:
        led.create_transfers([Transfer(f"p{i}", wallet, revenue, 10, "spend") for i in range(50)])
    finally:
        transfer_module._simple_batch = original  # type: ignore[assignment]
    assert calls and calls[-1] is not None
    assert led.account(wallet).balance == 500
