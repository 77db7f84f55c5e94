"""Journal export for accounting: the ledger's posted movements in a time range, as double-entry rows.

    text = export_journal(engine, tenant_id, start, end)                # one row per transfer leg
    text = export_journal(engine, tenant_id, start, end, summary=True)  # one row per account, then per unit

Every posted transfer (a plain transfer, or the posted part of a post_pending) with a time in
[start, end) gives two rows: a debit on its debit account and a credit on its credit account, with
the same amount, so for every unit the debits equal the credits. Pending reservations and voids
move no posted balance and are left out (a later post of a reservation appears on its own date).
Amounts are exact decimals of the unit (currency minor units or the points unit's scale), written
from the stored integers by integer arithmetic.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, select

from invoicing.ledger.tables import ledger_accounts, ledger_transfers
from invoicing.ledger.transfer import TransferFlags
from invoicing.ledger.unit import from_us, resolve_unit, to_us
from metering.errors import InvalidArgument

_NOT_POSTED = int(TransferFlags.PENDING | TransferFlags.VOID_PENDING)

COLUMNS = ("date", "transfer_id", "seq", "account_id", "account", "account_kind", "customer", "unit", "debit",
           "credit", "code", "reference")  # fmt: skip
SUMMARY_COLUMNS = ("account_id", "account", "account_kind", "customer", "unit", "debit", "credit", "net_debit")


def exact(scaled: int, scale: int) -> str:
    """An exact decimal string with exactly `scale` places: (12345, 2) → "123.45", (-5, 3) → "-0.005"."""
    sign = "-" if scaled < 0 else ""
    whole, frac = divmod(abs(int(scaled)), 10**scale)
    return f"{sign}{whole}" + (f".{frac:0{scale}d}" if scale else "")


@dataclass(frozen=True, slots=True)
class JournalLeg:
    """One side of a posted transfer. Exactly one of `debit` / `credit` is non-zero (scaled integers)."""

    ts_us: int
    transfer_id: str
    seq: int
    account_id: int
    account: str  # readable name: kind, plus the peer (grant id, other unit) where there is one
    account_kind: str
    customer: str
    unit: str
    scale: int
    debit: int
    credit: int
    code: str
    reference: str

    @property
    def date(self) -> str:
        return _iso(self.ts_us)


def _iso(ts_us: int) -> str:
    return from_us(ts_us).isoformat().replace("+00:00", "Z")


def _account_name(kind: str, peer: str) -> str:
    return f"{kind}:{peer}" if peer else kind


def _window(start: datetime, end: datetime) -> tuple[int, int]:
    if start.tzinfo is None or end.tzinfo is None:
        raise InvalidArgument("journal range instants need a time zone, e.g. 2026-01-01T00:00Z")
    lo, hi = to_us(start), to_us(end)
    if hi <= lo:
        raise InvalidArgument(f"journal range is empty: --to {end.isoformat()} is not after --from {start.isoformat()}")
    return lo, hi


def iter_legs(conn: Connection, tenant_id: int, start: datetime, end: datetime) -> Iterator[JournalLeg]:
    """Legs of the posted transfers dated in [start, end), in ledger order (seq), debit leg first."""
    lo, hi = _window(start, end)
    a = ledger_accounts.c
    accounts = {
        int(r.id): r
        for r in conn.execute(select(a.id, a.kind, a.customer, a.unit, a.peer).where(a.tenant_id == tenant_id))
    }
    scales: dict[str, int] = {}
    t = ledger_transfers.c
    rows = conn.execution_options(yield_per=5000).execute(
        select(t.transfer_id, t.seq, t.debit_account_id, t.credit_account_id, t.amount, t.unit, t.code, t.reference,
               t.ts_us)
        .where(t.tenant_id == tenant_id, t.ts_us >= lo, t.ts_us < hi, t.flags.op("&")(_NOT_POSTED) == 0)
        .order_by(t.seq)
    )  # fmt: skip
    for r in rows:
        unit = str(r.unit)
        if unit not in scales:
            scales[unit] = resolve_unit(conn, tenant_id, unit).scale
        amount = int(r.amount)
        for account_id, debit, credit in ((int(r.debit_account_id), amount, 0), (int(r.credit_account_id), 0, amount)):
            acct = accounts[account_id]
            yield JournalLeg(
                int(r.ts_us), str(r.transfer_id), int(r.seq), account_id, _account_name(acct.kind, acct.peer),
                str(acct.kind), str(acct.customer), unit, scales[unit], debit, credit, str(r.code), str(r.reference),
            )  # fmt: skip


def journal_legs(engine: Engine, tenant_id: int, start: datetime, end: datetime) -> list[JournalLeg]:
    with engine.connect() as conn:
        return list(iter_legs(conn, tenant_id, start, end))


@dataclass(slots=True)
class AccountTotal:
    account_id: int
    account: str
    account_kind: str
    customer: str
    unit: str
    scale: int
    debit: int = 0
    credit: int = 0


def summarize(legs: list[JournalLeg]) -> tuple[list[AccountTotal], dict[str, tuple[int, int, int]]]:
    """Per account (by unit, then account id) debits and credits, and per unit (debits, credits, scale)."""
    by_account: dict[int, AccountTotal] = {}
    by_unit: dict[str, tuple[int, int, int]] = {}
    for leg in legs:
        acct = by_account.get(leg.account_id)
        if acct is None:
            acct = by_account[leg.account_id] = AccountTotal(
                leg.account_id, leg.account, leg.account_kind, leg.customer, leg.unit, leg.scale
            )
        acct.debit += leg.debit
        acct.credit += leg.credit
        d, c, _ = by_unit.get(leg.unit, (0, 0, leg.scale))
        by_unit[leg.unit] = (d + leg.debit, c + leg.credit, leg.scale)
    accounts = sorted(by_account.values(), key=lambda x: (x.unit, x.account_id))
    return accounts, dict(sorted(by_unit.items()))


def unit_totals(legs: list[JournalLeg]) -> dict[str, tuple[int, int]]:
    """unit → (total debits, total credits), scaled integers; equal for every unit by construction."""
    return {u: (d, c) for u, (d, c, _) in summarize(legs)[1].items()}


def export_journal(engine: Engine, tenant_id: int, start: datetime, end: datetime, *, summary: bool = False) -> str:
    """The journal of [start, end) as CSV: one row per transfer leg, or (summary) one per account
    followed by one `total` row per unit, whose debit and credit are equal."""
    legs = journal_legs(engine, tenant_id, start, end)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if not summary:
        w.writerow(COLUMNS)
        for g in legs:
            w.writerow([
                g.date, g.transfer_id, g.seq, g.account_id, g.account, g.account_kind, g.customer, g.unit,
                exact(g.debit, g.scale) if g.debit else "", exact(g.credit, g.scale) if g.credit else "", g.code,
                g.reference,
            ])  # fmt: skip
        return buf.getvalue()
    accounts, units = summarize(legs)
    w.writerow(SUMMARY_COLUMNS)
    for a in accounts:
        w.writerow([a.account_id, a.account, a.account_kind, a.customer, a.unit, exact(a.debit, a.scale),
                    exact(a.credit, a.scale), exact(a.debit - a.credit, a.scale)])  # fmt: skip
    for unit, (d, c, scale) in units.items():
        w.writerow(["", "total", "", "", unit, exact(d, scale), exact(c, scale), exact(d - c, scale)])
    return buf.getvalue()


__all__ = [
    "COLUMNS",
    "SUMMARY_COLUMNS",
    "AccountTotal",
    "JournalLeg",
    "exact",
    "export_journal",
    "iter_legs",
    "journal_legs",
    "summarize",
    "unit_totals",
]
