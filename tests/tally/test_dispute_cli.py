"""`tally dispute` and `tally portal` end to end on SQLite, with one-line errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from tally.console.portal._links import parse
from tests.invoicing.test_billing_cli import Run, acme, one_line_error
from tests.tally.test_invoice_pay_cli import _finalized

__all__ = ["acme"]  # fixtures (run comes from tests/conftest.py)


def test_open_list_credit_and_reject(run: Run, acme: Path) -> None:
    _finalized(run, acme)  # INV-000001: the pro plan's 30.00 USD fee (line 1) and FR's 20 % tax (line 2)
    code, out, err = run("dispute", "open", "acme", "INV-000001", "1", "--reason", "Charged twice")
    assert code == 0, err
    assert "dispute 1 opened on line 1 of INV-000001 (base, 30.00 USD)" in out
    assert "open dispute (1)" in one_line_error(run("dispute", "open", "acme", "1", "1", "--reason", "again"))
    assert "only a line that charges something" in one_line_error(
        run("dispute", "open", "acme", "INV-000001", "2", "--reason", "tax")
    )
    code, out, _ = run("dispute", "list", "acme", "--status", "open")
    assert code == 0 and "Charged twice" in out and "INV-000001" in out and "30.00 USD" in out

    assert "not an amount in USD" in one_line_error(run("dispute", "resolve", "acme", "1", "--credit", "1.001"))
    assert "more than line 1" in one_line_error(run("dispute", "resolve", "acme", "1", "--credit", "30.01"))
    code, out, err = run("dispute", "resolve", "acme", "1", "--credit", "10", "--note", "Sorry")
    assert code == 0, err
    assert "dispute 1 credited: CN-000001 issued for 10.00 USD before tax on line 1 of INV-000001" in out
    code, out, _ = run("dispute", "resolve", "acme", "1", "--credit", "10", "--note", "Sorry")
    assert code == 0 and "already credited 10.00 USD (CN-000001); nothing changed" in out
    assert "already credited 10.00 USD" in one_line_error(run("dispute", "resolve", "acme", "1", "--reject", "no"))
    # The credit note paid the invoice down: 36.00 - (10.00 + 2.00 tax) = 24.00 still due.
    code, out, _ = run("invoice", "payments", "acme", "1")
    assert code == 0 and "24.00 USD due" in out

    assert run("dispute", "open", "acme", "INV-000001", "1", "--reason", "Still wrong")[0] == 0
    code, out, _ = run("dispute", "resolve", "acme", "2", "--reject", "The rest is right")
    assert code == 0 and "dispute 2 rejected" in out
    code, out, _ = run("dispute", "list", "acme", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["id"], r["status"], r["credit_amount"], r["credit_note"], r["note"]) for r in rows] == [
        (1, "credited", "10.00", "CN-000001", "Sorry"), (2, "rejected", None, None, "The rest is right"),
    ]  # fmt: skip
    code, out, _ = run("dispute", "list", "acme", "--status", "open")
    assert code == 0 and "no open disputes for acme" in out


def test_usage_errors_and_unknown_disputes(run: Run, acme: Path) -> None:
    _finalized(run, acme)
    code, _, err = run("dispute", "resolve", "acme", "1")
    assert code == 2 and "exactly one of them" in err
    code, _, err = run("dispute", "resolve", "acme", "1", "--reject", "x", "--note", "y")
    assert code == 2 and "--note goes with --credit" in err
    code, _, err = run("dispute", "list", "acme", "--status", "closed")
    assert code == 2
    assert "no dispute 7" in one_line_error(run("dispute", "resolve", "acme", "7", "--reject", "x"))
    assert "no invoice numbered INV-000009" in one_line_error(
        run("dispute", "open", "acme", "INV-000009", "1", "--reason", "x")
    )


def test_portal_link_and_revoke(run: Run, acme: Path) -> None:
    assert run("customer", "create", "acme", "cus_42")[0] == 0
    code, out, err = run("portal", "link", "acme", "cus_42", "--ttl", "120", "--base-url", "https://bill.example/")
    assert code == 0, err
    url = out.strip()
    assert url.startswith("https://bill.example/portal/") and "valid until" in err and "cus_42" in err
    claims, _, _ = parse(url.removeprefix("https://bill.example/portal/"))
    left = (claims.expires_at - datetime.now(UTC)).total_seconds()
    assert 100 < left <= 120 and claims.key_version == 1 and claims.return_url == ""
    assert "no customer" in one_line_error(run("portal", "link", "acme", "nobody"))
    assert "return_url" in one_line_error(run("portal", "link", "acme", "cus_42", "--return-url", "javascript:x"))
    code, _, _ = run("portal", "link", "acme", "cus_42", "--ttl", "604801")
    assert code == 2
    code, out, _ = run("portal", "revoke", "acme")
    assert code == 0 and "version 2" in out
