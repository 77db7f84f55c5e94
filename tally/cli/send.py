"""`tally send`: send a JSON-lines or CSV file of usage events to a Tally server.

A file is read twice: first every line is checked, and every bad line is reported in that one pass before
anything is sent (or, with --skip-invalid, the bad lines are skipped and listed); then the events are
streamed in batches with `IngestClient`, which resends unacked batches after a reconnect. Rerunning the
command on the same file is always safe: event ids make every resent event a `duplicate`. Standard input
(`-`) may be a pipe that never ends, so it is read once, as a stream: a bad line stops it (the events before
it are sent), or is skipped and listed with --skip-invalid.

Every problem a user can cause is one line naming the fix (file not found, bad line N, no server at TARGET,
refused key). Lines are numbered the same way in every message: `line N`, counting from 1, blank lines and
the CSV header included, as an editor numbers them.

The gRPC client, rich and the rating rules are imported when the command runs, never when `tally --help`
lists it.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import threading
import time
from array import array
from collections.abc import Iterable, Iterator
from datetime import datetime
from itertools import chain
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

import click

from tally.cli._common import count

if TYPE_CHECKING:
    from rich.console import Console

    from tally.sdk import IngestError, IngestSummary, UsageEvent

REQUIRED: Final = ("event_id", "customer", "meter", "timestamp")
FIELDS: Final = (*REQUIRED, "value", "properties")
REJECTS_SHOWN: Final = 20
TIMESTAMP_UNITS: Final = ("auto", "s", "ms", "us", "ns")
_US_PER: Final = {"s": 1_000_000, "ms": 1_000, "us": 1}


class BadLine(Exception):
    """A line of the input that cannot become an event. `fatal`: nothing after it can be read (a CSV header
    without the required columns)."""

    def __init__(self, line: int, message: str, fatal: bool = False) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.fatal = fatal


class _JsonFloat(str):
    """A JSON number with a fraction or exponent, kept as its text so it can be refused by name."""


def unix_us(number: int, unit: str = "auto") -> int:
    """An integer unix time as microseconds. `auto` tells the unit by size, which is unambiguous for every
    instant from 1973 to 5138: below 10**11 seconds, below 10**14 milliseconds, below 10**17 microseconds,
    else nanoseconds (cut to the microsecond)."""
    if unit == "auto":
        size = abs(number)
        unit = "s" if size < 10**11 else "ms" if size < 10**14 else "us" if size < 10**17 else "ns"
    if unit == "ns":
        return number // 1_000
    return number * _US_PER[unit]


def _timestamp(raw: object, unit: str) -> datetime | int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return unix_us(raw, unit)
    if isinstance(raw, _JsonFloat):
        raise ValueError(
            f"timestamp {raw} has a fraction; give unix seconds, milliseconds or microseconds as an integer, "
            "or RFC 3339 text (2025-01-31T12:00:00.5Z)"
        )
    if isinstance(raw, str):
        text = raw.strip()
        if text.lstrip("-").isdigit() and text.isascii():
            return unix_us(int(text), unit)
        try:
            ts = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"timestamp {raw!r} is neither RFC 3339 (2025-01-31T12:00:00Z) nor a unix time "
                "(seconds, milliseconds or microseconds)"
            ) from None
        if ts.tzinfo is None:
            raise ValueError(f"timestamp {raw!r} has no timezone; add Z or an offset like +02:00")
        return ts
    raise ValueError(f"timestamp {raw!r} must be RFC 3339 text (2025-01-31T12:00:00Z) or an integer unix time")


def _value(raw: object) -> str | int | None:
    from rating.fixedpoint import DECIMAL_RE, not_plain_decimal

    if raw is None or raw == "":
        return None
    if isinstance(raw, _JsonFloat):
        raise ValueError(f'value {raw} is a JSON float, which is not exact; write it as a string: "{raw}"')
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise ValueError(f'value must be a decimal string like "12.5" or an integer, not {json.dumps(raw)}')
    if isinstance(raw, str) and DECIMAL_RE.fullmatch(raw) is None:
        raise ValueError(not_plain_decimal(raw, "value"))  # the rule and the words of the server's ingest
    return raw


class EventReader:
    """Turns lines into UsageEvents, remembering each event's line number for error reports.

    A bad line is recorded, never raised: with `keep_going` it is skipped (listed in `bad`) and reading
    goes on; without, reading stops there (`error`), so the events before it are still sent and the summary
    shows what happened to them. A fatal problem (a CSV header without the required columns) always stops.
    """

    def __init__(self, stream: IO[str], fmt: str, *, keep_going: bool = False, timestamp_unit: str = "auto") -> None:
        self.stream = stream
        self.fmt = fmt
        self.keep_going = keep_going
        self.timestamp_unit = timestamp_unit
        self.lines = array("Q")
        self.chars_read = 0
        self.bad: list[BadLine] = []
        self.error: BadLine | None = None

    def line_of(self, index: int) -> int:
        """The line of the index-th event read (0 when unknown)."""
        return self.lines[index] if 0 <= index < len(self.lines) else 0

    def events(self) -> Iterator[UsageEvent]:
        lines = self._lines()
        fmt = self.fmt
        if fmt == "auto":
            first = next(lines, "")
            fmt = "jsonl" if first.lstrip().startswith("{") else "csv"
            lines = chain([first], lines) if first else lines
        for item in self._jsonl(lines) if fmt == "jsonl" else self._csv(lines):
            if isinstance(item, BadLine):
                if item.fatal or not self.keep_going:
                    self.error = item
                    return
                self.bad.append(item)
            else:
                yield item

    def _lines(self) -> Iterator[str]:
        for line in self.stream:
            self.chars_read += len(line)
            yield line

    def _jsonl(self, lines: Iterable[str]) -> Iterator[UsageEvent | BadLine]:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line, parse_float=_JsonFloat)
            except json.JSONDecodeError as exc:
                yield BadLine(number, f"not valid JSON ({exc.msg} at column {exc.colno})")
                continue
            if not isinstance(obj, dict):
                yield BadLine(number, "expected a JSON object like " + EXAMPLE_JSON)
                continue
            unknown = sorted(set(obj) - set(FIELDS))
            if unknown:
                yield BadLine(number, f"unknown field {unknown[0]!r}; the fields are {', '.join(FIELDS)}")
                continue
            props = obj.get("properties") or {}
            if not isinstance(props, dict):
                yield BadLine(number, 'properties must be an object of strings, like {"region": "eu"}')
                continue
            yield self._event(number, obj, props)

    def _csv(self, lines: Iterable[str]) -> Iterator[UsageEvent | BadLine]:
        reader = csv.reader(lines)
        header = next(reader, None)
        if header is None:
            return
        header = [h.strip() for h in header]
        missing = [name for name in REQUIRED if name not in header]
        if missing:
            yield BadLine(
                reader.line_num,
                f"the CSV header lacks {', '.join(missing)}; it must name event_id,customer,meter,timestamp "
                "and optionally value (other columns become properties)",
                fatal=True,
            )
            return
        extra = [(i, h) for i, h in enumerate(header) if h not in FIELDS]
        where = {name: header.index(name) for name in FIELDS if name in header}
        while True:
            number = reader.line_num + 1  # where the record starts (a quoted field may span lines)
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield BadLine(number, f"not valid CSV ({exc})")
                continue
            if not row:
                continue
            if len(row) != len(header):
                yield BadLine(number, f"{len(row)} fields but the header has {len(header)}")
                continue
            obj: dict[str, Any] = {name: row[i] for name, i in where.items()}
            props = {key: row[i] for i, key in extra if row[i] != ""}
            yield self._event(number, obj, props)

    def _event(self, number: int, obj: dict[str, Any], props: dict[str, Any]) -> UsageEvent | BadLine:
        from tally.sdk import UsageEvent

        missing = [name for name in REQUIRED if obj.get(name) in (None, "")]
        if missing:
            return BadLine(number, f"missing {missing[0]}")
        for name in ("event_id", "customer", "meter"):
            if not isinstance(obj[name], str) or isinstance(obj[name], _JsonFloat):
                return BadLine(number, f"{name} must be a string")
        bad_props = [k for k, v in props.items() if not isinstance(v, str) or isinstance(v, _JsonFloat)]
        if bad_props:
            return BadLine(number, f"property {bad_props[0]!r} must be a string")
        try:
            event = UsageEvent(
                event_id=obj["event_id"],
                customer=obj["customer"],
                meter=obj["meter"],
                timestamp=_timestamp(obj["timestamp"], self.timestamp_unit),
                value=_value(obj.get("value")),
                properties=props,
            )
        except (TypeError, ValueError) as exc:
            return BadLine(number, str(exc))
        self.lines.append(number)
        return event


EXAMPLE_JSON: Final = (
    '{"event_id": "req-1", "customer": "cus_42", "meter": "tokens", '
    '"timestamp": "2025-01-31T12:00:00Z", "value": "12.5", "properties": {"model": "small"}}'
)


def _detect_format(path: str, fmt: str) -> str:
    if fmt != "auto" or path == "-":
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    return "auto"


def _open(path: str) -> tuple[IO[str], int | None]:
    if path == "-":
        return sys.stdin, None
    try:
        stream = open(path, encoding="utf-8", newline="")  # noqa: SIM115 - closed by the caller
        return stream, os.fstat(stream.fileno()).st_size
    except FileNotFoundError:
        raise click.ClickException(
            f"file not found: {path}; give a path to a .jsonl or .csv file, or - for stdin"
        ) from None
    except IsADirectoryError:
        raise click.ClickException(f"{path} is a directory; give a .jsonl or .csv file") from None
    except OSError as exc:
        raise click.ClickException(f"cannot read {path}: {exc.strerror or exc}") from None


def _check(path: str, fmt: str, timestamp_unit: str) -> tuple[int, list[BadLine]]:
    """The first pass over a file: (the events it holds, every bad line). A fatal line is an error at once."""
    stream, _ = _open(path)
    try:
        reader = EventReader(stream, fmt, keep_going=True, timestamp_unit=timestamp_unit)
        good = sum(1 for _ in reader.events())
    except UnicodeDecodeError as exc:
        raise click.ClickException(f"{path} is not UTF-8 text ({exc.reason}); save it as UTF-8") from None
    finally:
        stream.close()
    if reader.error is not None:
        raise click.ClickException(f"{reader.error}; nothing was sent")
    return good, reader.bad


def _refuse_bad_lines(path: str, good: int, bad: list[BadLine]) -> None:
    """Every bad line of the file, then one error: nothing was sent."""
    them = "it" if len(bad) == 1 else "them"
    fix = f"fix {them} and run again, or pass --skip-invalid to send the other {count(good)} events"
    if len(bad) == 1:
        raise click.ClickException(f"{bad[0]}; nothing was sent: {fix}")
    for problem in bad:
        click.echo(str(problem), err=True)
    raise click.ClickException(f"{count(len(bad))} bad lines in {path} (listed above); nothing was sent: {fix}")


def _explain(exc: IngestError, target: str, sent: IngestSummary | None) -> str:
    import grpc

    code = exc.code
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return (
            f"the server refused the API key ({exc.details}); pass a key from "
            "`tally apikey create TENANT --scope ingest` with --api-key or TALLY_API_KEY"
        )
    if code is grpc.StatusCode.UNAVAILABLE and sent is None:
        return f"server unreachable at {target} — is `tally serve` running? (pass --target HOST:PORT)"
    if code in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    ):
        done = exc.summary.accepted + exc.summary.duplicate
        return (
            f"lost the server at {target} ({exc}); {count(done)} events were acked and are stored; "
            "run the same command again: resent events count as duplicates"
        )
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        return f"the server refused a batch ({exc.details}); try a smaller --batch-size"
    return f"sending failed ({exc})"


def _print_summary(console: Console, summary: IngestSummary, reader: EventReader) -> None:
    from rich.table import Table

    elapsed = max(summary.elapsed_s, 1e-9)
    table = Table(title="tally send", title_justify="left")
    for name in ("accepted", "duplicate", "rejected", "skipped", "elapsed", "events/s"):
        table.add_column(name, justify="right")
    table.add_row(
        count(summary.accepted),
        count(summary.duplicate),
        count(summary.rejected),
        count(len(reader.bad)),
        f"{summary.elapsed_s:.2f} s",
        count(round(summary.events / elapsed)),
    )
    console.print(table)
    if summary.retries:
        console.print(f"reconnected {count(summary.retries)} times; unacked batches were resent", markup=False)
    if reader.bad:
        console.print(f"skipped bad lines (--skip-invalid), all {count(len(reader.bad))}:", markup=False)
        for problem in reader.bad:
            console.print(f"  {problem}", markup=False, soft_wrap=True)
    if summary.rejected:
        shown = summary.errors[:REJECTS_SHOWN]
        console.print(
            f"rejected events by the server (first {count(len(shown))} of {count(summary.rejected)}):", markup=False
        )
        for err in shown:
            console.print(
                f"  line {reader.line_of(err.index)}: {err.field}: {err.code}: {err.reason}",
                markup=False,
                soft_wrap=True,
            )


@click.command("send", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("file", metavar="FILE")
@click.option("--target", default="127.0.0.1:50051", show_default=True, help="HOST:PORT of `tally serve`.")
@click.option("--api-key", envvar="TALLY_API_KEY", help="Ingest key (or env TALLY_API_KEY).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", "jsonl", "csv"]),
    default="auto",
    show_default=True,
    help="auto: by extension (.jsonl/.ndjson, .csv), else by the first character.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 1_000_000),
    default=1000,
    show_default=True,
    help="Events per batch (the server allows at most TALLY_INGEST__BATCH_EVENTS_MAX).",
)
@click.option("--connect-timeout", type=float, default=5.0, show_default=True, help="Seconds to wait for the server.")
@click.option(
    "--skip-invalid",
    is_flag=True,
    help="Send the good lines and list the bad ones, instead of sending nothing when a line is bad.",
)
@click.option(
    "--timestamp-unit",
    type=click.Choice(TIMESTAMP_UNITS),
    default="auto",
    show_default=True,
    help="Unit of integer timestamps; auto tells unix seconds, milliseconds, microseconds and nanoseconds by size.",
)
def send(
    file: str,
    target: str,
    api_key: str | None,
    fmt: str,
    batch_size: int,
    connect_timeout: float,
    skip_invalid: bool,
    timestamp_unit: str,
) -> None:
    """Send usage events from FILE (JSON lines or CSV; - reads stdin) to a Tally server.

    \b
    JSON lines: one object per line. value is a decimal STRING or an integer
    (JSON floats are refused: they are not exact); timestamp is RFC 3339 or an
    integer unix time in seconds, milliseconds or microseconds (told apart by
    size); properties is optional, and so is value on count meters:
      {"event_id":"r1","customer":"c42","meter":"tokens","timestamp":"2025-01-31T12:00:00Z","value":"12.5"}
      {"event_id":"r2","customer":"c42","meter":"calls","timestamp":1738324800,"properties":{"k":"v"}}

    \b
    CSV: a header naming event_id,customer,meter,timestamp[,value]; every
    other column becomes a property (an empty cell leaves it out):
      event_id,customer,meter,timestamp,value,region
      req-1,cus_42,tokens,2025-01-31T12:00:00Z,12.5,eu

    \b
    A file is checked whole before anything is sent: every bad line is listed
    (line N, counted from 1 like an editor does) and nothing is sent, unless
    --skip-invalid sends the rest. stdin is checked as it streams: a bad line
    stops it after the events before it were sent.
    Safe to rerun: each event id is stored once, so events already sent come
    back as duplicates. Exit status 0 when nothing was rejected or left unsent
    (lines skipped with --skip-invalid are listed), 1 otherwise.
    """
    from tally.cli._common import console as out
    from tally.cli._common import err_console
    from tally.sdk import BatchResult, IngestClient, IngestError, IngestSummary

    if not api_key:
        raise click.ClickException(
            "no API key: pass --api-key KEY or set TALLY_API_KEY (create one with `tally apikey create TENANT`)"
        )
    fmt = _detect_format(file, fmt)
    if file != "-":
        good, bad = _check(file, fmt, timestamp_unit)
        if bad and not skip_invalid:
            _refuse_bad_lines(file, good, bad)
    stream, size = _open(file)
    reader = EventReader(stream, fmt, keep_going=skip_invalid or file != "-", timestamp_unit=timestamp_unit)
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("sending"),
        BarColumn(),
        TextColumn("{task.fields[events]:,} events acked · {task.fields[rate]:,.0f} events/s"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    )
    task = progress.add_task("send", total=size, events=0, rate=0.0)
    started = time.monotonic()
    acked = 0
    lock = threading.Lock()

    def on_ack(result: BatchResult) -> None:
        nonlocal acked
        with lock:
            acked += result.size
            rate = acked / max(time.monotonic() - started, 1e-9)
            progress.update(task, completed=reader.chars_read, events=acked, rate=rate)

    summary: IngestSummary | None = None
    try:
        with progress, IngestClient(target, api_key, batch_events_max=batch_size) as client:
            client.wait_ready(connect_timeout)
            summary = IngestSummary()  # connected: from here a failure is "lost", not "unreachable"
            summary = client.send(reader.events(), on_ack=on_ack)
    except IngestError as exc:
        if summary is not None and exc.summary.events:
            _print_summary(out, exc.summary, reader)
        raise click.ClickException(_explain(exc, target, summary)) from None
    except UnicodeDecodeError as exc:
        raise click.ClickException(f"{file} is not UTF-8 text ({exc.reason}); save it as UTF-8") from None
    finally:
        if file != "-":
            stream.close()
    _print_summary(out, summary, reader)
    if reader.error is not None:
        sent = len(reader.lines)
        raise click.ClickException(
            f"{reader.error}; the {count(sent)} events before it were sent (summary above) — "
            "fix the line and run again (resent events count as duplicates), or pass --skip-invalid"
        )
    if summary.rejected:
        raise click.exceptions.Exit(1)
