"""discounts and coupons: coupons, the discounts applying them, and the periods they redeemed

Revision ID: 0011
Revises: 0010

* `coupons`: a tenant's reusable discount definitions (percent or amount; once, repeating for N periods
  or forever; optional charge codes, redeem-by instant and limit on how many times it may be applied).
* `discounts`: a coupon applied to one customer (all its subscriptions) or one subscription, in force
  from `starts_at` until `removed_at`.
* `discount_redemptions`: one row per discount and billing period it produced a line for, unique on
  (discount, period start), so re-running a cycle never counts a period twice.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "coupons",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("percent", sa.String(length=24), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("duration", sa.String(length=16), nullable=False),
        sa.Column("periods", sa.Integer(), nullable=True),
        sa.Column("applies_to", sa.Text(), nullable=True),
        sa.Column("redeem_by", sa.DateTime(timezone=True), nullable=True),
        sa.Column("max_redemptions", sa.Integer(), nullable=True),
        sa.Column("times_applied", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_coupons_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coupons")),
        sa.UniqueConstraint("tenant_id", "code", name=op.f("uq_coupons_tenant_id_code")),
    )
    op.create_table(
        "discounts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("coupon_id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("subscription_id", sa.Integer(), nullable=True),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["coupon_id"], ["coupons.id"], name=op.f("fk_discounts_coupon_id_coupons")),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], name=op.f("fk_discounts_customer_id_customers")),
        sa.ForeignKeyConstraint(
            ["subscription_id"], ["subscriptions.id"], name=op.f("fk_discounts_subscription_id_subscriptions")
        ),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_discounts_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_discounts")),
    )
    op.create_index(op.f("ix_discounts_coupon_id"), "discounts", ["coupon_id"], unique=False)
    op.create_index(op.f("ix_discounts_customer_id"), "discounts", ["customer_id"], unique=False)
    op.create_table(
        "discount_redemptions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("discount_id", sa.Integer(), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.ForeignKeyConstraint(
            ["discount_id"], ["discounts.id"], name=op.f("fk_discount_redemptions_discount_id_discounts")
        ),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_discount_redemptions_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_discount_redemptions")),
        sa.UniqueConstraint(
            "discount_id", "period_start", name=op.f("uq_discount_redemptions_discount_id_period_start")
        ),
    )


def downgrade() -> None:
    op.drop_table("discount_redemptions")
    op.drop_index(op.f("ix_discounts_customer_id"), table_name="discounts")
    op.drop_index(op.f("ix_discounts_coupon_id"), table_name="discounts")
    op.drop_table("discounts")
    op.drop_table("coupons")
