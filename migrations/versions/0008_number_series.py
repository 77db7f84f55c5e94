"""documents: a gapless number series per document type (invoices, credit notes) per tenant

Revision ID: 0008
Revises: 0007

`invoice_counters` (one counter per tenant) becomes `number_series` (one per tenant and series); the
existing counter carries over as the `invoice` series. `invoices.number_series` records which series a
number came from (every number so far: `invoice`, so documents finalized before keep their INV- labels);
numbers are unique per (tenant, series).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "number_series",
        sa.Column("tenant_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("series", sa.String(length=16), nullable=False),
        sa.Column("last_number", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_number_series_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("tenant_id", "series", name=op.f("pk_number_series")),
    )
    op.execute(
        "INSERT INTO number_series (tenant_id, series, last_number) "
        "SELECT tenant_id, 'invoice', last_number FROM invoice_counters"
    )
    op.drop_table("invoice_counters")
    with op.batch_alter_table("invoices") as batch:
        batch.add_column(sa.Column("number_series", sa.String(length=16), nullable=True))
    # Every number so far came from the one shared series, which carries on as `invoice`.
    op.execute("UPDATE invoices SET number_series = 'invoice' WHERE number IS NOT NULL")
    with op.batch_alter_table("invoices") as batch:
        batch.drop_constraint("uq_invoices_tenant_id_number", type_="unique")
        batch.create_unique_constraint(
            "uq_invoices_tenant_id_number_series_number", ["tenant_id", "number_series", "number"]
        )


def downgrade() -> None:
    with op.batch_alter_table("invoices") as batch:
        batch.drop_constraint("uq_invoices_tenant_id_number_series_number", type_="unique")
        batch.drop_column("number_series")
        batch.create_unique_constraint("uq_invoices_tenant_id_number", ["tenant_id", "number"])
    op.create_table(
        "invoice_counters",
        sa.Column("tenant_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_number", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_invoice_counters_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_invoice_counters")),
    )
    op.execute(
        "INSERT INTO invoice_counters (tenant_id, last_number) "
        "SELECT tenant_id, max(last_number) FROM number_series GROUP BY tenant_id"
    )
    op.drop_table("number_series")
