"""Billing: who is billed for what, what is due, the money, the documents, and what goes out.

Sub-packages, lowest first (each imports only those before it; `tests/test_layers.py` keeps it so):

    catalog/        customers, plans and their versions, periods and proration (pure calendar)
    events/         the outbox (events written with the change that causes them) and webhooks
    subscriptions/  subscriptions, their lifecycle, and what is due as of an instant
    ledger/         double-entry accounts and transfers: wallets, grants, points, the journal
    documents/      the invoice run, rating due items into drafts, invoices and credit notes, PDF
    insight/        entitlements, customer 360 and portfolio, threshold alerts

`tables.py` and `platform_tables.py` are the schema every sub-package shares (one MetaData, one Alembic
history). Each sub-package's `__init__` is its API; the underscored modules behind it are private.
"""
