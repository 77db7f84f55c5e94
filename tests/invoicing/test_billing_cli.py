"""The billing CLI end to end on SQLite, and its failures as one readable line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import CliRun as Run
from tests.invoicing.conftest import plan_json


@pytest.fixture
def acme(run: Run, tmp_path: Path) -> Path:
    assert run("tenant", "create", "acme")[0] == 0
    assert run("meter", "create", "acme", "api_calls", "--aggregation", "count")[0] == 0
    file = tmp_path / "pro.json"
    file.write_text(json.dumps(plan_json("pro")))
    return file


def one_line_error(result: tuple[int, str, str]) -> str:
    code, _, err = result
    assert code == 1, result
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    return lines[0]


def test_full_flow(run: Run, acme: Path, tmp_path: Path) -> None:
    code, out, _ = run("customer", "create", "acme", "cus_42", "--name", "Ada", "--currency", "USD",
                       "--timezone", "Europe/Paris", "--meta", "crm=991",
                       "--address", '{"city": "Paris", "country": "FR"}')  # fmt: skip
    assert code == 0 and "created customer cus_42 (USD, Europe/Paris)" in out
    code, out, _ = run("customer", "show", "acme", "cus_42")
    assert code == 0 and "Paris, FR" in out and "crm=991" in out
    assert "cus_42" in run("customer", "list", "acme")[1]

    code, out, _ = run("plan", "create", "acme", str(acme))
    assert code == 0 and "created pro v1 (draft, 2 charges)" in out
    code, out, _ = run("plan", "publish", "acme", "pro")
    assert code == 0 and "published pro v1" in out
    code, out, _ = run("plan", "edit", "acme", str(acme))
    assert code == 0 and "saved pro v2 (draft)" in out
    code, out, _ = run("plan", "list", "acme")
    assert code == 0 and "v2 (draft)" in out and "v1" in out
    code, out, _ = run("plan", "show", "acme", "pro", "--version", "1")
    assert code == 0 and "published" in out and "api_calls" in out
    other = tmp_path / "other.json"
    other.write_text(json.dumps(plan_json("other")))
    run("plan", "create", "acme", str(other))
    run("plan", "publish", "acme", "other")

    code, out, _ = run("subscription", "create", "acme", "cus_42", "pro", "--at", "2026-01-31T23:00Z")
    assert code == 0 and "created subscription 1 (active)" in out
    code, out, _ = run("subscription", "change", "acme", "1", "other", "--at", "2026-02-14T23:00Z", "--reason", "up")
    assert code == 0 and "old plan share 1/2 by day" in out and "new plan share 1/2 by day" in out
    code, out, _ = run("subscription", "pause", "acme", "1", "--at", "2026-02-20T00:00Z")
    assert code == 0 and "is paused" in out
    code, out, _ = run("subscription", "resume", "acme", "1", "--at", "2026-02-21T00:00Z")
    assert code == 0 and "is active" in out
    code, out, _ = run("subscription", "cancel", "acme", "1", "--at-period-end", "--at", "2026-02-22T00:00Z")
    assert code == 0 and "ends 2026-02-28 23:00Z" in out  # Paris midnight, March 1
    code, out, _ = run("subscription", "withdraw", "acme", "1", "--at", "2026-02-23T00:00Z", "--reason", "stays")
    assert code == 0 and "is active; nothing is scheduled" in out
    code, _, err = run("subscription", "withdraw", "acme", "1", "--at", "2026-02-23T00:00Z")
    assert code == 1 and "nothing scheduled to withdraw" in err and len(err.strip().splitlines()) == 1
    run("subscription", "cancel", "acme", "1", "--at-period-end", "--at", "2026-02-24T00:00Z")
    code, out, _ = run("subscription", "show", "acme", "1")
    assert code == 0
    for kind in ("created", "plan_changed", "paused", "resumed", "end_scheduled", "schedule_withdrawn"):
        assert kind in out
    code, out, _ = run("subscription", "list", "acme", "--customer", "cus_42")
    assert code == 0 and "other v1" in out and "active" in out


def test_errors_are_one_line_that_say_what_to_do(run: Run, acme: Path, tmp_path: Path) -> None:
    assert "no tenant named 'nope'" in one_line_error(run("customer", "list", "nope"))
    assert "unknown time zone" in one_line_error(run("customer", "create", "acme", "c", "--timezone", "Mars/X"))
    assert "must be KEY=VALUE" in one_line_error(run("customer", "create", "acme", "c", "--meta", "novalue"))
    assert "no customer 'ghost'" in one_line_error(run("customer", "show", "acme", "ghost"))

    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert "not valid JSON" in one_line_error(run("plan", "create", "acme", str(bad)))
    invalid = plan_json("pro")
    invalid["charges"][1]["price"]["unit_amount"] = "-1"
    bad.write_text(json.dumps(invalid))
    line = one_line_error(run("plan", "create", "acme", str(bad)))
    assert f"plan file {bad}: charges[1].price.unit_amount: must be zero or more, got -1" in line

    run("plan", "create", "acme", str(acme))
    run("customer", "create", "acme", "c")
    line = one_line_error(run("subscription", "create", "acme", "c", "pro"))
    assert "no published plan 'pro'" in line and "tally plan publish TENANT pro" in line
    run("plan", "publish", "acme", "pro")
    assert "already published" in one_line_error(run("plan", "publish", "acme", "pro"))
    assert "has no time zone" in one_line_error(
        run("subscription", "create", "acme", "c", "pro", "--at", "2026-01-01T00:00")
    )
    assert run("subscription", "create", "acme", "c", "pro", "--at", "2026-01-01T00:00Z")[0] == 0
    line = one_line_error(run("subscription", "resume", "acme", "1", "--at", "2026-01-02T00:00Z"))
    assert "cannot resume subscription 1: it is active" in line


def test_help_texts_teach_with_examples(run: Run) -> None:
    for args in (("plan", "create"), ("customer", "create"), ("subscription", "change"), ("subscription", "pause")):
        code, out, _ = run(*args, "--help")
        assert code == 0 and "Example" in out and "tally " in out
