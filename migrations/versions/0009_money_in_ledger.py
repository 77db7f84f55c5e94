"""documents: consolidated invoices, amounts due and payments

Revision ID: 0009
Revises: 0008

* `invoice_items`: which document billed each due item (a document now groups a customer's items of one
  billing date and currency); existing invoices each billed the one item named by their key.
* `invoices.amount_due` / `amount_paid` / `payment_due_at` / `uncollectible_at`: what is still owed on a
  finalized document (Σ over open documents = the customer's receivable in the ledger).
* `payments`: payments recorded against invoices (amount, date, method, reference), idempotent by key.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("invoices") as batch:
        batch.add_column(sa.Column("amount_due", sa.BigInteger(), server_default="0", nullable=False))
        batch.add_column(sa.Column("amount_paid", sa.BigInteger(), server_default="0", nullable=False))
        batch.add_column(sa.Column("payment_due_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("uncollectible_at", sa.DateTime(timezone=True), nullable=True))
    # Documents finalized before: still owed in full unless paid or void.
    op.execute("UPDATE invoices SET amount_due = total WHERE status = 'finalized' AND total > 0")
    op.execute("UPDATE invoices SET amount_paid = total WHERE status = 'paid' AND total > 0")
    op.create_table(
        "invoice_items",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.Column("item_key", sa.String(length=255), nullable=False),
        sa.Column("subscription_id", sa.Integer(), nullable=True),
        sa.Column("timing", sa.String(length=16), nullable=True),
        sa.Column("span_end", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"], name=op.f("fk_invoice_items_invoice_id_invoices")),
        sa.ForeignKeyConstraint(
            ["subscription_id"], ["subscriptions.id"], name=op.f("fk_invoice_items_subscription_id_subscriptions")
        ),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_invoice_items_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoice_items")),
        sa.UniqueConstraint("tenant_id", "item_key", name=op.f("uq_invoice_items_tenant_id_item_key")),
    )
    op.create_index(op.f("ix_invoice_items_invoice_id"), "invoice_items", ["invoice_id"], unique=False)
    # Before this revision an invoice billed exactly the item its key names (corrections bill none).
    op.execute(
        "INSERT INTO invoice_items (tenant_id, invoice_id, item_key, subscription_id, timing, span_end) "
        "SELECT tenant_id, id, idempotency_key, subscription_id, timing, span_end FROM invoices "
        "WHERE kind = 'invoice'"
    )
    op.create_table(
        "payments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.Column("payment_key", sa.String(length=100), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("applied", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.Column("reference", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"], name=op.f("fk_payments_invoice_id_invoices")),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_payments_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments")),
        sa.UniqueConstraint("tenant_id", "payment_key", name=op.f("uq_payments_tenant_id_payment_key")),
    )
    op.create_index(op.f("ix_payments_invoice_id"), "payments", ["invoice_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_payments_invoice_id"), table_name="payments")
    op.drop_table("payments")
    op.drop_index(op.f("ix_invoice_items_invoice_id"), table_name="invoice_items")
    op.drop_table("invoice_items")
    with op.batch_alter_table("invoices") as batch:
        batch.drop_column("uncollectible_at")
        batch.drop_column("payment_due_at")
        batch.drop_column("amount_paid")
        batch.drop_column("amount_due")
