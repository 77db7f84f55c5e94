"""points earned from usage: earning rules on plan versions, and what each rule has credited per period

Revision ID: 0012
Revises: 0011

* `plan_versions.earning`: the version's earning rules as one canonical JSON list (like its charges and
  features): points of a unit per unit of a meter, with an optional cap per billing period.
* `points_accruals`: one row per subscription, plan version, rule and billing period with the points credited so
  far; an accrual run credits the difference between what the period's usage earns and this, in the same
  transaction as the ledger transfer, so re-runs and re-sent events never credit twice.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("plan_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("earning", sa.Text(), server_default="[]", nullable=False))
    op.create_table(
        "points_accruals",
        sa.Column("tenant_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("subscription_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("plan_version_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("customer", sa.String(length=256), nullable=False),
        sa.Column("meter", sa.String(length=64), nullable=False),
        sa.Column("unit", sa.String(length=32), nullable=False),
        sa.Column("quantity", sa.String(length=48), nullable=False),
        sa.Column("through", sa.DateTime(timezone=True), nullable=False),
        sa.Column("earned", sa.BigInteger(), nullable=False),
        sa.Column("transfers", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["plan_version_id"], ["plan_versions.id"], name=op.f("fk_points_accruals_plan_version_id_plan_versions")
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"], ["subscriptions.id"], name=op.f("fk_points_accruals_subscription_id_subscriptions")
        ),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_points_accruals_tenant_id_tenants")),
        sa.PrimaryKeyConstraint(
            "tenant_id", "subscription_id", "plan_version_id", "rule", "period_start", name=op.f("pk_points_accruals")
        ),
    )
    op.create_index("ix_points_accruals_tenant_customer", "points_accruals", ["tenant_id", "customer"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_points_accruals_tenant_customer", table_name="points_accruals")
    op.drop_table("points_accruals")
    with op.batch_alter_table("plan_versions", schema=None) as batch_op:
        batch_op.drop_column("earning")
