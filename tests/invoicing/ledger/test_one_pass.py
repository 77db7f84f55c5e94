"""The one-pass batch path (columns, optimistic insert under a savepoint) against the one-by-one path.

Random scripts of batches mixing plain, pending (with timeouts) and linked transfers, retries of ids
already written or repeated within a batch, transfers between units, overdrafts and int64 overflows:
run once as shipped and once with the one-pass path switched off, the results and everything stored
(accounts' four totals, every history row, the pending table) must be identical. After every batch,
each account's totals equal the sums over its history. On SQLite and PostgreSQL (the `engine` fixture).
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from invoicing.ledger import Ledger, Result, Transfer, TransferFlags
from invoicing.ledger import transfer as transfer_module
from invoicing.ledger.tables import ledger_accounts, ledger_pending, ledger_transfers
from metering.tenant import create_tenant
from tests.invoicing.ledger.conftest import Clock

INT64_MAX = 2**63 - 1
_TENANT_NO = itertools.count()
_NOT_POSTED = int(TransferFlags.PENDING | TransferFlags.VOID_PENDING)

# Accounts by position: 0-3 USD wallets, 4 revenue, 5 cash_in, 6 points wallet, 7 conversion (no flags).
N_ACCOUNTS = 8
UNITS = ["USD"] * 6 + ["pts", "USD"]

transfer_specs = st.tuples(
    st.integers(0, 11),  # id: a small pool, so retries and in-batch repeats happen
    st.integers(0, N_ACCOUNTS - 1),
    st.integers(0, N_ACCOUNTS - 1),
    st.one_of(st.integers(1, 3_000), st.sampled_from([INT64_MAX, INT64_MAX // 2 + 1])),
    st.sampled_from(["none", "none", "none", "pending", "linked", "linked_pending"]),
    st.sampled_from([0, 0, 30]),
)
# Batches shaped for the one-pass path: fresh distinct ids, wallets and conversion on the debit side,
# revenue, cash_in (credits capped) and the points wallet (another unit) on the credit side; amounts
# that overdraw a wallet (funded with 5,000) now and then.
one_pass_specs = st.tuples(
    st.integers(100, 10_000),
    st.sampled_from([0, 1, 2, 3, 7]),
    st.sampled_from([4, 4, 4, 5, 6]),
    st.one_of(st.integers(1, 2_500), st.sampled_from([INT64_MAX, 4_999, 5_001])),
    st.sampled_from(["none", "none", "pending", "linked", "linked_pending"]),
    st.sampled_from([0, 0, 30]),
)
batches = st.one_of(
    st.lists(transfer_specs, min_size=1, max_size=12),
    st.lists(one_pass_specs, min_size=1, max_size=12, unique_by=lambda spec: spec[0]),
)
scripts = st.lists(batches, min_size=1, max_size=4)


def _setup(engine: Engine, clock: Clock) -> tuple[Ledger, list[int]]:
    tenant = create_tenant(engine, f"onepass-{next(_TENANT_NO)}")  # examples share one database
    led = Ledger(engine, tenant.id, clock)
    led.define_points_unit("pts", 0)
    accounts = [led.wallet(f"c{i}", "USD") for i in range(4)]
    accounts += [led.system_account("revenue", "USD"), led.system_account("cash_in", "USD"), led.wallet("c0", "pts")]
    accounts.append(led.system_account("conversion", "USD", "pts"))
    for i in range(4):
        led.top_up(f"fund{i}", f"c{i}", 5_000, "USD")
    return led, accounts


def _transfer(batch_no: int, spec: tuple[Any, ...], accounts: list[int], retry_salt: bool) -> Transfer:
    tid, d, c, amount, kind, timeout = spec
    flags = {
        "none": TransferFlags.NONE,
        "pending": TransferFlags.PENDING,
        "linked": TransferFlags.LINKED,
        "linked_pending": TransferFlags.LINKED | TransferFlags.PENDING,
    }[kind]
    pending = bool(flags & TransferFlags.PENDING)
    return Transfer(f"t{tid}", accounts[d], accounts[c], amount, "spend", f"b{batch_no}" if retry_salt else "",
                    flags, None, timeout if pending else 0)  # fmt: skip


def _stored(engine: Engine, tenant_id: int, accounts: list[int]) -> tuple[list[Any], list[Any], list[Any]]:
    """Everything the ledger stored, with account ids replaced by their position (tenants differ)."""
    pos = {aid: k for k, aid in enumerate(accounts)}
    a, t, p = ledger_accounts.c, ledger_transfers.c, ledger_pending.c
    with engine.connect() as conn:
        totals = [
            (pos[r.id], r.debits_posted, r.credits_posted, r.debits_pending, r.credits_pending)
            for r in conn.execute(select(ledger_accounts).where(a.tenant_id == tenant_id).order_by(a.id))
        ]
        history = [
            (r.transfer_id, r.seq, pos[r.debit_account_id], pos[r.credit_account_id], r.amount, r.unit, r.code,
             r.reference, r.flags, r.pending_id, r.timeout_us, r.ts_us)
            for r in conn.execute(select(ledger_transfers).where(t.tenant_id == tenant_id).order_by(t.seq))
        ]  # fmt: skip
        pending = [
            tuple(r)
            for r in conn.execute(
                select(p.transfer_id, p.state, p.timeout_us).where(p.tenant_id == tenant_id).order_by(p.transfer_id)
            )
        ]
    return totals, history, pending


def _assert_totals_equal_history(engine: Engine, tenant_id: int, accounts: list[int]) -> None:
    totals, history, pending = _stored(engine, tenant_id, accounts)
    open_ids = {tid for tid, state, _ in pending if state == "pending"}
    sums = {k: [0, 0, 0, 0] for k in range(len(accounts))}
    for tid, _, d, c, amount, _, _, _, flags, _, _, _ in history:
        if not flags & _NOT_POSTED:
            sums[d][0] += amount
            sums[c][1] += amount
        if tid in open_ids:
            sums[d][2] += amount
            sums[c][3] += amount
    for k, dp, cp, dpn, cpn in totals:
        assert [dp, cp, dpn, cpn] == sums[k], (k, history)
    by_unit: dict[str, int] = {}
    for k, dp, cp, _, _ in totals:  # double entry: per unit, the balances sum to zero
        by_unit[UNITS[k]] = by_unit.get(UNITS[k], 0) + cp - dp
    assert set(by_unit.values()) <= {0}, by_unit


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=scripts, retry_salt=st.booleans())
def test_one_pass_equals_one_by_one(
    engine: Engine, script: list[list[tuple[Any, ...]]], retry_salt: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    outcomes = []
    for one_pass in (True, False):
        clock = Clock()
        led, accounts = _setup(engine, clock)
        results = []
        with monkeypatch.context() as m:
            if not one_pass:
                m.setattr(transfer_module, "_simple_batch", lambda *args: None)
            for b, batch in enumerate(script):
                clock.advance(7)
                transfers = [_transfer(b, spec, accounts, retry_salt) for spec in batch]
                results.append([(r.index, r.id, r.result, r.field) for r in led.create_transfers(transfers)])
                _assert_totals_equal_history(engine, led.tenant_id, accounts)
        outcomes.append((results, _stored(engine, led.tenant_id, accounts)))
    assert outcomes[0] == outcomes[1]


def _spy(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    calls: list[object] = []
    original = transfer_module._simple_batch

    def spy(*args: Any) -> Any:
        calls.append(result := original(*args))
        return result

    monkeypatch.setattr(transfer_module, "_simple_batch", spy)
    return calls


def test_pending_linked_batches_take_the_one_pass_path(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Guard for the test above: chains of holds (the invoice run's shape) go through the one-pass path,
    and their reservations are open and can be posted and voided afterwards."""
    clock = Clock()
    led, accounts = _setup(engine, clock)
    calls = _spy(monkeypatch)
    holds = [
        Transfer(f"h{i}", accounts[i % 4], accounts[4], 100 + i, "hold",
                 flags=(TransferFlags.LINKED if i % 2 == 0 else TransferFlags.NONE) | TransferFlags.PENDING,
                 timeout_s=60 if i % 3 == 0 else 0)
        for i in range(8)
    ]  # fmt: skip
    assert all(r.result is Result.CREATED for r in led.create_transfers(holds))
    assert calls and calls[-1] is not None
    wallet = led.account(accounts[0])
    assert (wallet.debits_pending, wallet.available) == (100 + 104, 5_000 - 204)
    assert led.lookup(["h0"])["h0"].timeout_us == holds[0].timeout_s * 1_000_000 + led.lookup(["h0"])["h0"].ts_us
    post = Transfer("p0", None, None, 60, "", flags=TransferFlags.POST_PENDING, pending_id="h0")
    void = Transfer("v1", None, None, None, "", flags=TransferFlags.VOID_PENDING, pending_id="h4")
    assert [r.result for r in led.create_transfers([post, void])] == [Result.CREATED, Result.CREATED]
    wallet = led.account(accounts[0])
    assert (wallet.debits_posted, wallet.debits_pending) == (60, 0)
    _assert_totals_equal_history(engine, led.tenant_id, accounts)


