"""Ledger CLI: wallet, grant, transfer, convert, balance, and one-line errors."""

from __future__ import annotations

import pytest

from tests.conftest import CliRun as Run


@pytest.fixture
def run(run: Run) -> Run:
    """The shared CLI runner, with tenant acme created."""
    assert run("tenant", "create", "acme")[0] == 0
    return run


def test_topup_grant_spend_view(run: Run) -> None:
    code, out, _ = run("wallet", "topup", "acme", "cus_1", "12.50", "USD", "--id", "t1")
    assert code == 0 and out.strip() == "created: t1"
    assert run("wallet", "topup", "acme", "cus_1", "12.50", "USD", "--id", "t1")[1].strip() == "exists: t1"
    code, out, _ = run("grant", "create", "acme", "cus_1", "5", "USD", "--id", "g1", "--promotional", "--priority", "1")
    assert code == 0 and "created: grant g1" in out
    code, out, _ = run("wallet", "show", "acme", "cus_1")
    assert code == 0 and "17.50 USD" in out
    code, out, _ = run("grant", "list", "acme", "cus_1")
    assert "g1" in out and "5.00 USD" in out
    code, out, _ = run("balance", "acme", "cus_1")
    assert code == 0 and "17.50 USD" in out


def test_transfer_pending_post_and_history(run: Run) -> None:
    run("wallet", "topup", "acme", "cus_1", "10", "USD", "--id", "t1")
    code, out, _ = run("wallet", "list", "acme", "cus_1")
    wallet = out.split("│")[1].strip() if "│" in out else None
    assert code == 0 and wallet and wallet.isdigit()
    cash_in = "2" if wallet == "1" else "1"  # the top-up created exactly these two accounts
    code, out, _ = run("transfer", "pending", "acme", wallet, cash_in, "4.00", "USD", "--id", "p1")
    assert code == 0 and out.strip() == "created: p1"
    code, out, _ = run("transfer", "post", "acme", "p1", "3.00", "USD", "--id", "post1")
    assert code == 0 and out.strip() == "created: post1"
    code, out, _ = run("balance", "acme", wallet)
    assert code == 0 and "7.00 USD" in out
    code, out, _ = run("transfer", "list", "acme", wallet)
    assert "post1" in out and "-3.00 USD" in out


def test_errors_are_one_readable_line(run: Run) -> None:
    run("wallet", "topup", "acme", "cus_1", "1", "USD", "--id", "t1")
    code, _, err = run("wallet", "topup", "acme", "cus_1", "1.005", "USD")
    assert code == 1 and err.strip() == "Error: 1.005 USD has more than 2 decimal places"
    code, _, err = run("convert", "acme", "cus_1", "1", "USD", "pts")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "unknown unit 'pts'" in err
    code, _, err = run("wallet", "topup", "acme", "cus_1", "2", "USD", "--id", "t1")
    assert code == 1 and err.startswith("Error: ") and "amount" in err and len(err.strip().splitlines()) == 1
