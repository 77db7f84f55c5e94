"""Balances now and as of a past time, history with running balance, per-customer totals.

"Now" reads the account row (kept current by every transfer). "As of t" is recomputed from the
immutable transfers with a time at or before t, counting only posted effects (plain transfers and
the posted part of a post_pending): a reservation is not a balance, and history never changes, so
an as-of figure is the same whenever it is asked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select, union_all

from invoicing.ledger.account import Account, get_account, list_accounts
from invoicing.ledger.tables import ledger_transfers
from invoicing.ledger.transfer import StoredTransfer, TransferFlags, stored_from_row

_NOT_POSTED = int(TransferFlags.PENDING | TransferFlags.VOID_PENDING)


@dataclass(frozen=True, slots=True)
class Balance:
    account: Account
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int
    as_of_us: int | None

    @property
    def balance(self) -> int:
        return self.credits_posted - self.debits_posted


@dataclass(frozen=True, slots=True)
class HistoryLine:
    transfer: StoredTransfer
    #: Signed posted change to this account (credit-normal); 0 for pending and void.
    change: int
    running_balance: int


def balance(conn: Connection, tenant_id: int, account_id: int, as_of_us: int | None = None) -> Balance:
    acct = get_account(conn, tenant_id, account_id)
    if as_of_us is None:
        return Balance(acct, acct.debits_posted, acct.credits_posted, acct.debits_pending, acct.credits_pending, None)
    t = ledger_transfers.c
    posted = t.flags.op("&")(_NOT_POSTED) == 0

    def total(column: Any) -> int:
        value = conn.execute(
            select(func.coalesce(func.sum(t.amount), 0)).where(
                t.tenant_id == tenant_id, column == account_id, t.ts_us <= as_of_us, posted
            )
        ).scalar_one()
        return int(value)

    return Balance(acct, total(t.debit_account_id), total(t.credit_account_id), 0, 0, as_of_us)


def history(conn: Connection, tenant_id: int, account_id: int, limit: int | None = None) -> list[HistoryLine]:
    get_account(conn, tenant_id, account_id)
    # Two index range scans, (debit_account_id, seq) and (credit_account_id, seq), merged by seq: what the
    # history indexes are for. With `OR`, SQLite scanned every transfer of the tenant and sorted them.
    # A transfer never debits and credits the same account, so UNION ALL returns each row once.
    t = ledger_transfers.c
    sides = union_all(
        select(ledger_transfers).where(t.tenant_id == tenant_id, t.debit_account_id == account_id),
        select(ledger_transfers).where(t.tenant_id == tenant_id, t.credit_account_id == account_id),
    ).subquery()
    rows = conn.execute(select(sides).order_by(sides.c.seq))
    lines: list[HistoryLine] = []
    running = 0
    for r in rows:
        s = stored_from_row(r)
        change = 0
        if not int(s.flags) & _NOT_POSTED:
            change = s.amount if s.credit_account_id == account_id else -s.amount
        running += change
        lines.append(HistoryLine(s, change, running))
    return lines[-limit:] if limit else lines


@dataclass(frozen=True, slots=True)
class UnitTotal:
    unit: str
    balance: int
    available: int
    pending_in: int
    accounts: int


def customer_totals(conn: Connection, tenant_id: int, customer: str) -> list[UnitTotal]:
    """Everything a customer holds, per unit, over wallets and grant sub-accounts."""
    by_unit: dict[str, list[Account]] = {}
    for acct in list_accounts(conn, tenant_id, customer):
        by_unit.setdefault(acct.unit, []).append(acct)
    return [
        UnitTotal(
            unit,
            sum(a.balance for a in accts),
            sum(a.available for a in accts),
            sum(a.credits_pending for a in accts),
            len(accts),
        )
        for unit, accts in sorted(by_unit.items())
    ]
