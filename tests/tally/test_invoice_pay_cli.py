"""`tally invoice pay / payments / uncollectible / void --reissue` end to end on SQLite, with one-line errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from tally.cli import main
from tests.invoicing.test_billing_cli import Run, acme, one_line_error

__all__ = ["acme"]  # fixtures (run comes from tests/conftest.py)


def _finalized(run: Run, acme: Path) -> str:
    """cus_42 on the `pro` plan from January 1st, invoiced as of February 1st; invoice 1 finalized (36.00 USD
    with FR's 20% tax). Returns what `invoice show 1` printed."""
    assert run("customer", "create", "acme", "cus_42", "--tax-region", "FR")[0] == 0
    assert run("plan", "create", "acme", str(acme))[0] == 0
    assert run("plan", "publish", "acme", "pro")[0] == 0
    assert run("invoice", "tax", "acme", "FR", "20")[0] == 0
    assert run("subscription", "create", "acme", "cus_42", "pro", "--at", "2026-01-01T00:00Z")[0] == 0
    assert run("invoice", "run", "acme", "--as-of", "2026-02-01T00:00Z")[0] == 0
    code, out, err = run("invoice", "finalize", "acme", "1")
    assert code == 0 and "INV-000001" in out and "total 36.00 USD" in out, (out, err)
    return out


def test_partial_payment_then_the_rest_then_overpayment(run: Run, acme: Path) -> None:
    _finalized(run, acme)
    code, out, err = run("invoice", "pay", "acme", "1", "--amount", "12.50", "--date", "2026-02-03",
                         "--method", "card", "--reference", "VISA 4242", "--key", "p-1")  # fmt: skip
    assert code == 0, err
    assert "12.50 USD to INV-000001, now partially_paid (23.50 USD still due)" in out
    # The same key again records nothing twice.
    code, out, _ = run("invoice", "pay", "acme", "1", "--amount", "12.50", "--date", "2026-02-03",
                       "--method", "card", "--reference", "VISA 4242", "--key", "p-1")  # fmt: skip
    assert code == 0 and "already recorded" in out and "nothing moved" in out
    # Without --amount: everything still due.
    code, out, _ = run("invoice", "pay", "acme", "1", "--date", "2026-02-05T10:00Z")
    assert code == 0 and "23.50 USD to INV-000001, now paid (paid in full)" in out
    code, out, _ = run("invoice", "payments", "acme", "1")
    assert code == 0
    assert "payments of INV-000001 (paid)" in out and "paid 36.00 USD" in out and "due 0.00 USD" in out
    assert "12.50 USD" in out and "23.50 USD" in out and "card" in out and "VISA 4242" in out
    assert "2026-02-03" in out and "2026-02-05" in out and "10:00Z" in out  # the table may fold a date
    assert "is paid" in one_line_error(run("invoice", "pay", "acme", "1", "--amount", "1"))
    assert "is paid" in one_line_error(run("invoice", "pay", "acme", "1"))


def test_overpayment_goes_to_the_cash_wallet(run: Run, acme: Path) -> None:
    _finalized(run, acme)
    code, out, err = run("invoice", "pay", "acme", "1", "--amount", "40", "--date", "2026-02-03")
    assert code == 0, err
    assert "40.00 USD to INV-000001, now paid" in out and "4.00 USD overpaid went to cus_42's cash wallet" in out
    code, out, _ = run("wallet", "show", "acme", "cus_42")
    assert code == 0 and "4.00" in out


def test_uncollectible(run: Run, acme: Path) -> None:
    _finalized(run, acme)
    assert run("invoice", "pay", "acme", "1", "--amount", "6", "--date", "2026-02-03")[0] == 0
    code, out, _ = run("invoice", "uncollectible", "acme", "1", "--reason", "customer insolvent")
    assert code == 0 and "is uncollectible: 30.00 USD written off to bad debt" in out
    assert "is uncollectible" in one_line_error(run("invoice", "uncollectible", "acme", "1"))
    code, out, _ = run("invoice", "payments", "acme", "1")
    assert code == 0 and "(uncollectible)" in out and "6.00 USD" in out


@pytest.mark.parametrize(
    ("amount", "fragment"),
    [
        ("-1", "--amount -1: a payment is a positive amount"),
        ("0", "--amount 0: a payment is a positive amount"),
        ("1.001", "--amount '1.001' is not an amount in USD"),
        ("abc", "--amount 'abc' is not an amount in USD"),
        ("1e3", "--amount '1e3' is not an amount in USD"),
    ],
)
def test_a_bad_amount_is_one_readable_line(run: Run, acme: Path, amount: str, fragment: str) -> None:
    _finalized(run, acme)
    line = one_line_error(run("invoice", "pay", "acme", "1", "--amount", amount))
    assert fragment in line, line
    code, out, _ = run("invoice", "payments", "acme", "1")
    assert code == 0 and "no payments recorded for INV-000001 (finalized, 36.00 USD due)" in out  # nothing moved


def test_other_bad_inputs_are_one_line(run: Run, acme: Path) -> None:
    _finalized(run, acme)
    assert "method 'paypal'" in one_line_error(run("invoice", "pay", "acme", "1", "--method", "paypal"))
    assert "--date 'yesterday'" in one_line_error(run("invoice", "pay", "acme", "1", "--date", "yesterday"))
    assert "--date '2026-13-01'" in one_line_error(run("invoice", "pay", "acme", "1", "--date", "2026-13-01"))
    assert "in the future" in one_line_error(run("invoice", "pay", "acme", "1", "--date", "2099-01-01"))
    assert "no invoice 99" in one_line_error(run("invoice", "pay", "acme", "99", "--amount", "1"))
    assert "no invoice 99" in one_line_error(run("invoice", "payments", "acme", "99"))
    assert "reference" in one_line_error(run("invoice", "pay", "acme", "1", "--reference", "r" * 201))
    # A draft takes no payment, with or without an amount.
    line = one_line_error(run("invoice", "pay", "acme", "2"))
    assert "invoice 2 is draft" in line
    assert "finalize it first" in one_line_error(run("invoice", "pay", "acme", "2", "--amount", "1"))
    assert "only an open" in one_line_error(run("invoice", "uncollectible", "acme", "2"))


def test_void_with_reissue_bills_again(run: Run, acme: Path) -> None:
    _finalized(run, acme)
    code, out, _ = run("invoice", "void", "acme", "1", "--reissue", "--reason", "wrong address")
    assert code == 0 and "is void; the next invoice run bills its items again" in out
    code, out, _ = run("invoice", "run", "acme", "--as-of", "2026-02-01T01:00Z")
    assert code == 0 and re.search(r"invoices written\s*│\s*1\s", out), out


def test_help_teaches_every_option() -> None:
    from invoicing.documents import PAYMENT_METHODS
    from tally.cli.invoice import PAYMENT_METHODS_HELP

    assert all(m in PAYMENT_METHODS_HELP for m in PAYMENT_METHODS)
    out = CliRunner().invoke(main, ["invoice", "pay", "--help"]).stdout
    for text in ("--amount", "everything still due", "--date", "2026-02-03", "--method", "direct_debit",
                 "--reference", "--key", "same key"):  # fmt: skip
        assert text in out, text
    out = CliRunner().invoke(main, ["invoice", "void", "--help"]).stdout
    assert "--reissue" in out and "puts what this invoice billed on a new invoice" in " ".join(out.split())
    out = CliRunner().invoke(main, ["invoice", "uncollectible", "--help"]).stdout
    assert "--reason" in out and "bad debt" in out
