"""Ledger tables; registered on the one shared MetaData so foreign keys to tenants resolve.

Why they look the way they do:
- Amounts and balances are BigInteger counts of the unit's smallest step (cents for USD, the
  points unit's own scale): exact, and int64 like TigerBeetle's balances (checked in Python before
  every write, so nothing ever wraps).
- `ledger_transfers` is append-only: a row is never updated or deleted. Its primary key is the
  client's idempotency key `(tenant_id, transfer_id)`; `seq` is a ledger-assigned number, strictly
  increasing per tenant in commit order, that orders history. It comes from `ledger_sequences`
  (one counter row per tenant, bumped once per batch), so a batch costs no round trip per row.
- `ledger_accounts` holds the four running totals (posted/pending × debits/credits), updated in the
  same transaction as the transfers that move them; that row is what writers lock.
- `ledger_pending` has one row per pending transfer with its state (pending / posted / voided /
  expired): the only mutable state besides the totals, so a post, void or expiry sweep finds an open
  reservation by key instead of scanning history. The history itself is the immutable post/void
  transfer that resolved it.
- Transfer ids compare in byte order on PostgreSQL ("C" collation), the same as SQLite, so prefix
  range scans (`spend#0`, `spend#1`, ...) mean the same on both.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from metering.tables import metadata

TransferIdType = String(128).with_variant(String(128, collation="C"), "postgresql")

ledger_points_units = Table(
    "ledger_points_units",
    metadata,
    Column("tenant_id", Integer, ForeignKey("tenants.id"), primary_key=True, autoincrement=False),
    Column("code", String(32), primary_key=True),
    Column("scale", SmallInteger, nullable=False),
    Column("name", String(128), nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
)

ledger_rates = Table(
    "ledger_rates",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id"), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("points_unit", String(32), nullable=False),
    # Points per one whole currency unit, exact: rate = rate_units × 10^-rate_scale.
    Column("rate_units", BigInteger, nullable=False),
    Column("rate_scale", SmallInteger, nullable=False),
    Column("rounding", String(16), nullable=False),
    Column("valid_from_us", BigInteger, nullable=False),
    # Exclusive; NULL = open-ended.
    Column("valid_to_us", BigInteger, nullable=True),
    UniqueConstraint("tenant_id", "currency", "points_unit", "valid_from_us"),
)

ledger_accounts = Table(
    "ledger_accounts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id"), nullable=False),
    # cash / promo / points / grant (customer) or revenue / promotions / cash_in / expiry / conversion.
    Column("kind", String(16), nullable=False),
    Column("customer", String(256), nullable=False),  # "" for system accounts
    Column("unit", String(32), nullable=False),
    # The other unit for conversion accounts, the grant id for grant accounts, else "".
    Column("peer", String(128), nullable=False),
    Column("flags", SmallInteger, nullable=False),
    Column("debits_posted", BigInteger, nullable=False),
    Column("credits_posted", BigInteger, nullable=False),
    Column("debits_pending", BigInteger, nullable=False),
    Column("credits_pending", BigInteger, nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    UniqueConstraint("tenant_id", "kind", "customer", "unit", "peer"),
    Index("ix_ledger_accounts_tenant_customer", "tenant_id", "customer"),
)

ledger_transfers = Table(
    "ledger_transfers",
    metadata,
    Column("tenant_id", Integer, primary_key=True, autoincrement=False),
    Column("transfer_id", TransferIdType, primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("debit_account_id", Integer, nullable=False),
    Column("credit_account_id", Integer, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("unit", String(32), nullable=False),
    Column("code", String(32), nullable=False),
    Column("reference", String(256), nullable=False),
    # TransferFlags: linked / pending / post_pending / void_pending.
    Column("flags", SmallInteger, nullable=False),
    # For post/void: the pending transfer it resolves.
    Column("pending_id", TransferIdType, nullable=True),
    # For pending: when the reservation lapses (µs since epoch); NULL = never.
    Column("timeout_us", BigInteger, nullable=True),
    Column("ts_us", BigInteger, nullable=False),
    Index("ix_ledger_transfers_debit", "debit_account_id", "seq"),
    Index("ix_ledger_transfers_credit", "credit_account_id", "seq"),
)

ledger_pending = Table(
    "ledger_pending",
    metadata,
    Column("tenant_id", Integer, primary_key=True, autoincrement=False),
    Column("transfer_id", TransferIdType, primary_key=True),
    # pending / posted / voided / expired
    Column("state", String(8), nullable=False),
    Column("timeout_us", BigInteger, nullable=True),
    Index("ix_ledger_pending_timeout", "tenant_id", "state", "timeout_us"),
)

# One row per tenant: the last transfer seq handed out. Bumped under the same write lock/transaction
# as the transfers it numbers, so seq order is commit order per tenant.
ledger_sequences = Table(
    "ledger_sequences",
    metadata,
    Column("tenant_id", Integer, ForeignKey("tenants.id"), primary_key=True, autoincrement=False),
    Column("last_seq", BigInteger, nullable=False),
)

ledger_grants = Table(
    "ledger_grants",
    metadata,
    Column("tenant_id", Integer, ForeignKey("tenants.id"), primary_key=True, autoincrement=False),
    Column("grant_id", TransferIdType, primary_key=True),
    Column("customer", String(256), nullable=False),
    Column("kind", String(16), nullable=False),  # paid / promotional
    Column("unit", String(32), nullable=False),
    Column("account_id", Integer, ForeignKey("ledger_accounts.id"), nullable=False),
    Column("amount", BigInteger, nullable=False),
    # Lower draws first.
    Column("priority", Integer, nullable=False),
    Column("effective_at_us", BigInteger, nullable=False),
    Column("expires_at_us", BigInteger, nullable=True),
    # Canonical JSON list of charge/meter codes it may pay for; NULL = anything.
    Column("applies_to", Text, nullable=True),
    Column("created_at_us", BigInteger, nullable=False),
    Index("ix_ledger_grants_tenant_customer", "tenant_id", "customer"),
)

__all__ = [
    "ledger_accounts",
    "ledger_grants",
    "ledger_pending",
    "ledger_points_units",
    "ledger_rates",
    "ledger_sequences",
    "ledger_transfers",
    "metadata",
]
