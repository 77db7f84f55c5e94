"""`tally invoice ...` end to end on SQLite, with one-line errors."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

from tests.invoicing.test_billing_cli import Run, acme, one_line_error

__all__ = ["acme"]  # fixtures (run comes from tests/conftest.py)


def _setup(run: Run, acme: Path) -> None:
    assert run("customer", "create", "acme", "cus_42", "--tax-region", "FR")[0] == 0
    assert run("plan", "create", "acme", str(acme))[0] == 0
    assert run("plan", "publish", "acme", "pro")[0] == 0
    assert run("invoice", "tax", "acme", "FR", "20")[0] == 0
    assert run("subscription", "create", "acme", "cus_42", "pro", "--at", "2026-01-01T00:00Z")[0] == 0


def test_run_list_show_finalize_export(run: Run, acme: Path) -> None:
    _setup(run, acme)
    code, out, _ = run("invoice", "run", "acme", "--as-of", "2026-02-01T00:00Z")
    assert code == 0, out
    # Two documents: Jan 1 (January's fee) and Feb 1 (January's usage, none, and February's fee): 2 x (30 + 20%).
    assert "invoices written" in out and "total USD" in out and "72.00 USD" in out
    assert re.search(r"invoices written\s*│\s*2\s", out), out
    code, out, _ = run("invoice", "run", "acme", "--as-of", "2026-02-01T00:00Z")
    assert code == 0 and re.search(r"invoices written\s*│\s*0\s", out), out
    code, out, _ = run("invoice", "list", "acme", "--customer", "cus_42")
    assert code == 0 and out.count("draft") == 2
    rows = [ln for ln in out.splitlines() if "draft" in ln]
    assert "2026-01-01" in rows[0] and "2026-02-01" in rows[1]  # billed: January's fee; then February's document
    code, out, _ = run("invoice", "show", "acme", "1")
    assert code == 0 and "base" in out and "calls" not in out and "total 36.00 USD" in out
    assert "2026-01-01 00:00Z – 2026-02-01 00:00Z" in out
    code, out, _ = run("invoice", "show", "acme", "2")  # January's usage and February's fee
    assert code == 0 and "calls" in out and "base" in out and "total 36.00 USD" in out
    assert "2026-01-01 00:00Z – 2026-03-01 00:00Z" in out
    code, out, _ = run("invoice", "finalize", "acme", "1")
    assert code == 0 and "INV-000001" in out
    code, out, _ = run("invoice", "export", "acme", "1", "--format", "json")
    doc = json.loads(out)
    assert (doc["number"], doc["status"], doc["total"], doc["tax"]) == (1, "finalized", "36.00", "6.00")
    assert (doc["amount_due"], doc["customer"], doc["timing"]) == ("36.00", "cus_42", "in_advance")
    code, out, _ = run("invoice", "export", "acme", "1", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))  # one row per line, the invoice's columns on each
    assert [(r["line_kind"], r["amount"]) for r in rows] == [("charge", "30.00"), ("tax", "6.00")]
    assert {(r["label"], r["total"], r["amount_due"]) for r in rows} == {("INV-000001", "36.00", "36.00")}
    assert run("invoice", "pay", "acme", "1")[0] == 0
    code, out, _ = run("invoice", "export", "acme", "1", "--format", "json")
    assert (json.loads(out)["status"], json.loads(out)["amount_due"]) == ("paid", "0.00")
    code, out, _ = run("invoice", "preview", "acme", "cus_42", "--at", "2026-02-10T00:00Z")
    assert code == 0 and "preview" in out


def test_one_line_errors(run: Run, acme: Path) -> None:
    _setup(run, acme)
    assert "no invoice 9" in one_line_error(run("invoice", "show", "acme", "9"))
    assert "--as-of" in one_line_error(run("invoice", "run", "acme", "--as-of", "yesterday"))
    run("invoice", "run", "acme", "--as-of", "2026-01-01T00:00Z")
    assert run("invoice", "void", "acme", "1", "--reason", "test")[0] == 0
    assert "only a draft can be finalized" in one_line_error(run("invoice", "finalize", "acme", "1"))
    assert "tax rate" in one_line_error(run("invoice", "tax", "acme", "FR", "120"))


def test_the_status_filter_offers_every_status(run: Run, acme: Path) -> None:
    from invoicing.documents import STATUSES
    from tally.cli import invoice

    assert invoice.STATUSES == STATUSES
    _setup(run, acme)
    assert run("invoice", "run", "acme", "--as-of", "2026-01-01T00:00Z")[0] == 0
    code, out, _ = run("invoice", "list", "acme", "--status", "draft")
    assert code == 0 and "cus_42" in out
    code, out, _ = run("invoice", "list", "acme", "--status", "partially_paid")
    assert code == 0 and "cus_42" not in out
    code, _, err = run("invoice", "list", "acme", "--status", "owed")
    assert code == 2 and "partially_paid" in err and "uncollectible" in err
