"""documents finance can send: the seller's billing profile and the buyer's tax id

Revision ID: 0010
Revises: 0009

* `billing_profiles`: one row per tenant, the seller on its documents (legal name, address, tax id,
  payment instructions and terms, logo) and the document preferences the invoice run reads
  (`issue_zero_total`, `invoice_grouping`). A tenant without a row gets the defaults.
* `customers.tax_id` / `customers.invoice_grouping`: the buyer's tax id printed on its documents, and a
  per-customer override of the tenant's grouping (NULL = follow the tenant).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "billing_profiles",
        sa.Column("tenant_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("legal_name", sa.String(length=256), nullable=False),
        sa.Column("address", sa.Text(), nullable=True),
        sa.Column("tax_id", sa.String(length=64), nullable=False),
        sa.Column("payment_instructions", sa.Text(), nullable=False),
        sa.Column("payment_terms_days", sa.Integer(), nullable=False),
        sa.Column("logo", sa.LargeBinary(), nullable=True),
        sa.Column("issue_zero_total", sa.Boolean(), nullable=False),
        sa.Column("invoice_grouping", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_billing_profiles_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_billing_profiles")),
    )
    with op.batch_alter_table("customers") as batch:
        batch.add_column(sa.Column("tax_id", sa.String(length=64), server_default="", nullable=False))
        batch.add_column(sa.Column("invoice_grouping", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("customers") as batch:
        batch.drop_column("invoice_grouping")
        batch.drop_column("tax_id")
    op.drop_table("billing_profiles")
