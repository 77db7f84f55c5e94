"""Accounts: customer wallets and tenant system accounts, created on first use.

Every account has one unit and TigerBeetle's four running totals. Its balance is
`credits_posted - debits_posted` (credit-normal: money a customer holds is a credit), so across
all accounts of one unit the balances always sum to zero. Flags, as in TigerBeetle:

- DEBITS_MUST_NOT_EXCEED_CREDITS on every customer wallet and grant (no negative wallet), on
  revenue (cannot give back more than was earned) and on expiry;
- CREDITS_MUST_NOT_EXCEED_DEBITS on cash_in, promotions and points_issuance, the accounts money enters
  from (they carry a debit balance: what customers paid in, what promotions were issued, what points
  customers earned from their usage);
- none on the conversion accounts, which sit between two units and may hold either sign.

Pending amounts count against the flags (a reservation is as binding as a posting).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntFlag

from sqlalchemy import Connection, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from invoicing.ledger.errors import AccountNotFound
from invoicing.ledger.tables import ledger_accounts
from invoicing.ledger.unit import now_us, resolve_unit
from metering.errors import InvalidArgument


class AccountFlags(IntFlag):
    NONE = 0
    DEBITS_MUST_NOT_EXCEED_CREDITS = 1
    CREDITS_MUST_NOT_EXCEED_DEBITS = 2


CUSTOMER_KINDS = ("cash", "promo", "points", "grant", "receivable")
SYSTEM_KINDS = (
    "revenue", "promotions", "cash_in", "expiry", "conversion", "tax_payable", "bad_debt", "points_issuance",
)  # fmt: skip

KIND_FLAGS: dict[str, AccountFlags] = {
    "cash": AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
    "promo": AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
    "points": AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
    "grant": AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
    "revenue": AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
    "expiry": AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
    "cash_in": AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS,
    "promotions": AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS,
    # Where points earned from usage come from (`invoicing.earning`): one per points unit.
    "points_issuance": AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS,
    "conversion": AccountFlags.NONE,
    # What a customer owes on finalized invoices (debit) or is owed (credit, until moved to their cash
    # wallet); tax collected for the authorities; receivables written off. Either sign is meaningful.
    "receivable": AccountFlags.NONE,
    "tax_payable": AccountFlags.NONE,
    "bad_debt": AccountFlags.NONE,
}


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    tenant_id: int
    kind: str
    customer: str
    unit: str
    peer: str
    flags: AccountFlags
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int

    @property
    def balance(self) -> int:
        """Posted balance, credit-normal."""
        return self.credits_posted - self.debits_posted

    @property
    def available(self) -> int:
        """What can still be debited: posted balance less reservations."""
        return self.credits_posted - self.debits_posted - self.debits_pending

    @property
    def label(self) -> str:
        who = f"{self.customer}:" if self.customer else "system:"
        peer = f":{self.peer}" if self.peer else ""
        return f"{who}{self.kind}:{self.unit}{peer}"


_COLUMNS = (
    ledger_accounts.c.id,
    ledger_accounts.c.tenant_id,
    ledger_accounts.c.kind,
    ledger_accounts.c.customer,
    ledger_accounts.c.unit,
    ledger_accounts.c.peer,
    ledger_accounts.c.flags,
    ledger_accounts.c.debits_posted,
    ledger_accounts.c.credits_posted,
    ledger_accounts.c.debits_pending,
    ledger_accounts.c.credits_pending,
)


def _from_row(row: object) -> Account:
    r = row._mapping  # type: ignore[attr-defined]
    return Account(
        int(r["id"]),
        int(r["tenant_id"]),
        r["kind"],
        r["customer"],
        r["unit"],
        r["peer"],
        AccountFlags(int(r["flags"])),
        int(r["debits_posted"]),
        int(r["credits_posted"]),
        int(r["debits_pending"]),
        int(r["credits_pending"]),
    )


def get_or_create(conn: Connection, tenant_id: int, kind: str, unit: str, customer: str = "", peer: str = "") -> int:
    """The account's id, inserting it if missing; safe against a concurrent creator (ON CONFLICT DO NOTHING)."""
    if kind not in KIND_FLAGS:
        raise InvalidArgument(f"unknown account kind {kind!r}; one of {', '.join(KIND_FLAGS)}")
    if (kind in CUSTOMER_KINDS) != bool(customer):
        raise InvalidArgument(f"{kind} accounts {'need' if kind in CUSTOMER_KINDS else 'take no'} customer")
    if customer and len(customer.encode()) > 256:
        raise InvalidArgument("customer ids are at most 256 bytes")
    a = ledger_accounts.c
    where = (a.tenant_id == tenant_id, a.kind == kind, a.customer == customer, a.unit == unit, a.peer == peer)
    found = conn.execute(select(a.id).where(*where)).scalar()
    if found is not None:
        return int(found)
    resolved = resolve_unit(conn, tenant_id, unit)
    if kind in ("points", "points_issuance") and resolved.kind != "points":
        raise InvalidArgument(f"{kind} accounts count a points unit, not the currency {unit}")
    if kind in ("cash", "promo") and resolved.kind != "currency":
        raise InvalidArgument(f"{kind} wallets count a currency, not the points unit {unit}")
    values = dict(
        tenant_id=tenant_id,
        kind=kind,
        customer=customer,
        unit=unit,
        peer=peer,
        flags=int(KIND_FLAGS[kind]),
        debits_posted=0,
        credits_posted=0,
        debits_pending=0,
        credits_pending=0,
        created_at_us=now_us(),
    )
    dialect = conn.dialect.name
    stmt = (pg_insert if dialect == "postgresql" else sqlite_insert)(ledger_accounts).values(**values)
    conn.execute(stmt.on_conflict_do_nothing())
    return int(conn.execute(select(a.id).where(*where)).scalar_one())


def wallet_kind(unit_code: str, promotional: bool = False) -> str:
    from invoicing.ledger.unit import is_currency

    if not is_currency(unit_code):
        return "points"
    return "promo" if promotional else "cash"


def get_account(conn: Connection, tenant_id: int, account_id: int) -> Account:
    row = conn.execute(
        select(*_COLUMNS).where(ledger_accounts.c.id == account_id, ledger_accounts.c.tenant_id == tenant_id)
    ).first()
    if row is None:
        raise AccountNotFound(f"account {account_id} does not exist in this tenant; list them with `tally wallet list`")
    return _from_row(row)


def list_accounts(conn: Connection, tenant_id: int, customer: str | None = None) -> list[Account]:
    stmt = select(*_COLUMNS).where(ledger_accounts.c.tenant_id == tenant_id)
    if customer is not None:
        stmt = stmt.where(ledger_accounts.c.customer == customer)
    return [_from_row(r) for r in conn.execute(stmt.order_by(ledger_accounts.c.id))]


def find_account(
    conn: Connection, tenant_id: int, kind: str, unit: str, customer: str = "", peer: str = ""
) -> Account | None:
    a = ledger_accounts.c
    row = conn.execute(
        select(*_COLUMNS).where(
            a.tenant_id == tenant_id, a.kind == kind, a.customer == customer, a.unit == unit, a.peer == peer
        )
    ).first()
    return None if row is None else _from_row(row)
