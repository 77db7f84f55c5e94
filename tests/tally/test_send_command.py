"""`tally send` against a real server: JSON lines and CSV, line numbers in every report, one-line errors."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, select

from metering.tables import events
from tally.cli.send import send
from tests.conftest import ServerThread, TenantKey

NOW_US = time.time_ns() // 1000
RFC3339 = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def invoke(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(send, list(args), input=input)


def run_send(server: ServerThread, tenant: TenantKey, *args: str, input: str | None = None) -> Result:
    return invoke(*args, "--target", server.target, "--api-key", tenant.key, input=input)


def jsonl(rows: list[dict[str, object]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def rows(engine: Engine, tenant: TenantKey) -> dict[str, tuple[str, int, int, str | None]]:
    with engine.connect() as conn:
        got = conn.execute(
            select(
                events.c.event_id, events.c.meter, events.c.value_units, events.c.ts_us, events.c.properties
            ).where(events.c.tenant_id == tenant.tenant_id)
        ).all()
    return {r.event_id: (r.meter, r.value_units, r.ts_us, r.properties) for r in got}


def counts(result: Result) -> list[str]:
    """accepted, duplicate, rejected from the summary table."""
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if "accepted" in line and "duplicate" in line)
    row = next(line for line in lines[header + 1 :] if any(ch.isdigit() for ch in line))
    return [cell.strip() for cell in row.split("│")[1:4]]


def one_line_error(result: Result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    return lines[0]


def test_jsonl_file_is_sent_exactly_and_a_rerun_is_all_duplicates(
    server: ServerThread, tenant: TenantKey, engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "events.jsonl"
    data = [
        {"event_id": f"e{i}", "customer": "c1", "meter": "tokens", "timestamp": NOW_US, "value": f"{i}.25"}
        for i in range(2_500)
    ]
    data.append({"event_id": "calls", "customer": "c1", "meter": "api_calls", "timestamp": RFC3339})
    data.append(
        {
            "event_id": "int",
            "customer": "c1",
            "meter": "tokens",
            "timestamp": NOW_US,
            "value": 7,
            "properties": {"k": "v"},
        }
    )
    path.write_text(jsonl(data) + "\n")  # a blank line at the end is fine
    result = run_send(server, tenant, str(path), "--batch-size", "1000")
    assert result.exit_code == 0, result.output
    assert counts(result) == ["2,502", "0", "0"]
    stored = rows(engine, tenant)
    assert len(stored) == 2_502
    assert stored["e3"][:3] == ("tokens", 325, NOW_US)
    assert stored["int"] == ("tokens", 700, NOW_US, '{"k":"v"}')
    assert stored["calls"][:2] == ("api_calls", 1)
    again = run_send(server, tenant, str(path))
    assert again.exit_code == 0 and counts(again) == ["0", "2,502", "0"]


def test_csv_extra_columns_become_properties(
    server: ServerThread, tenant: TenantKey, engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "usage.csv"
    path.write_text(
        "event_id,customer,meter,timestamp,value,region,model\n"
        f"a,c1,tokens,{RFC3339},12.5,eu,\n"
        f'b,c1,tokens,{NOW_US},"3",us,big\n'
        f"c,c1,api_calls,{NOW_US},,,\n"
    )
    result = run_send(server, tenant, str(path))
    assert result.exit_code == 0, result.output
    stored = rows(engine, tenant)
    assert stored["a"][1] == 1250 and stored["a"][3] == '{"region":"eu"}'
    assert stored["b"] == ("tokens", 300, NOW_US, '{"model":"big","region":"us"}')
    assert stored["c"][1:] == (1, NOW_US, None)


def test_stdin_is_read_with_dash_and_sniffed(server: ServerThread, tenant: TenantKey, engine: Engine) -> None:
    csv_text = f"event_id,customer,meter,timestamp\ns1,c1,api_calls,{NOW_US}\n"
    assert run_send(server, tenant, "-", input=csv_text).exit_code == 0
    json_text = jsonl([{"event_id": "s2", "customer": "c1", "meter": "api_calls", "timestamp": NOW_US}])
    assert run_send(server, tenant, "-", input=json_text).exit_code == 0
    assert set(rows(engine, tenant)) == {"s1", "s2"}


def test_rejected_events_are_listed_by_line_and_exit_1(
    server: ServerThread, tenant: TenantKey, engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "events.jsonl"
    good = {"customer": "c1", "meter": "tokens", "timestamp": NOW_US, "value": "1"}
    path.write_text(
        jsonl([{"event_id": "ok1", **good}])
        + "\n"  # line 2 is blank: line numbers still count it
        + jsonl(
            [
                {**good, "event_id": "bad-meter", "meter": "nope"},  # line 3
                {"event_id": "ok2", **good},
                {**good, "event_id": "bad-scale", "value": "1.001"},  # line 5
            ]
        )
    )
    result = run_send(server, tenant, str(path), "--batch-size", "2")
    assert result.exit_code == 1, result.output
    assert "line 3: meter: UNKNOWN_METER: no meter 'nope'" in result.stdout
    assert "line 5: value: VALUE_SCALE_EXCEEDED" in result.stdout
    assert set(rows(engine, tenant)) == {"ok1", "ok2"}


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        (
            '"value": 12.5',
            'line 2: value 12.5 is a JSON float, which is not exact; write it as a string: "12.5"',
        ),
        ('"value": 1e3', "line 2: value 1e3 is a JSON float"),
        ('"value": true', "line 2: value must be a decimal string"),
        ('"value": "1", "ts": 5', "line 2: unknown field 'ts'"),
    ],
)
def test_bad_json_line_is_named_and_the_lines_before_are_sent(
    server: ServerThread, tenant: TenantKey, engine: Engine, tmp_path: Path, line: str, fragment: str
) -> None:
    path = tmp_path / "events.jsonl"
    head = f'"customer": "c1", "meter": "tokens", "timestamp": {NOW_US}'
    path.write_text(
        f'{{"event_id": "first", {head}, "value": "1"}}\n'
        f'{{"event_id": "second", {head}, {line}}}\n'
        f'{{"event_id": "third", {head}, "value": "1"}}\n'
    )
    error = one_line_error(run_send(server, tenant, str(path)))
    assert fragment in error and "the 1 events before it were sent" in error
    assert set(rows(engine, tenant)) == {"first"}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("event_id,customer,meter\n", "line 1: the CSV header lacks timestamp"),
        ("event_id,customer,meter,timestamp\na,c,m\n", "line 2: 3 fields but the header has 4"),
        ("event_id,customer,meter,timestamp\na,c,m,yesterday\n", "line 2: timestamp 'yesterday' is neither"),
        ("event_id,customer,meter,timestamp\na,c,m,2025-01-01T00:00:00\n", "has no timezone"),
    ],
)
def test_bad_csv_is_named_by_line(
    server: ServerThread, tenant: TenantKey, tmp_path: Path, text: str, fragment: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    assert fragment in one_line_error(run_send(server, tenant, str(path)))


def test_unreachable_target_is_one_line_saying_what_to_do(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    path = tmp_path / "e.jsonl"
    path.write_text(jsonl([{"event_id": "a", "customer": "c", "meter": "m", "timestamp": NOW_US}]))
    error = one_line_error(invoke(str(path), "--target", f"127.0.0.1:{port}", "--api-key", "k"))
    assert f"server unreachable at 127.0.0.1:{port}" in error and "tally serve" in error


def test_bad_key_and_missing_key_and_missing_file(
    server: ServerThread, tenant: TenantKey, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "e.jsonl"
    path.write_text(jsonl([{"event_id": "a", "customer": "c", "meter": "tokens", "timestamp": NOW_US}]))
    error = one_line_error(invoke(str(path), "--target", server.target, "--api-key", "tly_nope"))
    assert "refused the API key" in error and "tally apikey create" in error
    monkeypatch.delenv("TALLY_API_KEY", raising=False)
    assert "no API key" in one_line_error(invoke(str(path), "--target", server.target))
    missing = one_line_error(invoke(str(tmp_path / "nope.jsonl"), "--api-key", "k"))
    assert "file not found" in missing and "nope.jsonl" in missing
    monkeypatch.setenv("TALLY_API_KEY", tenant.key)
    result = invoke(str(path), "--target", server.target)  # the key comes from the env: the server answers
    assert result.exit_code == 1 and "line 1: value: INVALID_VALUE: value is required" in result.stdout


def test_help_teaches_both_formats() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for fragment in (
        '"value":"12.5"',
        "event_id,customer,meter,timestamp,value,region",
        "TALLY_API_KEY",
        "stdin",
    ):
        assert fragment in result.output
