"""`tally points` and `tally convert` as a user types them: the README's sequence, readable output, and every
refusal as one line with its exit code and nothing written."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tally.db import make_engine
from tests.conftest import CliRun
from tests.invoicing.conftest import write_events


@pytest.fixture
def acme(run: CliRun) -> CliRun:
    """Tenant acme with customer cus_42 holding 10.00 USD."""
    for args in (("tenant", "create", "acme"), ("customer", "create", "acme", "cus_42"),
                 ("wallet", "topup", "acme", "cus_42", "10", "USD", "--id", "t1")):  # fmt: skip
        code, out, err = run(*args)
        assert code == 0, (args, out, err)
    return run


def ok(run: CliRun, *args: str) -> str:
    code, out, err = run(*args)
    assert code == 0, (args, out, err)
    return out


def refused(run: CliRun, *args: str, code: int = 1) -> str:
    got, out, err = run(*args)
    assert got == code, (args, got, out, err)
    lines = err.strip().splitlines()
    assert out == "", out  # nothing printed as if it had worked
    if code == 2:  # a usage mistake: click shows the usage, then the one line that says what is wrong
        return lines[-1]
    assert len(lines) == 1, err
    return lines[0]


def test_the_readme_sequence_converts(acme: CliRun) -> None:
    assert ok(acme, "points", "unit", "define", "acme", "pts", "--scale", "0").strip() == (
        "defined: points unit pts (scale 0, 'pts')"
    )
    assert ok(acme, "points", "rate", "set", "acme", "USD", "pts", "100", "--from", "2026-11-01T00:00Z").strip() == (
        "set: 100 pts per 1 USD from 2026-11-01 00:00Z on (rounding down)"
    )
    out = ok(acme, "convert", "acme", "cus_42", "2.50", "USD", "pts", "--id", "cv1")
    assert out.strip() == "converted 2.50 USD -> 250 pts at 100 pts per 1 USD; 0.00 USD stayed in the wallet"
    again = ok(acme, "convert", "acme", "cus_42", "2.50", "USD", "pts", "--id", "cv1")
    assert again.startswith("exists (already converted) 2.50 USD -> 250 pts")
    balance = ok(acme, "balance", "acme", "cus_42")
    assert "7.50 USD" in balance and "250 pts" in balance


def test_convert_says_what_stayed_in_the_source_wallet(acme: CliRun) -> None:
    ok(acme, "points", "unit", "define", "acme", "pts", "--scale", "0", "--name", "Reward points")
    ok(acme, "points", "rate", "set", "acme", "USD", "pts", "3", "--from", "2026-01-01T00:00Z", "--to",
       "2126-01-01T00:00Z")  # fmt: skip
    out = ok(acme, "convert", "acme", "cus_42", "2.50", "USD", "pts")
    assert out.strip() == (
        "converted 2.00 USD -> 6 pts at 3 pts per 1 USD; 0.50 USD of the 2.50 USD asked stayed in the wallet: "
        "only multiples of 1.00 USD convert exactly at this rate"
    )
    assert "8.00 USD" in ok(acme, "balance", "acme", "cus_42")  # 10 - 2.00: the 0.50 never moved
    ok(acme, "points", "unit", "define", "acme", "gems", "--scale", "0")
    ok(acme, "points", "rate", "set", "acme", "USD", "gems", "3", "--from", "2026-01-01T00:00Z", "--rounding", "up")
    up = ok(acme, "convert", "acme", "cus_42", "2.50", "USD", "gems")
    assert up.strip().endswith(
        "0.50 USD more than the 2.50 USD asked was taken: the rate rounds up to a multiple of 1.00 USD"
    )
    back = ok(acme, "convert", "acme", "cus_42", "7", "pts", "USD")  # 7 pts = 2.333 USD: 6 pts convert to 2.00
    assert "converted 6 pts -> 2.00 USD" in back and "1 pts of the 7 pts asked stayed in the wallet" in back


def test_units_and_rates_are_listed_as_tables(acme: CliRun) -> None:
    assert "no points units" in ok(acme, "points", "unit", "list", "acme")
    assert "no rates" in ok(acme, "points", "rate", "list", "acme")
    ok(acme, "points", "unit", "define", "acme", "pts", "--scale", "2", "--name", "Reward points")
    ok(acme, "points", "rate", "set", "acme", "USD", "pts", "2.5", "--from", "2026-01-01T00:00Z", "--to",
       "2026-02-01T00:00Z", "--rounding", "half_even")  # fmt: skip
    ok(acme, "points", "rate", "set", "acme", "EUR", "pts", "3", "--from", "2026-01-01T00:00Z")
    units = ok(acme, "points", "unit", "list", "acme")
    assert "pts" in units and "Reward points" in units and "2" in units
    rates = ok(acme, "points", "rate", "list", "acme")
    assert rates.index("EUR") < rates.index("USD") and "2.5" in rates and "half_even" in rates
    assert "2026-02-01 00:00Z" in rates
    only = ok(acme, "points", "rate", "list", "acme", "--currency", "USD")
    assert "USD" in only and "EUR" not in only
    assert max(len(line) for line in rates.splitlines()) <= 80


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("unit", "define", "acme", "USD", "--scale", "0"), 1, "Error: CODE: 'USD' is a currency code"),
        (("unit", "define", "acme", "Pts", "--scale", "0"), 1, "Error: CODE: 'Pts' is not a points unit code"),
        (("unit", "define", "acme", "pts", "--scale", "2"), 1, "Error: --scale: points unit 'pts' already exists"),
        (("unit", "define", "acme", "pts", "--scale", "13"), 2, "Error: Invalid value for '--scale'"),
        (("rate", "set", "acme", "USD", "pts", "-1", "--from", "2027-01-01T00:00Z"), 1,
         "Error: RATE: -1 must be positive"),
        (("rate", "set", "acme", "USD", "pts", "0", "--from", "2027-01-01T00:00Z"), 1,
         "Error: RATE: 0 must be positive"),
        (("rate", "set", "acme", "USD", "pts", "1e-3", "--from", "2027-01-01T00:00Z"), 1,
         "Error: RATE: '1e-3' is not a decimal in plain notation"),
        (("rate", "set", "acme", "USD", "pts", "abc", "--from", "2027-01-01T00:00Z"), 1,
         "Error: RATE: 'abc' is not a decimal in plain notation"),
        (("rate", "set", "acme", "USD", "pts", "5", "--from", "2026-12-01T00:00Z"), 1,
         "Error: --from: a USD->pts rate is already valid from 2026-11-01"),
        (("rate", "set", "acme", "XYZ", "pts", "5", "--from", "2027-01-01T00:00Z"), 1,
         "Error: CURRENCY: 'XYZ' is not a known currency"),
        (("rate", "set", "acme", "USD", "gems", "5", "--from", "2027-01-01T00:00Z"), 1,
         "Error: POINTS_UNIT: 'gems' is not a points unit of this tenant"),
        (("rate", "set", "acme", "USD", "pts", "5", "--from", "2028-01-01T00:00Z", "--to", "2027-01-01T00:00Z"), 1,
         "Error: --to: "),
        (("rate", "set", "acme", "USD", "pts", "5"), 2, "Error: Missing option '--from'"),
        (("rate", "set", "acme", "USD", "pts", "5", "--from", "tomorrow"), 1,
         "Error: --from 'tomorrow' is not ISO 8601"),
        (("rate", "set", "acme", "USD", "pts", "5", "--from", "2027-01-01T00:00Z", "--rounding", "nearest"), 2,
         "Error: Invalid value for '--rounding'"),
        (("accrue", "acme", "--as-of", "2026-01-01T00:00Z", "--since", "2026-02-01T00:00Z"), 1,
         "Error: --since 2026-02-01T00:00Z must be before --as-of"),
        (("unit", "list", "nobody"), 1, "Error: "),
    ],
)  # fmt: skip
def test_refusals_are_one_line_and_write_nothing(acme: CliRun, args: tuple[str, ...], code: int, message: str) -> None:
    ok(acme, "points", "unit", "define", "acme", "pts", "--scale", "0")
    ok(acme, "points", "rate", "set", "acme", "USD", "pts", "100", "--from", "2026-11-01T00:00Z")
    before = (ok(acme, "points", "unit", "list", "acme"), ok(acme, "points", "rate", "list", "acme"))
    assert refused(acme, "points", *args, code=code).startswith(message)
    assert (ok(acme, "points", "unit", "list", "acme"), ok(acme, "points", "rate", "list", "acme")) == before


def test_a_negative_amount_to_convert_is_refused_in_words(acme: CliRun) -> None:
    ok(acme, "points", "unit", "define", "acme", "pts", "--scale", "0")
    ok(acme, "points", "rate", "set", "acme", "USD", "pts", "100", "--from", "2026-11-01T00:00Z")
    line = refused(acme, "convert", "acme", "cus_42", "-2", "USD", "pts")
    assert "must be positive" in line and "Traceback" not in line


def test_accrue_credits_earned_points_once(acme: CliRun, tmp_path: Path) -> None:
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    plan = {
        "code": "viewer",
        "name": "Viewer",
        "charges": [],
        "earning": [
            {
                "code": "watch",
                "meter": "ad_impressions",
                "unit": "pts",
                "points_per_unit": "0.5",
                "cap_per_period": "10",
            }
        ],
    }
    (tmp_path / "viewer.json").write_text(json.dumps(plan))
    for args in (("meter", "create", "acme", "ad_impressions", "--aggregation", "count"),
                 ("plan", "create", "acme", str(tmp_path / "viewer.json")), ("plan", "publish", "acme", "viewer"),
                 ("subscription", "create", "acme", "cus_42", "viewer", "--at", "2026-11-01T00:00Z")):  # fmt: skip
        ok(acme, *args)
    engine = make_engine(f"sqlite:///{tmp_path / 'cli.db'}")
    write_events(
        engine, 1, [(f"e{k}", "cus_42", "ad_impressions", t0 + timedelta(hours=k), 1, None) for k in range(25)]
    )
    engine.dispose()
    code, out, err = acme("points", "accrue", "acme", "--as-of", "2026-11-03T00:00Z")
    assert code == 0 and "warning" in err  # the unit is not defined yet: said, and nothing credited
    assert "points unit 'pts' is not defined" in err and "nothing new to credit" in out
    ok(acme, "points", "unit", "define", "acme", "pts", "--scale", "0")
    out = ok(acme, "points", "accrue", "acme", "--as-of", "2026-11-03T00:00Z")
    assert "cus_42" in out and "watch" in out and "10 pts (cap)" in out  # 25 x 0.5 = 12.5, capped at 10
    assert "credited 10 pts to 1 customer(s) in 1 transfer(s)" in out
    assert "nothing new to credit" in ok(acme, "points", "accrue", "acme", "--as-of", "2026-11-03T00:00Z")
    assert "10 pts" in ok(acme, "balance", "acme", "cus_42")
    journal = ok(acme, "journal", "export", "acme", "--from", "2026-01-01T00:00Z", "--to", "2100-01-01T00:00Z")
    assert "~earn:s1:v1:watch:20261101T0000Z#1" in journal and "points_issuance" in journal


def test_a_plan_file_with_an_exponent_in_an_earning_rule_is_refused(acme: CliRun, tmp_path: Path) -> None:
    plan = {"code": "viewer", "earning": [{"code": "watch", "meter": "api_calls", "unit": "pts",
                                           "points_per_unit": "1e-3"}]}  # fmt: skip
    (tmp_path / "viewer.json").write_text(json.dumps(plan))
    line = refused(acme, "plan", "create", "acme", str(tmp_path / "viewer.json"))
    assert "earning[0].points_per_unit" in line
    assert "viewer" not in ok(acme, "plan", "list", "acme")
