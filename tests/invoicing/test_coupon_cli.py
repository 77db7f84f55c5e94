"""`tally coupon` end to end on SQLite, and its failures as one readable line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import CliRun as Run
from tests.invoicing.conftest import plan_json
from tests.invoicing.test_billing_cli import one_line_error


@pytest.fixture
def acme(run: Run, tmp_path: Path) -> None:
    assert run("tenant", "create", "acme")[0] == 0
    assert run("meter", "create", "acme", "api_calls", "--aggregation", "count")[0] == 0
    file = tmp_path / "pro.json"
    file.write_text(json.dumps(plan_json("pro")))
    assert run("plan", "create", "acme", str(file))[0] == 0
    assert run("plan", "publish", "acme", "pro")[0] == 0
    assert run("customer", "create", "acme", "cus_1", "--name", "Ada")[0] == 0
    assert run("customer", "create", "acme", "cus_eur", "--currency", "EUR")[0] == 0
    assert run("subscription", "create", "acme", "cus_1", "pro", "--at", "2026-01-01T00:00Z")[0] == 0


def test_create_apply_list_remove(run: Run, acme: None) -> None:
    code, out, _ = run("coupon", "create", "acme", "WELCOME", "--percent", "12.5", "--duration", "repeating",
                       "--periods", "3", "--name", "Welcome")  # fmt: skip
    assert code == 0 and "created coupon WELCOME: 12.5% off, for 3 periods" in out
    code, out, _ = run("coupon", "create", "acme", "FIVE", "--amount", "5.00 USD", "--applies-to", "base")
    assert code == 0 and "created coupon FIVE: 5.00 USD off on base, once" in out
    code, out, _ = run("coupon", "create", "acme", "TEN", "--amount", "10", "--currency", "EUR", "--duration",
                       "forever", "--max-redemptions", "2", "--redeem-by", "2099-01-01T00:00Z")  # fmt: skip
    assert code == 0 and "10.00 EUR off, forever" in out
    code, out, _ = run("coupon", "list", "acme")
    assert code == 0 and all(c in out for c in ("WELCOME", "FIVE", "TEN", "0 of 2", "2099-01-01"))

    code, out, _ = run("coupon", "apply", "acme", "WELCOME", "--customer", "cus_1")
    assert code == 0 and "applied WELCOME to customer cus_1 as discount 1: 12.5% off, for 3 periods" in out
    code, out, _ = run("coupon", "apply", "acme", "FIVE", "--subscription", "1", "--at", "2026-02-01T00:00Z")
    assert code == 0 and "applied FIVE to subscription 1 (cus_1) as discount 2" in out and "2026-02-01 00:00Z" in out
    code, out, _ = run("coupon", "apply", "acme", "TEN", "--customer", "cus_eur")
    assert code == 0 and "discount 3" in out
    code, out, _ = run("coupon", "discounts", "acme", "--customer", "cus_1")
    assert code == 0 and "WELCOME" in out and "FIVE" in out and "TEN" not in out and "active" in out
    code, out, _ = run("coupon", "remove", "acme", "1")
    assert code == 0 and "removed discount 1 (WELCOME on customer cus_1)" in out
    code, out, _ = run("coupon", "discounts", "acme")
    assert code == 0 and "WELCOME" not in out and "TEN" in out and "0 of no limit" in out and "cus_1 sub 1" in out
    code, out, _ = run("coupon", "discounts", "acme", "--all")
    assert code == 0 and "WELCOME" in out and "removed" in out


def test_failures_are_one_line(run: Run, acme: None) -> None:
    assert run("coupon", "create", "acme", "EUR5", "--amount", "5 EUR")[0] == 0
    assert "--percent: must be more than 0 and at most 100" in one_line_error(
        run("coupon", "create", "acme", "X", "--percent", "150")
    )
    assert "--percent: " in one_line_error(run("coupon", "create", "acme", "X", "--percent", "1e3"))
    assert "--amount: " in one_line_error(run("coupon", "create", "acme", "X", "--amount", "5.001 USD"))
    assert "--currency: unknown currency" in one_line_error(run("coupon", "create", "acme", "X", "--amount", "5 ZZZ"))
    assert "--periods: " in one_line_error(run("coupon", "create", "acme", "X", "--percent", "5", "--duration",
                                               "repeating"))  # fmt: skip
    assert "--applies-to[0]: " in one_line_error(
        run("coupon", "create", "acme", "X", "--percent", "5", "--applies-to", "Base")
    )
    assert "CODE: " in one_line_error(run("coupon", "create", "acme", "bad code", "--percent", "5"))
    assert "already exists" in one_line_error(run("coupon", "create", "acme", "EUR5", "--percent", "5"))
    assert "no coupon 'NOPE'" in one_line_error(run("coupon", "apply", "acme", "NOPE", "--customer", "cus_1"))
    assert "no customer 'ghost'" in one_line_error(run("coupon", "apply", "acme", "EUR5", "--customer", "ghost"))
    assert "pays in USD" in one_line_error(run("coupon", "apply", "acme", "EUR5", "--customer", "cus_1"))
    assert "no discount 42" in one_line_error(run("coupon", "remove", "acme", "42"))
    assert "--at" in one_line_error(run("coupon", "apply", "acme", "EUR5", "--customer", "cus_eur", "--at", "soon"))
    # usage mistakes: exit status 2
    assert run("coupon", "create", "acme", "X")[0] == 2
    assert run("coupon", "create", "acme", "X", "--percent", "5", "--amount", "5 USD")[0] == 2
    assert run("coupon", "create", "acme", "X", "--amount", "5 USD", "--currency", "EUR")[0] == 2
    assert run("coupon", "apply", "acme", "EUR5")[0] == 2
    assert run("coupon", "list", "acme")[1].count("X") == 0
