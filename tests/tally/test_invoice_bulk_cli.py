"""`tally invoice list` filters and pages, invoice numbers wherever an invoice is named, and the bulk actions
(finalize-all, void-all, pay-all, export-all) end to end on SQLite: confirmations, dry runs, summaries,
re-runs, and bad input as one line with nothing written."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from pypdf import PdfReader
from sqlalchemy import create_engine, inspect, text

from tally.cli import main
from tests.invoicing.conftest import plan_json

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


@pytest.fixture
def tally(db: str) -> Run:
    """`tally(*args, input=...)`: (exit code, stdout, stderr); `input` answers a confirmation."""
    runner = CliRunner()

    def _run(*args: str, input: str | None = None) -> tuple[int, str, str]:
        result = runner.invoke(main, ["--database-url", db, *args], input=input)
        return result.exit_code, result.stdout, result.stderr

    return _run


@pytest.fixture
def billed(tally: Run, tmp_path: Path) -> None:
    """cus_a and cus_b on `pro`, cus_c on `lite`, from January 1st, invoiced as of February 1st: two drafts each,
    ids 1-6 (Jan 1: January's fee; Feb 1: January's usage and February's fee)."""
    assert tally("tenant", "create", "acme")[0] == 0
    assert tally("meter", "create", "acme", "api_calls", "--aggregation", "count")[0] == 0
    for code, amount in (("pro", "30"), ("lite", "10")):
        plan = plan_json(code)
        plan["charges"][0]["price"]["amount_per_period"] = amount
        path = tmp_path / f"{code}.json"
        path.write_text(json.dumps(plan))
        assert tally("plan", "create", "acme", str(path))[0] == 0
        assert tally("plan", "publish", "acme", code)[0] == 0
    for cus, plan_code in (("cus_a", "pro"), ("cus_b", "pro"), ("cus_c", "lite")):
        assert tally("customer", "create", "acme", cus)[0] == 0
        assert tally("subscription", "create", "acme", cus, plan_code, "--at", "2026-01-01T00:00Z")[0] == 0
    assert tally("invoice", "run", "acme", "--as-of", "2026-02-01T00:00Z")[0] == 0


def one_line(result: tuple[int, str, str], code: int = 1) -> str:
    exit_code, _, err = result
    assert exit_code == code, result
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    return lines[0]


def snapshot(db: str) -> dict[str, int]:
    """Rows in every table: a refused command must leave them all as they were."""
    engine = create_engine(db)
    try:
        with engine.connect() as conn:
            return {t: conn.execute(text(f'SELECT count(*) FROM "{t}"')).scalar_one()
                    for t in inspect(conn).get_table_names()}  # fmt: skip
    finally:
        engine.dispose()


def invoice_states(db: str) -> list[tuple[int, str, int | None]]:
    engine = create_engine(db)
    try:
        with engine.connect() as conn:
            return [(r.id, r.status, r.number) for r in conn.execute(text("SELECT id, status, number FROM invoices"))]
    finally:
        engine.dispose()


@pytest.fixture
def unchanged(db: str, billed: None) -> Iterator[Callable[[], None]]:
    """`unchanged()` asserts that no row of any table changed since the world was billed."""
    before = (snapshot(db), invoice_states(db))

    def check() -> None:
        assert (snapshot(db), invoice_states(db)) == before

    yield check


def summary_count(out: str, label: str) -> int:
    m = re.search(rf"{re.escape(label)}\s*│\s*([0-9,]+)\s", out)
    assert m, (label, out)
    return int(m.group(1).replace(",", ""))


# --- list ------------------------------------------------------------------------------------------------------
def test_list_filters_and_says_when_more_pages_exist(tally: Run, billed: None) -> None:
    code, out, _ = tally("invoice", "list", "acme", "--limit", "4")
    assert code == 0 and out.strip().endswith("more: --after 4")
    code, out, _ = tally("invoice", "list", "acme", "--limit", "4", "--after", "4")
    assert code == 0 and "more:" not in out and re.search(r"│\s+5 │", out) and re.search(r"│\s+6 │", out)
    code, out, _ = tally("invoice", "list", "acme", "--plan", "lite")
    assert code == 0 and out.count("cus_c") == 2 and "cus_a" not in out
    code, out, _ = tally("invoice", "list", "acme", "--customer", "cus_a", "--from", "2026-01-15", "--to", "2026-03-01")
    rows = [ln for ln in out.splitlines() if ln.startswith("│")]
    assert code == 0 and len(rows) == 1 and "cus_a" in rows[0] and "2026-02-01" in rows[0]
    code, out, _ = tally("invoice", "list", "acme", "--issued", "--from", "2026-01-01")
    assert code == 0 and "no invoices match (issued from 2026-01-01T00:00:00+00:00)" in out  # drafts are not issued


def test_list_bad_input_is_one_line_and_writes_nothing(tally: Run, unchanged: Callable[[], None]) -> None:
    assert "--from 'yesterday'" in one_line(tally("invoice", "list", "acme", "--from", "yesterday"))
    assert "--to '2026-13-01' is not a date" in one_line(tally("invoice", "list", "acme", "--to", "2026-13-01"))
    assert "is not before end" in one_line(
        tally("invoice", "list", "acme", "--from", "2026-02-01", "--to", "2026-01-01")
    )
    assert "no customer 'cus_x'" in one_line(tally("invoice", "list", "acme", "--customer", "cus_x"))
    assert "no plan 'gold'" in one_line(tally("invoice", "list", "acme", "--plan", "gold"))
    code, _, err = tally("invoice", "list", "acme", "--limit", "0")
    assert code == 2 and "--limit" in err
    unchanged()


# --- an invoice by its number ----------------------------------------------------------------------------------
def test_every_command_that_takes_an_invoice_accepts_its_number(tally: Run, billed: None, tmp_path: Path) -> None:
    code, out, err = tally("invoice", "finalize", "acme", "draft 3")
    assert code == 0 and "invoice 3 finalized as INV-000001" in out, err
    assert tally("invoice", "finalize", "acme", "1")[0] == 0  # INV-000002
    code, out, _ = tally("invoice", "show", "acme", "INV-000001")
    assert code == 0 and "INV-000001 (invoice, finalized)" in out
    code, out, _ = tally("invoice", "show", "acme", "inv-2")
    assert code == 0 and "INV-000002" in out
    code, out, _ = tally("invoice", "export", "acme", "INV-000001", "--format", "json")
    assert code == 0 and json.loads(out)["id"] == 3
    pdf = tmp_path / "one.pdf"
    assert tally("invoice", "export", "acme", "INV-000001", "--format", "pdf", "--output", str(pdf))[0] == 0
    assert "INV-000001" in PdfReader(pdf).pages[0].extract_text()
    code, out, _ = tally("invoice", "pay", "acme", "INV-000001", "--amount", "1", "--date", "2026-02-03")
    assert code == 0 and "to INV-000001, now partially_paid" in out
    code, out, _ = tally("invoice", "payments", "acme", "INV-000001")
    assert code == 0 and "payments of INV-000001" in out
    code, out, _ = tally("invoice", "uncollectible", "acme", "INV-000001", "--reason", "gone")
    assert code == 0 and "(INV-000001) is uncollectible" in out
    code, out, _ = tally("invoice", "correct", "acme", "INV-000002")
    assert code == 0 and "still right" in out
    code, out, _ = tally("invoice", "void", "acme", "INV-000002", "--reason", "test")
    assert code == 0 and "(INV-000002) is void" in out


def test_a_bad_or_unknown_invoice_is_one_line_and_writes_nothing(tally: Run, unchanged: Callable[[], None]) -> None:
    for command in ("show", "finalize", "payments", "void", "correct", "export", "uncollectible", "pay"):
        assert "neither an id" in one_line(tally("invoice", command, "acme", "ABC-1")), command
        assert "no invoice numbered INV-000009" in one_line(tally("invoice", command, "acme", "INV-9")), command
    assert "ids run from 1" in one_line(tally("invoice", "show", "acme", "0"))
    assert "no invoice 99" in one_line(tally("invoice", "finalize", "acme", "99"))
    unchanged()


# --- finalize-all ----------------------------------------------------------------------------------------------
def test_finalize_all_asks_counts_and_reruns_safely(tally: Run, billed: None, db: str) -> None:
    code, out, _ = tally("invoice", "finalize-all", "acme", "--customer", "cus_a", "--dry-run")
    assert code == 0 and summary_count(out, "would finalize") == 2
    assert {s for _, s, _ in invoice_states(db)} == {"draft"}
    code, _, err = tally("invoice", "finalize-all", "acme", "--customer", "cus_a", input="n\n")
    assert code == 1 and "finalize 2 invoice(s) of acme (customer cus_a)?" in err and "Aborted" in err
    assert {s for _, s, _ in invoice_states(db)} == {"draft"}
    code, out, _ = tally("invoice", "finalize-all", "acme", "--customer", "cus_a", input="y\n")
    assert code == 0 and summary_count(out, "finalized") == 2
    code, out, _ = tally("invoice", "finalize-all", "acme", "--yes")
    assert code == 0 and summary_count(out, "finalized") == 4
    assert summary_count(out, "skipped: already finalized") == 2 and summary_count(out, "failed") == 0
    assert sorted(n or 0 for _, _, n in invoice_states(db)) == [1, 2, 3, 4, 5, 6]
    code, out, _ = tally("invoice", "finalize-all", "acme")  # nothing left: no question, nothing changes
    assert code == 0 and "nothing to finalize" in out and summary_count(out, "skipped: already finalized") == 6


def test_finalize_all_with_a_limit_says_where_to_go_on(tally: Run, billed: None, db: str) -> None:
    code, out, _ = tally("invoice", "finalize-all", "acme", "--limit", "4", "--yes")
    assert code == 0 and summary_count(out, "finalized") == 4 and "more: --after 4" in out
    code, out, _ = tally("invoice", "finalize-all", "acme", "--after", "4", "--yes")
    assert code == 0 and summary_count(out, "finalized") == 2 and "more:" not in out


def test_bulk_bad_input_is_one_line_and_writes_nothing(
    tally: Run, unchanged: Callable[[], None], tmp_path: Path
) -> None:
    assert "--from 'soon'" in one_line(tally("invoice", "finalize-all", "acme", "--from", "soon", "--yes"))
    assert "no customer 'cus_x'" in one_line(tally("invoice", "pay-all", "acme", "--customer", "cus_x", "--yes"))
    assert "no plan 'gold'" in one_line(
        tally("invoice", "void-all", "acme", "--plan", "gold", "--reason", "x", "--yes")
    )
    assert "give at least one filter" in one_line(tally("invoice", "void-all", "acme", "--reason", "x", "--yes"))
    assert "--reason is empty" in one_line(tally("invoice", "void-all", "acme", "--status", "draft", "--reason", " "))
    code, _, err = tally("invoice", "void-all", "acme", "--status", "draft", "--yes")
    assert code == 2 and "--reason" in err
    code, _, err = tally("invoice", "finalize-all", "acme", "--status", "owed")
    assert code == 2 and "partially_paid" in err
    afile = tmp_path / "afile"
    afile.write_text("x")
    code, _, err = tally("invoice", "export-all", "acme", "--output", str(afile))
    assert code == 2 and "is a file" in err
    line = one_line(tally("invoice", "export-all", "acme", "--output", str(afile / "x")))
    assert "cannot create the folder" in line and "not a directory" in line
    code, _, err = tally("invoice", "export-all", "acme", "--output", str(tmp_path / "o"), "--format", "docx")
    assert code == 2 and "docx" in err and not (tmp_path / "o").exists()
    unchanged()


# --- void-all and pay-all --------------------------------------------------------------------------------------
def test_void_all_asks_and_skips_what_it_cannot_void(tally: Run, billed: None, db: str) -> None:
    assert tally("invoice", "finalize-all", "acme", "--customer", "cus_b", "--yes")[0] == 0
    assert tally("invoice", "pay", "acme", "INV-000001")[0] == 0
    code, _, err = tally("invoice", "void-all", "acme", "--plan", "pro", "--reason", "wrong price", input="n\n")
    assert code == 1 and "void 3 invoice(s) of acme (plan pro)?" in err
    assert [s for _, s, _ in invoice_states(db)].count("void") == 0
    code, out, _ = tally("invoice", "void-all", "acme", "--plan", "pro", "--reason", "wrong price", input="y\n")
    assert code == 0 and summary_count(out, "voided") == 3
    assert summary_count(out, "skipped: has payments (issue a credit note instead)") == 1
    assert [s for _, s, _ in invoice_states(db)].count("void") == 3
    code, out, _ = tally("invoice", "void-all", "acme", "--plan", "pro", "--reason", "wrong price")
    assert code == 0 and "nothing to void" in out and summary_count(out, "skipped: already void") == 3


def test_pay_all_pays_open_invoices_once(tally: Run, billed: None, db: str) -> None:
    assert tally("invoice", "finalize-all", "acme", "--to", "2026-01-02", "--yes")[0] == 0  # the three Jan 1 ones
    code, out, _ = tally("invoice", "pay-all", "acme", "--yes")
    assert code == 0 and summary_count(out, "paid") == 3
    assert summary_count(out, "skipped: a draft (finalize it first)") == 3
    code, out, _ = tally("invoice", "pay-all", "acme", "--yes")
    assert code == 0 and summary_count(out, "skipped: already paid") == 3
    assert sorted(s for _, s, _ in invoice_states(db)) == ["draft"] * 3 + ["paid"] * 3


# --- export-all ------------------------------------------------------------------------------------------------
def test_export_all_writes_a_folder_and_a_rerun_writes_nothing(tally: Run, billed: None, tmp_path: Path) -> None:
    assert tally("invoice", "finalize-all", "acme", "--customer", "cus_a", "--yes")[0] == 0
    folder = tmp_path / "exports" / "2026-01"
    code, out, err = tally("invoice", "export-all", "acme", "--customer", "cus_a", "--output", str(folder),
                           "--format", "pdf", "--format", "csv")  # fmt: skip
    assert code == 0, err
    assert summary_count(out, "exported") == 2 and "wrote 4 file(s)" in out
    assert sorted(p.name for p in folder.iterdir()) == ["INV-000001.csv", "INV-000001.pdf", "INV-000002.csv",
                                                        "INV-000002.pdf"]  # fmt: skip
    reader = PdfReader(folder / "INV-000002.pdf")
    assert "INV-000002" in reader.pages[0].extract_text()
    code, out, _ = tally("invoice", "export-all", "acme", "--customer", "cus_a", "--output", str(folder),
                         "--format", "pdf", "--format", "csv")  # fmt: skip
    assert (
        code == 0 and "wrote 0 file(s)" in out and summary_count(out, "skipped: unchanged since the last export") == 2
    )
    code, out, _ = tally("invoice", "export-all", "acme", "--output", str(tmp_path / "drafts"), "--format", "json",
                         "--status", "draft", "--dry-run")  # fmt: skip
    assert code == 0 and summary_count(out, "would export") == 4 and not (tmp_path / "drafts").exists()


def test_help_teaches_the_bulk_actions_and_invoice_numbers() -> None:
    runner = CliRunner()
    out = runner.invoke(main, ["invoice", "--help"]).stdout
    for name in ("finalize-all", "void-all", "pay-all", "export-all", "INV-000012", "--dry-run"):
        assert name in out, name
    for command in ("finalize-all", "void-all", "pay-all", "export-all", "list"):
        out = runner.invoke(main, ["invoice", command, "--help"]).stdout
        for option in ("--customer", "--status", "--plan", "--from", "--to", "--issued", "--limit", "--after"):
            assert option in out, (command, option)
    for command in ("show", "finalize", "pay", "payments", "void", "correct", "export", "uncollectible"):
        out = runner.invoke(main, ["invoice", command, "--help"]).stdout
        assert "INVOICE" in out and "number" in out, command