def test_a_retried_batch_moves_nothing_twice(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The one-pass insert meets the primary key, rolls its savepoint back, and the general path answers
    EXISTS for each transfer (or EXISTS_WITH_DIFFERENT_FIELD for a changed body); no total moves."""
    clock = Clock()
    led, accounts = _setup(engine, clock)
    batch = [Transfer(f"r{i}", accounts[i % 4], accounts[4], 10 + i, "spend") for i in range(20)]
    assert all(r.result is Result.CREATED for r in led.create_transfers(batch))
    before = _stored(engine, led.tenant_id, accounts)
    calls = _spy(monkeypatch)
    assert all(r.result is Result.EXISTS for r in led.create_transfers(batch))
    changed = [
        *batch[:5],
        Transfer("r5", accounts[1], accounts[4], 999, "spend"),
        Transfer("new", accounts[0], accounts[4], 1),
    ]
    results = led.create_transfers(changed)
    assert [r.result for r in results] == [Result.EXISTS] * 5 + [Result.EXISTS_WITH_DIFFERENT_FIELD, Result.CREATED]
    assert results[5].field == "amount"
    assert calls == [None, None]  # both tried the one-pass path and fell back
    after = _stored(engine, led.tenant_id, accounts)
    assert after[0][0] == (0, before[0][0][1] + 1, *before[0][0][2:])  # only "new" moved, 1 cent
    assert len(after[1]) == len(before[1]) + 1
    _assert_totals_equal_history(engine, led.tenant_id, accounts)


def test_a_refused_batch_leaves_no_trace(engine: Engine) -> None:
    """An overdraft anywhere in a plain batch: the one-pass path writes nothing (savepoint and checks
    before writing), the general path creates the others and refuses that one."""
    clock = Clock()
    led, accounts = _setup(engine, clock)
    batch = [Transfer(f"o{i}", accounts[0], accounts[4], 1_000, "spend") for i in range(6)]
    results = [r.result for r in led.create_transfers(batch)]
    assert results == [Result.CREATED] * 5 + [Result.EXCEEDS_CREDITS]
    assert led.account(accounts[0]).balance == 0
    _, history, _ = _stored(engine, led.tenant_id, accounts)
    assert [h[1] for h in history] == list(range(1, len(history) + 1))  # no sequence numbers lost
    _assert_totals_equal_history(engine, led.tenant_id, accounts)


ODD: dict[str, Any] = {
    "system id": dict(id="~sys"),
    "empty id": dict(id=""),
    "id of 129 bytes": dict(id="é" * 64 + "x"),
    "id of 128 bytes": dict(id="é" * 64),
    "id after the prefix": dict(id="ü-not-system"),
    "code too long": dict(code="c" * 33),
    "reference of 257 bytes": dict(reference="€" * 85 + "xx"),
    "reference of 256 bytes": dict(reference="€" * 85 + "x"),
    "bool amount": dict(amount=True),
    "zero amount": dict(amount=0),
    "amount past int64": dict(amount=INT64_MAX + 1),
    "same account": dict(credit_account_id="DEBIT"),
    "unknown account": dict(credit_account_id=10**9),
    "timeout without pending": dict(timeout_s=30),
    "negative timeout": dict(flags=TransferFlags.PENDING, timeout_s=-1),
    "pending id on a plain transfer": dict(pending_id="t0"),
    "post flag": dict(flags=TransferFlags.POST_PENDING, pending_id="nope"),
    "open chain": dict(flags=TransferFlags.LINKED),
    "explicit time": dict(at_us=1_700_000_000_000_000),
    "units differ": dict(credit_account_id="PTS"),
    "id repeated in the batch": dict(id="g0"),
}


@pytest.mark.parametrize("odd", sorted(ODD))
def test_odd_transfer_in_a_batch_same_as_one_by_one(engine: Engine, odd: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every validation the one-pass path does as a column check lands where the one-by-one path lands."""
    outcomes = []
    for one_pass in (True, False):
        led, accounts = _setup(engine, Clock())
        fields: dict[str, Any] = dict(ODD[odd])
        replace = {"DEBIT": accounts[0], "PTS": accounts[6]}
        if fields.get("credit_account_id") in replace:
            fields["credit_account_id"] = replace[fields["credit_account_id"]]
        good = [Transfer(f"g{i}", accounts[i % 4], accounts[4], 10 + i, "spend") for i in range(5)]
        odd_one = Transfer(**{**dict(id="odd", debit_account_id=accounts[0], credit_account_id=accounts[4], amount=7,
                                    code="spend"), **fields})  # fmt: skip
        with monkeypatch.context() as m:
            if not one_pass:
                m.setattr(transfer_module, "_simple_batch", lambda *args: None)
            batch = [*good[:3], odd_one, *good[3:]]
            results = [(r.index, r.id, r.result, r.field) for r in led.create_transfers(batch)]
        outcomes.append((results, _stored(engine, led.tenant_id, accounts)))
        _assert_totals_equal_history(engine, led.tenant_id, accounts)
    assert outcomes[0] == outcomes[1]
