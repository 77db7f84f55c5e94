"""Subscriptions, billing cycles, the ledger of credits and points, invoices (later issues)."""
