"""`tally simulate` end to end on SQLite: the summary, the CSV, and its failures as one line with nothing written."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from sqlalchemy import Engine

from metering.tenant import get_tenant
from tally.db import make_engine
from tests.conftest import CliRun as Run
from tests.invoicing.conftest import plan_json, write_events
from tests.invoicing.test_billing_cli import one_line_error
from tests.invoicing.test_simulation import CANDIDATE, T0

FROM, TO = "2026-01-01T00:00Z", "2026-02-01T00:00Z"


@pytest.fixture
def acme(run: Run, tmp_path: Path) -> Path:
    """Tenant acme: pro v1 (30/month + 0.01 a call), two customers with calls; the candidate as a file."""
    assert run("tenant", "create", "acme")[0] == 0
    assert run("meter", "create", "acme", "api_calls", "--aggregation", "count")[0] == 0
    assert run("meter", "create", "acme", "tokens", "--aggregation", "sum", "--scale", "2")[0] == 0
    (tmp_path / "pro.json").write_text(json.dumps(plan_json("pro")))
    assert run("plan", "create", "acme", str(tmp_path / "pro.json"))[0] == 0
    assert run("plan", "publish", "acme", "pro")[0] == 0
    for cus in ("cus_1", "cus_2"):
        assert run("customer", "create", "acme", cus, "--timezone", "UTC")[0] == 0
        assert run("subscription", "create", "acme", cus, "pro", "--at", FROM)[0] == 0
    engine: Engine = make_engine(f"sqlite:///{tmp_path / 'cli.db'}")
    tid = get_tenant(engine, "acme").id
    write_events(engine, tid, [(f"e{k}", "cus_1", "api_calls", T0.replace(day=5), 1, None) for k in range(300)])
    engine.dispose()
    candidate = tmp_path / "pro-v2.json"
    candidate.write_text(json.dumps(CANDIDATE))
    return candidate


def test_summary_and_csv(run: Run, acme: Path, tmp_path: Path) -> None:
    out_csv = tmp_path / "changes.csv"
    code, out, err = run("simulate", "acme", "--plan", str(acme), "--from", FROM, "--to", TO,
                         "--more-than", "10", "--csv", str(out_csv))  # fmt: skip
    assert code == 0, err
    assert "acme: 2 customers under pro (unsaved), 2026-01-01 00:00Z → 2026-02-01 00:00Z (USD)" in out
    # cus_1: 30 + 300 × 0.01 = 33.00 now; 20 + 290 × 0.2 = 78.00 under the candidate. cus_2: 30 → 20.
    assert "pro v1" in out and "63.00" in out and "98.00" in out and "+35.00" in out
    assert "customers who would pay more than 10% extra: 1" in out and "+136.36%" in out
    assert "not the stored invoices" in out and "wrote 2 customers to" in out
    with out_csv.open() as fh:
        rows = list(csv.DictReader(fh))
    assert rows == [
        {"customer": "cus_1", "plan": "pro v1", "current": "33.00", "simulated": "78.00", "difference": "45.00",
         "pct": "136.36"},
        {"customer": "cus_2", "plan": "pro v1", "current": "30.00", "simulated": "20.00", "difference": "-10.00",
         "pct": "-33.33"},
    ]  # fmt: skip


def test_a_stored_version_and_top(run: Run, acme: Path) -> None:
    code, out, err = run("simulate", "acme", "--plan", "pro@1", "--from", FROM, "--to", TO, "--top", "0")
    assert code == 0, err
    assert "under pro v1" in out and "unchanged" in out
    assert "customers who would pay more than 0% extra: 0" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--plan", "nope.json"], "--plan 'nope.json': no such file, and not a stored version CODE@VERSION"),
        (["--plan", "pro@9"], "no v9 of plan 'pro'"),
        (["--plan", "pro@1", "--from", "2026-01-01"], "--from '2026-01-01' has no time zone"),
        (["--plan", "pro@1", "--to", "2027-06-01T00:00Z"], "at most 366 days"),
        (["--plan", "pro@1", "--more-than", "lots"], "--more-than"),
        (["--plan", "pro@1", "--more-than", "-5"], "more_than_pct must be 0 or more"),
        (["--plan", "pro@1", "--current-plan", "gold"], "no plan 'gold'"),
    ],
)
def test_failures_are_one_line_and_write_nothing(
    run: Run, acme: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    out_csv = tmp_path / "x.csv"
    base = {"--from": FROM, "--to": TO}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    flat = [part for pair in base.items() for part in pair]
    assert message in one_line_error(run("simulate", "acme", *flat, "--csv", str(out_csv)))
    assert not out_csv.exists()


def test_a_bad_plan_file_is_named(run: Run, acme: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert f"--plan {bad}: not valid JSON" in one_line_error(
        run("simulate", "acme", "--plan", str(bad), "--from", FROM, "--to", TO)
    )
    bad.write_text(
        json.dumps(
            {
                "code": "pro",
                "charges": [
                    {
                        "code": "x",
                        "kind": "usage",
                        "meter": "gpu",
                        "price": {"model": "per_unit", "unit_amount": "1", "currency": "USD"},
                    }
                ],
            }
        )
    )
    assert "charges[0].meter: no meter 'gpu'" in one_line_error(
        run("simulate", "acme", "--plan", str(bad), "--from", FROM, "--to", TO)
    )
