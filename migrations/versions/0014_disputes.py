"""disputes and portal links: customers flag invoice lines; each tenant's portal link signing key

Revision ID: 0014
Revises: 0013

* `disputes`: a customer's flag on one line of an issued invoice and finance's answer (a credit note or a
  rejection note). `open_line` is the line's position while the dispute is open, NULL once resolved; the
  unique (invoice_id, open_line) pair allows one open dispute per line.
* `portal_secrets`: one random key per tenant signing its customer portal links; rotating it (version + 1)
  revokes every link and portal session of that tenant.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "disputes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.Column("line_position", sa.Integer(), nullable=False),
        sa.Column("open_line", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("line_amount", sa.BigInteger(), nullable=False),
        sa.Column("opened_by", sa.String(length=100), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_by", sa.String(length=100), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("credit_amount", sa.BigInteger(), nullable=True),
        sa.Column("credit_note_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_disputes_tenant_id_tenants")),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], name=op.f("fk_disputes_customer_id_customers")),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"], name=op.f("fk_disputes_invoice_id_invoices")),
        sa.ForeignKeyConstraint(["credit_note_id"], ["invoices.id"], name=op.f("fk_disputes_credit_note_id_invoices")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_disputes")),
        sa.UniqueConstraint("invoice_id", "open_line", name=op.f("uq_disputes_invoice_id_open_line")),
    )
    op.create_index("ix_disputes_tenant_status", "disputes", ["tenant_id", "status", "id"], unique=False)
    op.create_index("ix_disputes_tenant_customer", "disputes", ["tenant_id", "customer_id", "id"], unique=False)
    op.create_table(
        "portal_secrets",
        sa.Column("tenant_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("secret", sa.LargeBinary(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rotated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_portal_secrets_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_portal_secrets")),
    )


def downgrade() -> None:
    op.drop_table("portal_secrets")
    op.drop_index("ix_disputes_tenant_customer", table_name="disputes")
    op.drop_index("ix_disputes_tenant_status", table_name="disputes")
    op.drop_table("disputes")
