"""`tally rate` prints the same exact quote as `rating.quote`, and fails in one line with status 2."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from click.testing import CliRunner

from tally.cli.rate import rate

STRIPE = {
    "model": "graduated",
    "tiers": [
        {"up_to": "5", "unit_amount": "7"},
        {"up_to": "10", "unit_amount": "6.5"},
        {"up_to": None, "unit_amount": "6"},
    ],
}


def write(tmp_path: Path, name: str, content: object) -> str:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def test_table_shows_breakdown_and_exact_amount(tmp_path: Path) -> None:
    result = CliRunner().invoke(rate, ["--price", write(tmp_path, "p.json", STRIPE), "--quantity", "20"])
    assert result.exit_code == 0, result.output
    assert "tier 3" in result.output
    assert "127.5 USD" in result.output and "127.50 USD" in result.output


def test_json_output(tmp_path: Path) -> None:
    price = write(tmp_path, "p.json", STRIPE)
    result = CliRunner().invoke(rate, ["--price", price, "--quantity", "6", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["amount"] == "41.5"
    assert data["rounded_amount"] == "41.50"
    assert [line["units"] for line in data["lines"]] == ["5", "1"]


def test_events_file_gives_marginal_amounts(tmp_path: Path) -> None:
    price = write(tmp_path, "p.json", STRIPE)
    events = write(tmp_path, "e.txt", "4\n4\n4\n")
    result = CliRunner().invoke(rate, ["--price", price, "--quantity", "12", "--events", events, "--json"])
    assert result.exit_code == 0, result.output
    amounts = [Decimal(a) for a in json.loads(result.output)["event_amounts"]]
    assert amounts == [Decimal(28), Decimal("26.5"), Decimal(25)]


def one_line_error(args: list[str]) -> str:
    result = CliRunner().invoke(rate, args)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in result.output
    return lines[0]


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    assert "cannot read price file" in one_line_error(["--price", str(tmp_path / "nope.json"), "--quantity", "1"])


def test_bad_json_is_one_line(tmp_path: Path) -> None:
    assert "not valid JSON" in one_line_error(["--price", write(tmp_path, "p.json", "{nope"), "--quantity", "1"])


def test_invalid_price_names_field_and_code(tmp_path: Path) -> None:
    bad = {"model": "graduated", "tiers": [{"up_to": "5"}, {"up_to": "3"}, {"up_to": None}]}
    line = one_line_error(["--price", write(tmp_path, "p.json", bad), "--quantity", "1"])
    assert "tiers[1].up_to" in line and "invalid_graduated_ranges" in line
    floaty = write(tmp_path, "f.json", '{"model": "per_unit", "unit_amount": 0.1}')
    assert "float_not_allowed" in one_line_error(["--price", floaty, "--quantity", "1"])
    assert "unknown_model" in one_line_error(["--price", write(tmp_path, "u.json", {"model": "x"}), "--quantity", "1"])


def test_bad_quantity_is_one_line(tmp_path: Path) -> None:
    price = write(tmp_path, "p.json", STRIPE)
    assert "not a decimal" in one_line_error(["--price", price, "--quantity", "lots"])
    assert "zero or more" in one_line_error(["--price", price, "--quantity", "-3"])


def test_dimensional_price_needs_a_known_dimension(tmp_path: Path) -> None:
    price = write(
        tmp_path,
        "d.json",
        {"model": "dimensional", "dimension": "region", "prices": {"eu": {"model": "per_unit", "unit_amount": "2"}}},
    )
    ok = CliRunner().invoke(rate, ["--price", price, "--quantity", "3", "--dimension", "eu", "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["amount"] == "6"
    assert "known values: eu" in one_line_error(["--price", price, "--quantity", "3", "--dimension", "us"])
