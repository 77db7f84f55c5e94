"""`tally leakage` end to end on SQLite, and its failures as one line."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from metering.tenant import get_tenant
from tally.db import make_engine
from tests.conftest import CliRun as Run
from tests.invoicing.conftest import T0, write_events
from tests.invoicing.test_billing_cli import one_line_error

FROM, TO = "2026-01-01T00:00Z", "2026-02-01T00:00Z"


def test_leakage_report(run: Run, tmp_path: Path) -> None:
    assert run("tenant", "create", "acme")[0] == 0
    assert run("meter", "create", "acme", "api_calls", "--aggregation", "count")[0] == 0
    assert run("customer", "create", "acme", "cus_1")[0] == 0
    engine = make_engine(f"sqlite:///{tmp_path / 'cli.db'}")
    tid = get_tenant(engine, "acme").id
    rows = [(f"g{k}", "ghost", "api_calls", T0 + timedelta(hours=k), 1, None) for k in range(4)]
    rows += [(f"c{k}", "cus_1", "api_calls", T0 + timedelta(hours=k), 1, None) for k in range(2)]
    write_events(engine, tid, rows)
    engine.dispose()
    code, out, err = run("leakage", "acme", "--from", FROM, "--to", TO, "--top", "1")
    assert code == 0, err
    assert "acme: 6 of 6 counted events unbilled, 2026-01-01 00:00Z → 2026-02-01 00:00Z" in out
    assert "unknown_customer" in out and "ghost" in out and "unpriced_meter" in out
    assert "... and 1 more (--top N lists more)" in out
    # the tenant-wide alert on the same usage: `-` for the customer, fires once for January
    code, out, err = run("alert", "create", "acme", "-", "leakage", "6")
    assert code == 0 and "created alert 1: (tenant) unbilled events this month at 6" in out, err
    code, out, _ = run("alert", "list", "acme")
    assert code == 0 and "(tenant)" in out and "leakage" in out
    code, out, _ = run("alert", "check", "acme", "--at", "2026-01-31T23:00Z")
    assert code == 0 and "alert 1 fired: (tenant) leakage 6 vs 6" in out
    assert "0 alert(s) fired" in run("alert", "check", "acme", "--at", "2026-01-31T23:59Z")[1]


def test_leakage_failures_are_one_line(run: Run) -> None:
    assert run("tenant", "create", "acme")[0] == 0
    assert "at most 366 days" in one_line_error(run("leakage", "acme", "--from", FROM, "--to", "2028-01-01T00:00Z"))
    assert "--to 'soon' is not an ISO 8601 instant" in one_line_error(
        run("leakage", "acme", "--from", FROM, "--to", "soon")
    )
    assert "nope" in one_line_error(run("leakage", "nope", "--from", FROM, "--to", TO))
    assert "leave customer empty" in one_line_error(run("alert", "create", "acme", "cus_1", "leakage", "5"))
