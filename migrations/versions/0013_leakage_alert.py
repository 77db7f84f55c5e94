"""leakage alerts: an alert may be tenant-wide (no customer)

Revision ID: 0013
Revises: 0012

`alerts.customer_id` becomes nullable: a `leakage` alert watches the tenant's unbilled usage, not one
customer's. Downgrading deletes tenant-wide alerts (and their crossings) before restoring NOT NULL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.alter_column("customer_id", existing_type=sa.Integer(), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM alert_crossings WHERE alert_id IN (SELECT id FROM alerts WHERE customer_id IS NULL)")
    op.execute("DELETE FROM alerts WHERE customer_id IS NULL")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.alter_column("customer_id", existing_type=sa.Integer(), nullable=False)
