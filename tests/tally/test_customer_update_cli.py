"""`tally customer update` end to end on SQLite: each option changes only its field, clearing works, what a
subscription fixes stays fixed, and bad input is one line that changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import CliRun
from tests.invoicing.conftest import plan_json


@pytest.fixture
def acme(run: CliRun) -> None:
    assert run("tenant", "create", "acme")[0] == 0
    code, out, err = run("customer", "create", "acme", "cus_1", "--name", "Ada", "--email", "ada@example.com",
                         "--address", '{"city": "Paris", "country": "FR"}', "--meta", "crm=1")  # fmt: skip
    assert code == 0, (out, err)


def show(run: CliRun) -> str:
    code, out, err = run("customer", "show", "acme", "cus_1")
    assert code == 0, err
    return " ".join(out.split())


def one_line(result: tuple[int, str, str]) -> str:
    code, _, err = result
    assert code == 1, result
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    return lines[0]


def test_each_option_changes_its_field_only(run: CliRun, acme: None) -> None:
    code, out, _ = run("customer", "update", "acme", "cus_1", "--name", "Ada Ltd", "--currency", "EUR",
                       "--timezone", "Europe/Paris", "--tax-region", "FR", "--tax-id", "FR98765432101",
                       "--meta", "crm=2", "--meta", "tier=gold")  # fmt: skip
    assert code == 0
    assert "updated customer cus_1 (currency, metadata, name, tax_id, tax_region, timezone)" in out
    shown = show(run)
    for text in ("Ada Ltd", "EUR", "Europe/Paris", "FR98765432101", "crm=2, tier=gold", "ada@example.com", "Paris, FR"):
        assert text in shown, text
    # Clearing: an empty e-mail, an empty address object.
    code, out, _ = run("customer", "update", "acme", "cus_1", "--email", "", "--address", "{}")
    assert code == 0 and "(address, email)" in out
    shown = show(run)
    assert "ada@example.com" not in shown and "Paris, FR" not in shown and "Ada Ltd" in shown
    code, out, _ = run("customer", "update", "acme", "cus_1", "--invoice-grouping", "subscription")
    assert code == 0 and "subscription" in show(run)
    assert run("customer", "update", "acme", "cus_1", "--invoice-grouping", "tenant")[0] == 0
    assert "the tenant's" in show(run)


def test_a_subscription_fixes_currency_and_time_zone(run: CliRun, acme: None, tmp_path: Path) -> None:
    assert run("meter", "create", "acme", "api_calls", "--aggregation", "count")[0] == 0
    plan = tmp_path / "pro.json"
    plan.write_text(json.dumps(plan_json("pro")))
    assert run("plan", "create", "acme", str(plan))[0] == 0
    assert run("plan", "publish", "acme", "pro")[0] == 0
    assert run("subscription", "create", "acme", "cus_1", "pro", "--at", "2026-01-01T00:00Z")[0] == 0
    assert "currency cannot change" in one_line(run("customer", "update", "acme", "cus_1", "--currency", "EUR"))
    assert "timezone cannot change" in one_line(run("customer", "update", "acme", "cus_1", "--timezone", "Asia/Tokyo"))
    assert run("customer", "update", "acme", "cus_1", "--name", "Still fine")[0] == 0
    shown = show(run)
    assert "USD" in shown and "Still fine" in shown and "Asia/Tokyo" not in shown


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--address", "nope"), "--address is not JSON"),
        (("--address", '{"zip": "1"}'), "is not a known field"),
        (("--timezone", "Mars/Base"), "unknown time zone 'Mars/Base'"),
        (("--currency", "usd"), "unknown currency 'usd'"),
        (("--meta", "novalue"), "--meta 'novalue' must be KEY=VALUE"),
        (("--email", "not-an-email"), "an email address like"),
        (("--tax-id", "X" * 65), "tax_id"),
        ((), "nothing to change"),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(
    run: CliRun, acme: None, args: tuple[str, ...], fragment: str
) -> None:
    before = show(run)
    assert fragment in one_line(run("customer", "update", "acme", "cus_1", *args))
    assert show(run) == before


def test_unknown_customer_or_tenant(run: CliRun, acme: None) -> None:
    assert "no customer 'cus_9'" in one_line(run("customer", "update", "acme", "cus_9", "--name", "X"))
    assert "no tenant named 'nope'" in one_line(run("customer", "update", "nope", "cus_1", "--name", "X"))
