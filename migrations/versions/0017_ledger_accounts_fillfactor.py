"""ledger accounts fillfactor: room on each page so balance updates can be HOT (PostgreSQL only)

Revision ID: 0017
Revises: 0016

Every ledger batch rewrites the running totals of each account it touches. At the default fillfactor
(100) the pages of `ledger_accounts` are full, so the new row version lands on another page and every
update inserts into all three of the table's indexes (primary key, the unique account key, the
customer index) and leaves dead entries for vacuum: about 2 % of balance updates were HOT
(heap-only tuples). The balance update sets only `debits_posted`, `credits_posted`, `debits_pending`
and `credits_pending`, none of which is indexed, so with free space on the page the new version stays
there and touches no index. `fillfactor = 70` leaves that space for rows written after this revision;
existing pages keep their layout until they are rewritten (VACUUM FULL, CLUSTER or pg_repack), which
this revision does not do because it would hold an exclusive lock on a table every writer locks.

SQLite has no storage parameters and rewrites rows in place: nothing to do there.
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE ledger_accounts SET (fillfactor = 70)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE ledger_accounts RESET (fillfactor)")
