"""Double-entry ledger of credits and points (issue 6)."""
