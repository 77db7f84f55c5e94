"""ledger: accounts, transfers, grants, conversion rates

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TRANSFER_ID = sa.String(length=128).with_variant(sa.String(length=128, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "ledger_points_units",
        sa.Column("tenant_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("scale", sa.SmallInteger(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_ledger_points_units_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("tenant_id", "code", name=op.f("pk_ledger_points_units")),
    )
    op.create_table(
        "ledger_rates",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("points_unit", sa.String(length=32), nullable=False),
        sa.Column("rate_units", sa.BigInteger(), nullable=False),
        sa.Column("rate_scale", sa.SmallInteger(), nullable=False),
        sa.Column("rounding", sa.String(length=16), nullable=False),
        sa.Column("valid_from_us", sa.BigInteger(), nullable=False),
        sa.Column("valid_to_us", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_ledger_rates_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_rates")),
        sa.UniqueConstraint(
            "tenant_id", "currency", "points_unit", "valid_from_us",
            name=op.f("uq_ledger_rates_tenant_id_currency_points_unit_valid_from_us"),
        ),
    )  # fmt: skip
    op.create_table(
        "ledger_accounts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("customer", sa.String(length=256), nullable=False),
        sa.Column("unit", sa.String(length=32), nullable=False),
        sa.Column("peer", sa.String(length=128), nullable=False),
        sa.Column("flags", sa.SmallInteger(), nullable=False),
        sa.Column("debits_posted", sa.BigInteger(), nullable=False),
        sa.Column("credits_posted", sa.BigInteger(), nullable=False),
        sa.Column("debits_pending", sa.BigInteger(), nullable=False),
        sa.Column("credits_pending", sa.BigInteger(), nullable=False),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_ledger_accounts_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_accounts")),
        sa.UniqueConstraint(
            "tenant_id", "kind", "customer", "unit", "peer",
            name=op.f("uq_ledger_accounts_tenant_id_kind_customer_unit_peer"),
        ),
    )  # fmt: skip
    op.create_index("ix_ledger_accounts_tenant_customer", "ledger_accounts", ["tenant_id", "customer"], unique=False)
    op.create_table(
        "ledger_transfers",
        sa.Column("tenant_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("transfer_id", TRANSFER_ID, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("debit_account_id", sa.Integer(), nullable=False),
        sa.Column("credit_account_id", sa.Integer(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("unit", sa.String(length=32), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("reference", sa.String(length=256), nullable=False),
        sa.Column("flags", sa.SmallInteger(), nullable=False),
        sa.Column("pending_id", TRANSFER_ID, nullable=True),
        sa.Column("timeout_us", sa.BigInteger(), nullable=True),
        sa.Column("ts_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "transfer_id", name=op.f("pk_ledger_transfers")),
    )
    op.create_index("ix_ledger_transfers_debit", "ledger_transfers", ["debit_account_id", "seq"], unique=False)
    op.create_index("ix_ledger_transfers_credit", "ledger_transfers", ["credit_account_id", "seq"], unique=False)
    op.create_table(
        "ledger_pending",
        sa.Column("tenant_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("transfer_id", TRANSFER_ID, nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("timeout_us", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "transfer_id", name=op.f("pk_ledger_pending")),
    )
    op.create_index("ix_ledger_pending_timeout", "ledger_pending", ["tenant_id", "state", "timeout_us"], unique=False)
    op.create_table(
        "ledger_sequences",
        sa.Column("tenant_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_ledger_sequences_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_ledger_sequences")),
    )
    op.create_table(
        "ledger_grants",
        sa.Column("tenant_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("grant_id", TRANSFER_ID, nullable=False),
        sa.Column("customer", sa.String(length=256), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("unit", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("effective_at_us", sa.BigInteger(), nullable=False),
        sa.Column("expires_at_us", sa.BigInteger(), nullable=True),
        sa.Column("applies_to", sa.Text(), nullable=True),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["ledger_accounts.id"], name=op.f("fk_ledger_grants_account_id_ledger_accounts")
        ),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_ledger_grants_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("tenant_id", "grant_id", name=op.f("pk_ledger_grants")),
    )
    op.create_index("ix_ledger_grants_tenant_customer", "ledger_grants", ["tenant_id", "customer"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_ledger_grants_tenant_customer", table_name="ledger_grants")
    op.drop_table("ledger_grants")
    op.drop_table("ledger_sequences")
    op.drop_index("ix_ledger_pending_timeout", table_name="ledger_pending")
    op.drop_table("ledger_pending")
    op.drop_index("ix_ledger_transfers_credit", table_name="ledger_transfers")
    op.drop_index("ix_ledger_transfers_debit", table_name="ledger_transfers")
    op.drop_table("ledger_transfers")
    op.drop_index("ix_ledger_accounts_tenant_customer", table_name="ledger_accounts")
    op.drop_table("ledger_accounts")
    op.drop_table("ledger_rates")
    op.drop_table("ledger_points_units")
