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
    assert "invoices written" in out and "total USD" in out and "72.00 USD" in out  # 2 x (30 + 20% tax) + no usage
    code, out, _ = run("invoice", "run", "acme", "--as-of", "2026-02-01T00:00Z")
    assert code == 0 and re.search(r"invoices written\s*│\s*0\s", out), out
    code, out, _ = run("invoice", "list", "acme", "--customer", "cus_42")
    assert code == 0 and out.count("draft") == 3
    code, out, _ = run("invoice", "show", "acme", "1")
    assert code == 0 and "base" in out and "total 36.00 USD" in out
    code, out, _ = run("invoice", "finalize", "acme", "1")
    assert code == 0 and "INV-000001" in out
    code, out, _ = run("invoice", "export", "acme", "1", "--format", "json")
    doc = json.loads(out)
    assert (doc["number"], doc["status"], doc["total"], doc["tax"]) == (1, "finalized", "36.00", "6.00")
    code, out, _ = run("invoice", "export", "acme", "1", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["kind"] for r in rows] == ["charge", "tax", "total"] and rows[-1]["amount"] == "36.00"
    assert run("invoice", "pay", "acme", "1")[0] == 0
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
