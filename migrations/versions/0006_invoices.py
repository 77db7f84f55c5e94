"""invoices: runs and their work items, invoices, lines, per-tenant numbering, tax rates

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "invoice_counters",
        sa.Column("tenant_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_number", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_invoice_counters_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_invoice_counters")),
    )
    op.create_table(
        "invoice_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_invoice_runs_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoice_runs")),
        sa.UniqueConstraint("tenant_id", "as_of", name=op.f("uq_invoice_runs_tenant_id_as_of")),
    )
    op.create_table(
        "tax_rates",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("region", sa.String(length=32), nullable=False),
        sa.Column("rate", sa.String(length=24), nullable=False),
        sa.Column("inclusive", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_tax_rates_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tax_rates")),
        sa.UniqueConstraint("tenant_id", "region", name=op.f("uq_tax_rates_tenant_id_region")),
    )
    op.create_table(
        "invoice_run_items",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("item_key", sa.String(length=255), nullable=False),
        sa.Column("subscription_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["invoice_runs.id"], name=op.f("fk_invoice_run_items_run_id_invoice_runs")),
        sa.ForeignKeyConstraint(
            ["subscription_id"], ["subscriptions.id"], name=op.f("fk_invoice_run_items_subscription_id_subscriptions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoice_run_items")),
        sa.UniqueConstraint("run_id", "item_key", name=op.f("uq_invoice_run_items_run_id_item_key")),
    )
    with op.batch_alter_table("invoice_run_items", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_invoice_run_items_status"), ["status"], unique=False)

    op.create_table(
        "invoices",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("subscription_id", sa.Integer(), nullable=True),
        sa.Column("plan_version_id", sa.Integer(), nullable=True),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("corrects_invoice_id", sa.Integer(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("timing", sa.String(length=16), nullable=True),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("span_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("span_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("number", sa.Integer(), nullable=True),
        sa.Column("subtotal", sa.BigInteger(), nullable=False),
        sa.Column("tax", sa.BigInteger(), nullable=False),
        sa.Column("credits_applied", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("tax_region", sa.String(length=32), nullable=False),
        sa.Column("tax_rate", sa.String(length=24), nullable=False),
        sa.Column("tax_inclusive", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finalized_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("voided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("void_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["corrects_invoice_id"], ["invoices.id"], name=op.f("fk_invoices_corrects_invoice_id_invoices")
        ),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], name=op.f("fk_invoices_customer_id_customers")),
        sa.ForeignKeyConstraint(
            ["plan_version_id"], ["plan_versions.id"], name=op.f("fk_invoices_plan_version_id_plan_versions")
        ),
        sa.ForeignKeyConstraint(["run_id"], ["invoice_runs.id"], name=op.f("fk_invoices_run_id_invoice_runs")),
        sa.ForeignKeyConstraint(
            ["subscription_id"], ["subscriptions.id"], name=op.f("fk_invoices_subscription_id_subscriptions")
        ),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_invoices_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoices")),
        sa.UniqueConstraint("tenant_id", "idempotency_key", name=op.f("uq_invoices_tenant_id_idempotency_key")),
        sa.UniqueConstraint("tenant_id", "number", name=op.f("uq_invoices_tenant_id_number")),
    )
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_invoices_corrects_invoice_id"), ["corrects_invoice_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_invoices_customer_id"), ["customer_id"], unique=False)

    op.create_table(
        "invoice_lines",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("charge_code", sa.String(length=64), nullable=False),
        sa.Column("meter", sa.String(length=64), nullable=True),
        sa.Column("group_key", sa.Text(), nullable=False),
        sa.Column("plan_version_id", sa.Integer(), nullable=True),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("quantity_units", sa.BigInteger(), nullable=False),
        sa.Column("quantity_scale", sa.Integer(), nullable=False),
        sa.Column("unit_price", sa.String(length=48), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("amount_exact", sa.String(length=80), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("lineage", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"], name=op.f("fk_invoice_lines_invoice_id_invoices")),
        sa.ForeignKeyConstraint(
            ["plan_version_id"], ["plan_versions.id"], name=op.f("fk_invoice_lines_plan_version_id_plan_versions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoice_lines")),
        sa.UniqueConstraint("invoice_id", "position", name=op.f("uq_invoice_lines_invoice_id_position")),
    )


def downgrade() -> None:
    op.drop_table("invoice_lines")
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_invoices_customer_id"))
        batch_op.drop_index(batch_op.f("ix_invoices_corrects_invoice_id"))

    op.drop_table("invoices")
    with op.batch_alter_table("invoice_run_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_invoice_run_items_status"))

    op.drop_table("invoice_run_items")
    op.drop_table("tax_rates")
    op.drop_table("invoice_runs")
    op.drop_table("invoice_counters")
