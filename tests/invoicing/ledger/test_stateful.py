"""Stateful property test: random ledger traffic against a plain in-memory model, on both databases.

After every step: per unit the balances sum to zero, no flagged account is negative, every
account's posted totals equal the sums of its posted transfers, and the database equals the model.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test
from sqlalchemy import Engine, func, select

from invoicing.ledger import (
    AccountFlags,
    BalanceOverflow,
    Grant,
    InsufficientFunds,
    InvalidTransfer,
    Ledger,
    Result,
    Transfer,
    TransferFlags,
)
from invoicing.ledger.tables import ledger_transfers
from invoicing.ledger.unit import to_us
from metering.errors import InvalidArgument
from tests.conftest import make_tenant
from tests.invoicing.ledger.conftest import T0, Clock

INT64_MAX = 2**63 - 1
_tenants = itertools.count()


@dataclass
class MAcct:
    unit: str
    flags: int
    dp: int = 0
    cp: int = 0
    dpn: int = 0
    cpn: int = 0


@dataclass
class MPending:
    debit: int
    credit: int
    amount: int
    timeout_us: int | None
    state: str = "pending"


@dataclass
class Model:
    accounts: dict[int, MAcct] = field(default_factory=dict)
    sent: dict[str, Transfer] = field(default_factory=dict)
    pending: dict[str, MPending] = field(default_factory=dict)

    def snapshot(self) -> dict[int, tuple[int, int, int, int]]:
        return {k: (a.dp, a.cp, a.dpn, a.cpn) for k, a in self.accounts.items()}

    def restore(self, snap: dict[int, tuple[int, int, int, int]]) -> None:
        for k, (dp, cp, dpn, cpn) in snap.items():
            a = self.accounts[k]
            a.dp, a.cp, a.dpn, a.cpn = dp, cp, dpn, cpn

    def bad(self, a: MAcct, debit_side: bool) -> Result | None:
        if debit_side and (a.dp > INT64_MAX or a.dpn > INT64_MAX or a.dp + a.dpn > INT64_MAX):
            return Result.OVERFLOWS_DEBITS
        if not debit_side and (a.cp > INT64_MAX or a.cpn > INT64_MAX or a.cp + a.cpn > INT64_MAX):
            return Result.OVERFLOWS_CREDITS
        return None

    def apply(self, t: Transfer, now_us: int) -> Result:
        if not 0 < len(t.id.encode()) <= 128:
            return Result.ID_INVALID
        plain = not t.flags & (TransferFlags.POST_PENDING | TransferFlags.VOID_PENDING)
        if plain and t.amount is not None and not 0 < t.amount <= INT64_MAX:
            return Result.AMOUNT_INVALID
        if plain and t.debit_account_id == t.credit_account_id:
            return Result.ACCOUNTS_MUST_BE_DIFFERENT
        if t.id in self.sent:
            return Result.EXISTS if self.sent[t.id] == t else Result.EXISTS_WITH_DIFFERENT_FIELD
        if t.flags & (TransferFlags.POST_PENDING | TransferFlags.VOID_PENDING):
            assert t.pending_id is not None
            p = self.pending.get(t.pending_id)
            if p is None:
                return Result.PENDING_TRANSFER_NOT_FOUND
            if p.state == "posted":
                return Result.PENDING_TRANSFER_ALREADY_POSTED
            if p.state == "voided":
                return Result.PENDING_TRANSFER_ALREADY_VOIDED
            if p.state == "expired" or (p.timeout_us is not None and p.timeout_us <= now_us):
                return Result.PENDING_TRANSFER_EXPIRED
            post = bool(t.flags & TransferFlags.POST_PENDING)
            amount = p.amount if t.amount is None else t.amount
            if amount > p.amount:
                return Result.EXCEEDS_PENDING_TRANSFER_AMOUNT
            dr, cr = self.accounts[p.debit], self.accounts[p.credit]
            dr.dpn -= p.amount
            cr.cpn -= p.amount
            if post:
                dr.dp += amount
                cr.cp += amount
            p.state = "posted" if post else "voided"
            self.sent[t.id] = t
            return Result.CREATED
        amount = t.amount
        assert amount is not None and t.debit_account_id is not None and t.credit_account_id is not None
        if not 0 < amount <= INT64_MAX:
            return Result.AMOUNT_INVALID
        if t.debit_account_id == t.credit_account_id:
            return Result.ACCOUNTS_MUST_BE_DIFFERENT
        dr, cr = self.accounts[t.debit_account_id], self.accounts[t.credit_account_id]
        if dr.unit != cr.unit:
            return Result.ACCOUNTS_MUST_HAVE_THE_SAME_UNIT
        is_pending = bool(t.flags & TransferFlags.PENDING)
        if is_pending:
            dr.dpn += amount
            cr.cpn += amount
        else:
            dr.dp += amount
            cr.cp += amount
        problem = self.bad(dr, True) or self.bad(cr, False)
        if problem is None and dr.flags & AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS and dr.dp + dr.dpn > dr.cp:
            problem = Result.EXCEEDS_CREDITS
        if problem is None and cr.flags & AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS and cr.cp + cr.cpn > cr.dp:
            problem = Result.EXCEEDS_DEBITS
        if problem is not None:
            return problem
        if is_pending:
            timeout = now_us + t.timeout_s * 1_000_000 if t.timeout_s else None
            self.pending[t.id] = MPending(t.debit_account_id, t.credit_account_id, amount, timeout)
        self.sent[t.id] = t
        return Result.CREATED

    def apply_chain(self, chain: list[Transfer], now_us: int) -> list[Result]:
        if chain[-1].flags & TransferFlags.LINKED:
            return [Result.LINKED_EVENT_FAILED] * (len(chain) - 1) + [Result.LINKED_EVENT_CHAIN_OPEN]
        snap = self.snapshot()
        sent, pend = dict(self.sent), {k: MPending(**vars(v)) for k, v in self.pending.items()}
        out: list[Result] = []
        for t in chain:
            r = self.apply(t, now_us)
            out.append(r)
            if r not in (Result.CREATED, Result.EXISTS):
                self.restore(snap)
                self.sent, self.pending = sent, pend
                return [
                    r if x is r and i == len(out) - 1 else Result.LINKED_EVENT_FAILED for i, x in enumerate(out)
                ] + [Result.LINKED_EVENT_FAILED] * (len(chain) - len(out))
        return out


amounts = st.one_of(st.integers(1, 3_000), st.sampled_from([0, -5, INT64_MAX, 2**63]))
ids = st.sampled_from([f"t{i}" for i in range(12)])


def make_machine(engine: Engine) -> type[RuleBasedStateMachine]:
    class LedgerMachine(RuleBasedStateMachine):
        @initialize()
        def setup(self) -> None:
            self.clock = Clock()
            tenant = make_tenant(engine, f"sm{next(_tenants)}")
            self.ledger = Ledger(engine, tenant.tenant_id, self.clock)
            self.ledger.define_points_unit("pts", 0)
            self.ledger.set_rate("USD", "pts", "3", T0)
            self.model = Model()
            accts = [
                self.ledger.wallet("c0", "USD"),
                self.ledger.wallet("c1", "USD"),
                self.ledger.system_account("revenue", "USD"),
                self.ledger.system_account("cash_in", "USD"),
                self.ledger.system_account("conversion", "USD", "pts"),
                self.ledger.wallet("c0", "pts"),
                self.ledger.system_account("conversion", "pts", "USD"),
                self.ledger.system_account("promotions", "USD"),
                self.ledger.system_account("expiry", "USD"),
            ]
            for aid in accts:
                a = self.ledger.account(aid)
                self.model.accounts[aid] = MAcct(a.unit, int(a.flags))
            self.ids = accts
            self.promo = self.ledger.wallet("c0", "USD", promotional=True)
            self.sync_new_account(self.promo)
            self.grants: dict[str, tuple[int, int, int | None, int]] = {}  # id -> (account, priority, expires, since)
            self.n = 0

        def now(self) -> int:
            return to_us(self.clock.now)

        def fresh(self, prefix: str) -> str:
            self.n += 1
            return f"{prefix}{self.n}"

        def sync_new_account(self, aid: int) -> None:
            if aid not in self.model.accounts:
                a = self.ledger.account(aid)
                self.model.accounts[aid] = MAcct(a.unit, int(a.flags))

        def send(self, chain: list[Transfer]) -> None:
            expected = self.model.apply_chain(chain, self.now())
            got = [r.result for r in self.ledger.create_transfers(chain)]
            assert got == expected, (chain, got, expected)

        @rule(data=st.data(), tid=ids, amount=amounts, pending=st.booleans(), timeout=st.sampled_from([0, 0, 30, 90]))
        def transfer(self, data: st.DataObject, tid: str, amount: int, pending: bool, timeout: int) -> None:
            # Any account but promotions and expiry, which only grants and their expiry move (an int64-sized
            # transfer into them would make every later grant refuse, which no rule here models).
            d = data.draw(st.sampled_from(self.ids[:7]))
            c = data.draw(st.sampled_from(self.ids[:7]))
            flags = TransferFlags.PENDING if pending else TransferFlags.NONE
            self.send([Transfer(tid, d, c, amount, "x", flags=flags, timeout_s=timeout if pending else 0)])

        @rule(data=st.data(), n=st.integers(2, 3))
        def linked_chain(self, data: st.DataObject, n: int) -> None:
            chain = []
            for k in range(n):
                d = data.draw(st.sampled_from(self.ids[:4]))
                c = data.draw(st.sampled_from(self.ids[:4]))
                amount = data.draw(st.integers(1, 2_000))
                flags = TransferFlags.LINKED if k < n - 1 else TransferFlags.NONE
                chain.append(Transfer(self.fresh("l"), d, c, amount, "x", flags=flags))
            self.send(chain)

        @rule(data=st.data(), post=st.booleans(), partial=st.booleans())
        def resolve(self, data: st.DataObject, post: bool, partial: bool) -> None:
            if not self.model.pending:
                return
            pid = data.draw(st.sampled_from(sorted(self.model.pending)))
            amount = None
            if post and partial:
                amount = data.draw(st.integers(1, self.model.pending[pid].amount + 1))
            flags = TransferFlags.POST_PENDING if post else TransferFlags.VOID_PENDING
            self.send([Transfer(self.fresh("r"), None, None, amount, "", flags=flags, pending_id=pid)])

        @rule(data=st.data())
        def retry(self, data: st.DataObject) -> None:
            if not self.model.sent:
                return
            tid = data.draw(st.sampled_from(sorted(self.model.sent)))
            t = self.model.sent[tid]
            if data.draw(st.booleans()) or t.amount is None or t.amount >= INT64_MAX:
                self.send([t])
            else:
                changed = Transfer(t.id, t.debit_account_id, t.credit_account_id, t.amount + 1, t.code, t.reference,
                                   t.flags, t.pending_id, t.timeout_s)  # fmt: skip
                res = self.ledger.create_transfers([changed])[0]
                if t.flags & TransferFlags.LINKED:  # alone, a linked transfer is an open chain
                    assert res.result is Result.LINKED_EVENT_CHAIN_OPEN
                else:
                    assert res.result is Result.EXISTS_WITH_DIFFERENT_FIELD and res.field == "amount"

        @rule(seconds=st.sampled_from([10, 45, 100]))
        def advance_and_expire(self, seconds: int) -> None:
            self.clock.advance(seconds)
            now = self.now()
            due = sorted(k for k, p in self.model.pending.items() if p.state == "pending" and p.timeout_us is not None
                         and p.timeout_us <= now)  # fmt: skip
            for pid in due:
                p = self.model.pending[pid]
                self.model.accounts[p.debit].dpn -= p.amount
                self.model.accounts[p.credit].cpn -= p.amount
                p.state = "expired"
            assert sorted(self.ledger.expire_pending()) == due
            for _gid, (aid, _, expires, _) in sorted(self.grants.items()):
                a = self.model.accounts[aid]
                left = a.cp - a.dp - a.dpn
                if expires is not None and expires <= now and left > 0:
                    a.dp += left
                    self.model.accounts[self.ids[8]].cp += left
            self.ledger.expire_grants()

        @rule(amount=st.integers(1, 1_000), priority=st.integers(0, 2), expires=st.sampled_from([None, 20, 60]))
        def grant(self, amount: int, priority: int, expires: int | None) -> None:
            gid = self.fresh("g")
            exp = None if expires is None else self.now() + expires * 1_000_000
            info = self.ledger.grant(Grant(gid, "c0", amount, "USD", "promotional", priority, expires_at_us=exp))
            self.sync_new_account(info.account_id)
            self.model.accounts[info.account_id].cp += amount
            self.model.accounts[self.ids[7]].dp += amount
            self.grants[gid] = (info.account_id, priority, exp, self.now())

        @rule(amount=st.integers(1, 2_500))
        def spend(self, amount: int) -> None:
            now = self.now()
            live = [  # the ledger's draw order: priority, expiry (never last), then effective time, then id
                (pr, exp is None, exp or 0, eff, gid, aid)
                for gid, (aid, pr, exp, eff) in self.grants.items()
                if exp is None or exp > now
            ]
            sources = [aid for *_, aid in sorted(live)] + [
                self.ledger.wallet("c0", "USD", promotional=True),
                self.ids[0],
            ]
            for aid in sources:
                self.sync_new_account(aid)
            avail = {aid: self.model.accounts[aid].cp - self.model.accounts[aid].dp - self.model.accounts[aid].dpn
                     for aid in sources}  # fmt: skip
            if sum(max(0, v) for v in avail.values()) < amount:
                try:
                    self.ledger.spend(self.fresh("s"), "c0", amount, "USD", "tokens")
                except InsufficientFunds:
                    return
                raise AssertionError("spend beyond the available credit succeeded")
            revenue = self.model.accounts[self.ids[2]]
            if revenue.cp + revenue.cpn + amount > INT64_MAX:  # the revenue account would leave int64
                try:
                    self.ledger.spend(self.fresh("s"), "c0", amount, "USD", "tokens")
                except (InvalidTransfer, BalanceOverflow):  # refused: the invariant checks nothing moved
                    return
                raise AssertionError("a spend that overflows revenue succeeded")
            s = self.ledger.spend(self.fresh("s"), "c0", amount, "USD", "tokens")
            left = amount
            expected = []
            for aid in sources:
                take = min(left, max(0, avail[aid]))
                if take:
                    expected.append((aid, take))
                    self.model.accounts[aid].dp += take
                    self.model.accounts[self.ids[2]].cp += take
                    left -= take
            assert [(d.account_id, d.amount) for d in s.draws] == expected

        @rule(amount=st.integers(1, 1_500))
        def convert(self, amount: int) -> None:
            a = self.model.accounts[self.ids[0]]
            debited, credited = (amount // 100) * 100, (amount // 100) * 3
            if debited == 0 or a.cp - a.dp - a.dpn < debited:
                try:
                    self.ledger.convert(self.fresh("cv"), "c0", amount, "USD", "pts")
                except (InsufficientFunds, InvalidArgument):  # refused: the invariant checks nothing moved
                    return
                raise AssertionError("conversion should have been refused")
            out_leg, in_leg = self.model.accounts[self.ids[4]], self.model.accounts[self.ids[6]]
            points = self.model.accounts[self.ids[5]]
            before = self.model.snapshot()
            a.dp += debited
            out_leg.cp += debited
            in_leg.dp += credited
            points.cp += credited
            m = self.model
            if m.bad(a, True) or m.bad(out_leg, False) or m.bad(in_leg, True) or m.bad(points, False):
                # A transfer drove one of the accounts near int64: the ledger refuses rather than wraps.
                m.restore(before)
                try:
                    self.ledger.convert(self.fresh("cv"), "c0", amount, "USD", "pts")
                except InvalidTransfer as exc:
                    assert "overflows" in str(exc), exc
                    return
                raise AssertionError("a conversion that overflows an account succeeded")
            conv = self.ledger.convert(self.fresh("cv"), "c0", amount, "USD", "pts")
            assert (conv.debited, conv.credited) == (debited, credited)

        @invariant()
        def matches_model_and_balances(self) -> None:
            accounts = self.ledger.accounts()
            by_unit: dict[str, int] = {}
            for a in accounts:
                by_unit[a.unit] = by_unit.get(a.unit, 0) + a.balance
                m = self.model.accounts[a.id]
                assert (a.debits_posted, a.credits_posted, a.debits_pending, a.credits_pending) == (
                    m.dp, m.cp, m.dpn, m.cpn,
                ), a  # fmt: skip
                if a.flags & AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS:
                    assert a.debits_posted + a.debits_pending <= a.credits_posted
                if a.flags & AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS:
                    assert a.credits_posted + a.credits_pending <= a.debits_posted
            assert all(v == 0 for v in by_unit.values()), by_unit
            t = ledger_transfers.c
            posted = t.flags.op("&")(int(TransferFlags.PENDING | TransferFlags.VOID_PENDING)) == 0
            with engine.connect() as c:
                for a in accounts:
                    debits = c.execute(
                        select(func.coalesce(func.sum(t.amount), 0)).where(
                            t.tenant_id == self.ledger.tenant_id, t.debit_account_id == a.id, posted
                        )
                    ).scalar_one()
                    credits = c.execute(
                        select(func.coalesce(func.sum(t.amount), 0)).where(
                            t.tenant_id == self.ledger.tenant_id, t.credit_account_id == a.id, posted
                        )
                    ).scalar_one()
                    assert (int(debits), int(credits)) == (a.debits_posted, a.credits_posted)  # fmt: skip

    return LedgerMachine


def test_ledger_state_machine(engine: Engine) -> None:
    run_state_machine_as_test(
        make_machine(engine),
        settings=settings(
            max_examples=30,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
