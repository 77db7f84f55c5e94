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
            select(events.c.event_id, events.c.meter, events.c.value_units, events.c.ts_us, events.c.properties).where(
                events.c.tenant_id == tenant.tenant_id
            )
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
def test_bad_json_line_in_a_file_is_named_and_nothing_is_sent(
    server: ServerThread, tenant: TenantKey, engine: Engine, tmp_path: Path, line: str, fragment: str
) -> None:
    path = tmp_path / "events.jsonl"
    head = f'"customer": "c1", "meter": "tokens", "timestamp": {NOW_US}'
    text = (
        f'{{"event_id": "first", {head}, "value": "1"}}\n'
        f'{{"event_id": "second", {head}, {line}}}\n'
        f'{{"event_id": "third", {head}, "value": "1"}}\n'
    )
    path.write_text(text)
    error = one_line_error(run_send(server, tenant, str(path)))
    assert fragment in error and "nothing was sent" in error and "--skip-invalid to send the other 2 events" in error
    assert rows(engine, tenant) == {}
    # stdin streams: the same bad line stops it there, after the events before it were sent
    error = one_line_error(run_send(server, tenant, "-", input=text))
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


# --- one pass over a file before sending, --skip-invalid, unix times ---------------------------------------


def test_every_bad_line_of_a_file_is_reported_in_one_pass_and_nothing_is_sent(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    good = {"customer": "c1", "meter": "tokens", "timestamp": NOW_US, "value": "1"}
    path.write_text(
        jsonl([{"event_id": "ok1", **good}])
        + "\n"  # line 2 is blank: numbering still counts it
        + "{not json\n"  # line 3
        + jsonl(
            [
                {**good, "event_id": "sci", "value": "1e-3"},  # line 4
                {"event_id": "ok2", **good},
                {**good, "event_id": "float", "value": 2.5},  # line 6
                {**good, "event_id": "when", "timestamp": "yesterday"},  # line 7
            ]
        )
    )
    # No server is needed: the check runs before anything connects, so nothing can have been sent.
    result = invoke(str(path), "--target", "127.0.0.1:1", "--api-key", "k")
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert lines[:-1] == [
        "line 3: not valid JSON (Expecting property name enclosed in double quotes at column 2)",
        "line 4: value: '1e-3' is not a decimal in plain notation (ASCII digits and one point, like 12.50); "
        "write 0.001",
        'line 6: value 2.5 is a JSON float, which is not exact; write it as a string: "2.5"',
        "line 7: timestamp 'yesterday' is neither RFC 3339 (2025-01-31T12:00:00Z) nor a unix time "
        "(seconds, milliseconds or microseconds)",
    ]
    assert lines[-1] == (
        f"Error: 4 bad lines in {path} (listed above); nothing was sent: fix them and run again, "
        "or pass --skip-invalid to send the other 2 events"
    )


def test_skip_invalid_sends_the_rest_and_lists_what_it_skipped(
    server: ServerThread, tenant: TenantKey, engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "usage.csv"
    path.write_text(
        "event_id,customer,meter,timestamp,value,note\n"
        f"a,c1,tokens,{NOW_US},1.5,\n"
        f'b,c1,tokens,{NOW_US},2,"two\nlines"\n'  # lines 3-4: one record
        f"c,c1,tokens,{NOW_US},1e3,\n"  # line 5
        f"d,c1,tokens,{NOW_US},3\n"  # line 6: a field short
        f"e,c1,tokens,{NOW_US},4,\n"
    )
    result = run_send(server, tenant, str(path), "--skip-invalid")
    assert result.exit_code == 0, result.output
    assert counts(result) == ["3", "0", "0"]
    assert "line 5: value: '1e3' is not a decimal in plain notation" in result.stdout
    assert "line 6: 5 fields but the header has 6" in result.stdout
    assert set(rows(engine, tenant)) == {"a", "b", "e"}
    # Line numbers name where a record starts, like the rejected events of the server do.
    path.write_text(
        f'event_id,customer,meter,timestamp,value,note\nx,c1,nope,{NOW_US},1,"a\nb"\ny,c1,nope,{NOW_US},1,\n'
    )
    result = run_send(server, tenant, str(path))
    assert "line 2: meter: UNKNOWN_METER" in result.stdout and "line 4: meter: UNKNOWN_METER" in result.stdout


S, MS = NOW_US // 1_000_000, NOW_US // 1_000


@pytest.mark.parametrize(
    ("stamp", "unit", "stored"),
    [(S, "auto", S * 1_000_000), (MS, "auto", MS * 1_000), (NOW_US, "auto", NOW_US), (NOW_US * 1_000, "auto", NOW_US),
     (str(S), "auto", S * 1_000_000), (MS, "ms", MS * 1_000)],
    ids=["seconds", "milliseconds", "microseconds", "nanoseconds", "seconds-as-text", "milliseconds-told"],
)  # fmt: skip
def test_unix_seconds_milliseconds_and_nanoseconds_are_recognised(
    server: ServerThread, tenant: TenantKey, engine: Engine, tmp_path: Path, stamp: object, unit: str, stored: int
) -> None:
    path = tmp_path / "e.jsonl"
    path.write_text(jsonl([{"event_id": "t", "customer": "c1", "meter": "api_calls", "timestamp": stamp}]))
    result = run_send(server, tenant, str(path), "--timestamp-unit", unit)
    assert result.exit_code == 0, result.output
    assert rows(engine, tenant)["t"][2] == stored


def test_unix_time_units_by_size() -> None:
    from tally.cli.send import unix_us

    assert unix_us(1_738_324_800) == 1_738_324_800_000_000  # seconds
    assert unix_us(1_738_324_800_123) == 1_738_324_800_123_000  # milliseconds
    assert unix_us(1_738_324_800_123_456) == 1_738_324_800_123_456  # microseconds
    assert unix_us(1_738_324_800_123_456_789) == 1_738_324_800_123_456  # nanoseconds, cut to the microsecond
    assert unix_us(1_738_324_800, "ms") == 1_738_324_800_000
