"""The frame of the `tally` command line: it starts light, explains itself, never writes what it only reads,
says every failure in one line of its own words, and ends quietly when its reader goes away."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from rich.console import Console

from tally.cli import COMMANDS, SECTIONS, load, main
from tally.cli._common import SignedArguments, count, money, print_table
from tests.conftest import CliRun

HEAVY = ("sqlalchemy", "numpy", "numba", "grpc", "rich", "pydantic", "pydantic_settings", "alembic")


def one_line_error(code: int, err: str, exit_code: int = 1) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == exit_code, err
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in err, err
    return lines[0]


def tally(*args: str, cwd: Path | None = None, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tally", *args], capture_output=True, text=True, cwd=cwd, check=False, **kwargs
    )  # type: ignore[call-overload]


# --- start-up: nothing heavy for help ----------------------------------------------------------------------


@pytest.mark.parametrize("args", [["--help"], ["--version"], *([name, "--help"] for name in COMMANDS)])
def test_help_imports_no_heavy_package(args: list[str]) -> None:
    code = (
        "import sys\n"
        "from tally.cli import main\n"
        "try:\n"
        f"    main({args!r}, prog_name='tally')\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]", out


def test_every_registered_command_loads_under_its_name_in_a_known_section() -> None:
    for name, entry in COMMANDS.items():
        assert load(entry).name == name, entry.target
        assert entry.section in SECTIONS and entry.summary.endswith("."), name


def _walk(command: click.Command, path: str) -> list[tuple[str, click.Command]]:
    found = [(path, command)]
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            found += _walk(sub, f"{path} {name}")
    return found


def test_every_option_of_every_command_has_help_text() -> None:
    missing = [
        f"{path} {param.opts[0]}"
        for name, entry in COMMANDS.items()
        for path, command in _walk(load(entry), f"tally {name}")
        for param in command.params
        if isinstance(param, click.Option) and not param.hidden and not (param.help or "").strip()
    ]
    missing += [f"tally {p.opts[0]}" for p in main.params if isinstance(p, click.Option) and not p.help]
    assert missing == []


def test_top_level_help_keeps_server_commands_apart_and_fits_80_columns() -> None:
    result = tally("--help", env={**os.environ, "COLUMNS": "80"})
    assert result.returncode == 0
    out = result.stdout
    assert max(len(line) for line in out.splitlines()) <= 80
    server, database = out.index("Need a running server"), out.index("Work on the database directly")
    assert server < out.index("\n  send ") < database < out.index("\n  tenant ")
    assert "  send " not in out[database:]
    for name in COMMANDS:
        assert f"\n  {name} " in out, name


def test_version_and_a_mistyped_command() -> None:
    assert CliRunner().invoke(main, ["--version"]).stdout.strip() == "tally 0.1.0"
    result = CliRunner().invoke(main, ["tenants", "list"])
    assert result.exit_code == 2 and "no command 'tenants'; did you mean `tenant`?" in result.stderr


# --- a command that only reads never creates or migrates a database ----------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("tenant", "list"),
        ("apikey", "list", "acme"),
        ("meter", "list", "acme"),
        ("customer", "list", "acme"),
        ("plan", "list", "acme"),
        ("invoice", "list", "acme"),
        ("usage", "acme", "c1", "m", "--from", "2026-01-01T00:00Z", "--to", "2026-01-02T00:00Z"),
        ("balance", "acme", "c1"),
    ],
)
def test_a_read_on_a_missing_database_names_the_path_and_creates_nothing(tmp_path: Path, args: tuple[str, ...]) -> None:
    path = tmp_path / "nowhere" / "tally.db"
    result = CliRunner().invoke(main, ["--database-url", f"sqlite:///{path}", *args])
    line = one_line_error(result.exit_code, result.stderr)
    assert f"no database at {path}" in line and "tally tenant create" in line
    assert not path.exists() and not path.parent.exists()


def test_a_read_never_migrates_and_says_what_to_run(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    url = f"sqlite:///{path}"
    runner = CliRunner()
    assert runner.invoke(main, ["--database-url", url, "tenant", "create", "acme"]).exit_code == 0

    def version() -> list[str]:
        with sqlite3.connect(path) as conn:
            return [r[0] for r in conn.execute("SELECT version_num FROM alembic_version")]

    head = version()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0001'")
    result = runner.invoke(main, ["--database-url", url, "tenant", "list"])
    assert "is at schema revision 0001, older than this Tally's" in one_line_error(result.exit_code, result.stderr)
    assert "tally migrate" in result.stderr and version() == ["0001"]
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'zz99'")
    result = runner.invoke(main, ["--database-url", url, "meter", "list", "acme"])
    assert "written by a newer version of Tally" in one_line_error(result.exit_code, result.stderr)
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    result = runner.invoke(main, ["--database-url", f"sqlite:///{empty}", "tenant", "list"])
    assert "has no Tally schema; create it with `tally migrate`" in one_line_error(result.exit_code, result.stderr)
    assert runner.invoke(main, ["--database-url", f"sqlite:///{empty}", "migrate"]).exit_code == 0
    assert runner.invoke(main, ["--database-url", f"sqlite:///{empty}", "tenant", "list"]).exit_code == 0
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = ?", head)
    assert runner.invoke(main, ["--database-url", url, "tenant", "list"]).exit_code == 0


def test_known_revisions_are_alembics_heads() -> None:
    from alembic.script import ScriptDirectory

    from tally.db import alembic_config, known_revisions

    script = ScriptDirectory.from_config(alembic_config())
    revisions, heads = known_revisions()
    assert heads == frozenset(script.get_heads())
    assert revisions == frozenset(r.revision for r in script.walk_revisions())


# --- the server: a port in use, and what SIGTERM drained ---------------------------------------------------


def test_serve_on_a_port_in_use_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "served.db"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["--database-url", f"sqlite:///{path}", "serve", "--port", str(port)])
    line = one_line_error(result.exit_code, result.stderr)
    assert line == (
        f"Error: port {port} is in use on 127.0.0.1; stop what listens there or pass --port N "
        "(--port 0 picks a free one)"
    )
    assert not path.exists()


def test_serve_on_an_http_port_in_use_names_the_http_option(tmp_path: Path) -> None:
    path = tmp_path / "served.db"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["--database-url", f"sqlite:///{path}", "serve", "--port", "0", "--http-port", str(port)]
        result = CliRunner().invoke(main, args)
    line = one_line_error(result.exit_code, result.stderr)
    assert line == (
        f"Error: port {port} is in use on 127.0.0.1; stop what listens there or pass --http-port N "
        "(--http-port 0 picks a free one)"
    )
    assert not path.exists()


def test_sigterm_prints_what_was_drained(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'served.db'}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tally", "--database-url", url, "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert "tally listening on" in proc.stdout.readline()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "tally stopped; drained in" in out and "in-flight batches committed and acked (0 events)" in out


# --- output: pipes, tables, numbers --------------------------------------------------------------------------


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    path = tmp_path / "many.db"
    assert tally("--database-url", f"sqlite:///{path}", "tenant", "create", "acme").returncode == 0
    with sqlite3.connect(path) as conn:  # enough rows that the table outgrows the pipe's buffer
        conn.executemany(
            "INSERT INTO tenants (name, created_at) VALUES (?, CURRENT_TIMESTAMP)",
            [(f"tenant-{i:05d}",) for i in range(3_000)],
        )
    proc = subprocess.Popen(
        [sys.executable, "-m", "tally", "--database-url", f"sqlite:///{path}", "tenant", "list"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline()  # `| head -1`
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) in (0, 141)
    assert err == ""


def test_tables_fold_long_values_at_80_columns_and_right_align_numbers() -> None:
    buffer = io.StringIO()
    long_id = "in_" + "0123456789abcdef" * 5
    rows = [[long_id, "finalized", "1234567.89 USD", count(1234567), "a fairly long description of the line"]]
    print_table("t", ["id", "status", "total", "events", "note"], rows, keep=("status",), file=Console(
        file=buffer, width=80))  # fmt: skip
    lines = buffer.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 80
    first_column = "".join(line.split("│")[1].strip() for line in lines if line.count("│") > 1)
    assert first_column == long_id  # folded onto more lines, never cut with an ellipsis
    assert "…" not in buffer.getvalue()
    assert any("1234567.89 USD" in line for line in lines) and any("1,234,567" in line for line in lines)
    assert any("finalized" in line for line in lines)
    buffer = io.StringIO()
    print_table("a table without headers", ["", ""], [["total", "12.00 USD"]], file=Console(file=buffer, width=80))
    assert "12.00 USD" in buffer.getvalue()


def test_a_table_too_wide_for_the_terminal_loses_nothing() -> None:
    header = ["id", "customer", "plan", "state", "started", "ends", "scheduled change"]
    row = ["2", "cus_0002", "team v1", "active", "2026-11-01 00:00Z", "2026-12-01 00:00Z", "pro v2 2027-01-01 00:00Z"]
    at_80, at_50 = io.StringIO(), io.StringIO()
    print_table("subscriptions", header, [row], file=Console(file=at_80, width=80))
    print_table("subscriptions", header, [row], file=Console(file=at_50, width=50))
    # At 80 columns the instants fold between date and time, every cell whole once its lines are joined.
    lines = [line for line in at_80.getvalue().splitlines() if line.startswith("│")]
    cells = [" ".join(line.split("│")[i].strip() for line in lines).strip() for i in range(1, 8)]
    assert cells == row and max(len(line) for line in at_80.getvalue().splitlines()) <= 80
    # At 50 it cannot fit without breaking ids: one line per field instead, every value whole.
    text = at_50.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 50
    for name, value in zip(header, row, strict=True):
        assert any(name in line and value in line for line in text.splitlines()), (name, value)


def test_numbers_are_formatted_one_way() -> None:
    from decimal import Decimal

    assert count(1234567) == "1,234,567"
    assert money(Decimal("1234.5"), "USD") == "1234.50 USD"
    assert money(Decimal(0), "USD") == "0.00 USD"
    assert money(Decimal("0.125"), "USD") == "0.125 USD"  # exact: never rounded for display
    assert money(Decimal("1E+3"), "EUR") == "1000.00 EUR"
    assert money(Decimal(5), "credits") == "5 credits"


# --- errors in the user's words ----------------------------------------------------------------------------


def _plan(tmp_path: Path, **changes: object) -> Path:
    plan: dict[str, object] = {
        "code": "pro", "name": "Pro", "currency": "USD", "interval": "monthly",
        "charges": [
            {"code": "base", "kind": "flat", "price": {"model": "flat", "amount_per_period": "49"}},
            {"code": "calls", "kind": "usage", "meter": "api_calls",
             "price": {"model": "per_unit", "unit_amount": "0.001"}},
        ],
    }  # fmt: skip
    plan.update(changes)
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    return path


def test_plan_file_errors_name_the_file_and_fields_in_our_words(run: CliRun, tmp_path: Path) -> None:
    run("tenant", "create", "acme")
    charges = json.loads(_plan(tmp_path).read_text())["charges"]
    charges[1]["price"]["unit_amount"] = "1e-3"
    path = _plan(
        tmp_path,
        code="Pro!",
        trial=3,
        charges=charges,
        features=[{"key": "q", "kind": "quota", "amount": "1E3", "meter": "api_calls"}, {"key": "b", "kind": "quota"}],
    )
    line = one_line_error(*run("plan", "create", "acme", str(path))[::2])
    assert line.startswith(f"Error: plan file {path}: ")
    assert "charges[1].price.unit_amount: '1e-3' is not a decimal in plain notation" in line and "write 0.001" in line
    assert "features[0].amount: '1E3' is not a decimal in plain notation" in line and "write 1000" in line
    assert "features[1]: a quota feature needs a meter" in line
    assert "code: 'Pro!' is not allowed here: lowercase letters" in line
    assert "trial: is not a known field" in line
    for library in ("Value error", "Field required", "Extra inputs", "should match pattern", "^[", "[invalid_"):
        assert library not in line, library
    code, out, _ = run("plan", "list", "acme")
    assert code == 0 and "pro" not in out  # nothing written


def test_plan_files_and_ingest_refuse_1e_minus_3_alike() -> None:
    from metering.event import parse_value
    from metering.limits import IngestLimits
    from metering.meter import Aggregation, MeterSpec
    from rating.errors import InvalidQuantityError
    from rating.fixedpoint import parse_decimal
    from rating.price import parse_price

    spec = MeterSpec(Aggregation.SUM, 3)
    _, ingest_error = parse_value("1e-3", spec, IngestLimits())
    assert ingest_error is not None
    with pytest.raises(InvalidQuantityError) as refused:
        parse_decimal("1e-3", "value")
    assert ingest_error.reason == str(refused.value)
    with pytest.raises(ValueError, match=r"write 0\.001") as plan_error:
        parse_price({"model": "per_unit", "unit_amount": "1e-3"})
    assert "'1e-3' is not a decimal in plain notation (ASCII digits and one point, like 12.50); write 0.001" in str(
        plan_error.value
    )


def test_library_wording_never_reaches_the_user(run: CliRun) -> None:
    run("tenant", "create", "acme")
    line = one_line_error(*run("meter", "create", "acme", "Bad Code!")[::2])
    assert "invalid input: code: 'Bad Code!' is not allowed here" in line
    assert "pattern" not in line and "^" not in line and "String should" not in line


# --- negative numbers as arguments ---------------------------------------------------------------------------


def test_negative_amounts_as_arguments_are_explained(run: CliRun) -> None:
    run("tenant", "create", "acme")
    code, _, err = run("transfer", "create", "acme", "1", "2", "-5", "USD", "--code", "x")
    assert code == 2 and "AMOUNT -5: a transfer moves a positive amount from DEBIT to CREDIT" in err
    assert "No such option" not in err
    code, _, err = run("apikey", "revoke", "acme", "-1")  # a command that keeps click's parsing
    assert code == 2 and "-1 is a negative number, which this command does not take as an argument" in err


def test_signed_arguments_keep_options_and_types() -> None:
    @click.command(cls=SignedArguments)
    @click.argument("account", type=int)
    @click.argument("amount")
    @click.option("--limit", type=int, default=0, help="A number.")
    @click.option("--flag", is_flag=True, help="A flag.")
    def probe(account: int, amount: str, limit: int, flag: bool) -> None:
        click.echo(f"{account} {amount} {limit} {flag}")

    runner = CliRunner()
    assert runner.invoke(probe, ["-3", "-0.25", "--limit", "-7", "--flag"]).stdout == "-3 -0.25 -7 True\n"
    assert runner.invoke(probe, ["--flag", "4", "-.5"]).stdout == "4 -.5 0 True\n"
    wrong = runner.invoke(probe, ["1", "-2", "--limt", "3"])
    assert wrong.exit_code == 2 and "No such option '--limt'" in wrong.stderr
