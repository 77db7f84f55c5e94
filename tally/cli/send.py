"""`tally send`: stream a JSON-lines or CSV file of usage events to a Tally server.

The file is read as a stream (so `-` can be a pipe that never ends), batched and sent with
`IngestClient`, which resends unacked batches after a reconnect: rerunning the command on the
same file is always safe, because event ids make every resent event a `duplicate`.

Every problem a user can cause is one line naming the fix (file not found, bad line N, no
server at TARGET, refused key); a rejected event is reported with its line number, so the line
can be fixed and the file sent again.
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
from typing import IO, Any, Final

import click
import grpc
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tally.sdk import BatchResult, IngestClient, IngestError, IngestSummary, UsageEvent

REQUIRED: Final = ("event_id", "customer", "meter", "timestamp")
FIELDS: Final = (*REQUIRED, "value", "properties")
REJECTS_SHOWN: Final = 20


class BadLine(Exception):
    """A line of the input that cannot become an event; nothing after it is read."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


class _JsonFloat(str):
    """A JSON number with a fraction or exponent, kept as its text so it can be refused by name."""


def _timestamp(raw: object) -> datetime | int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and not isinstance(raw, _JsonFloat):
        text = raw.strip()
        if text.lstrip("-").isdigit():
            return int(text)
        try:
            ts = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"timestamp {raw!r} is neither RFC 3339 (2025-01-31T12:00:00Z) nor unix microseconds"
            ) from None
        if ts.tzinfo is None:
            raise ValueError(f"timestamp {raw!r} has no timezone; add Z or an offset like +02:00")
        return ts
    raise ValueError(f"timestamp {raw!r} must be RFC 3339 text (2025-01-31T12:00:00Z) or integer unix microseconds")


def _value(raw: object) -> str | int | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, _JsonFloat):
        raise ValueError(f'value {raw} is a JSON float, which is not exact; write it as a string: "{raw}"')
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        raise ValueError(f'value must be a decimal string like "12.5" or an integer, not {json.dumps(raw)}')
    return raw


class EventReader:
    """Turns lines into UsageEvents, remembering each event's line number for error reports.

    A bad line stops reading (recorded in `error`) rather than raising, so the events before it
    are still sent and the summary shows what happened to them.
    """

    def __init__(self, stream: IO[str], fmt: str) -> None:
        self.stream = stream
        self.fmt = fmt
        self.lines = array("Q")
        self.chars_read = 0
        self.error: BadLine | None = None

    def line_of(self, index: int) -> int:
        return self.lines[index] if 0 <= index < len(self.lines) else 0

    def events(self) -> Iterator[UsageEvent]:
        try:
            lines = self._lines()
            fmt = self.fmt
            if fmt == "auto":
                first = next(lines, "")
                fmt = "jsonl" if first.lstrip().startswith("{") else "csv"
                lines = chain([first], lines) if first else lines
            yield from (self._jsonl(lines) if fmt == "jsonl" else self._csv(lines))
        except BadLine as exc:
            self.error = exc

    def _lines(self) -> Iterator[str]:
        for line in self.stream:
            self.chars_read += len(line)
            yield line

    def _jsonl(self, lines: Iterable[str]) -> Iterator[UsageEvent]:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line, parse_float=_JsonFloat)
            except json.JSONDecodeError as exc:
                raise BadLine(number, f"not valid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(obj, dict):
                raise BadLine(number, "expected a JSON object like " + EXAMPLE_JSON)
            unknown = sorted(set(obj) - set(FIELDS))
            if unknown:
                raise BadLine(number, f"unknown field {unknown[0]!r}; the fields are {', '.join(FIELDS)}")
            props = obj.get("properties") or {}
            if not isinstance(props, dict):
                raise BadLine(number, 'properties must be an object of strings, like {"region": "eu"}')
            yield self._event(number, obj, props)

    def _csv(self, lines: Iterable[str]) -> Iterator[UsageEvent]:
        reader = csv.reader(lines)
        header = next(reader, None)
        if header is None:
            return
        header = [h.strip() for h in header]
        missing = [name for name in REQUIRED if name not in header]
        if missing:
            raise BadLine(
                reader.line_num,
                f"the CSV header lacks {', '.join(missing)}; it must name event_id,customer,meter,timestamp "
                "and optionally value (other columns become properties)",
            )
        extra = [(i, h) for i, h in enumerate(header) if h not in FIELDS]
        where = {name: header.index(name) for name in FIELDS if name in header}
        for row in reader:
            number = reader.line_num
            if not row:
                continue
            if len(row) != len(header):
                raise BadLine(number, f"{len(row)} fields but the header has {len(header)}")
            obj: dict[str, Any] = {name: row[i] for name, i in where.items()}
            props = {key: row[i] for i, key in extra if row[i] != ""}
            yield self._event(number, obj, props)

    def _event(self, number: int, obj: dict[str, Any], props: dict[str, Any]) -> UsageEvent:
        missing = [name for name in REQUIRED if obj.get(name) is None]
        if missing:
            raise BadLine(number, f"missing {missing[0]}")
        for name in ("event_id", "customer", "meter"):
            if not isinstance(obj[name], str) or isinstance(obj[name], _JsonFloat):
                raise BadLine(number, f"{name} must be a string")
        bad_props = [k for k, v in props.items() if not isinstance(v, str) or isinstance(v, _JsonFloat)]
        if bad_props:
            raise BadLine(number, f"property {bad_props[0]!r} must be a string")
        try:
            event = UsageEvent(
                event_id=obj["event_id"],
                customer=obj["customer"],
                meter=obj["meter"],
                timestamp=_timestamp(obj["timestamp"]),
                value=_value(obj.get("value")),
                properties=props,
            )
        except (TypeError, ValueError) as exc:
            raise BadLine(number, str(exc)) from None
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


def _explain(exc: IngestError, target: str, sent: IngestSummary | None) -> str:
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
            f"lost the server at {target} ({exc}); {done} events were acked and are stored; "
            "run the same command again: resent events count as duplicates"
        )
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        return f"the server refused a batch ({exc.details}); try a smaller --batch-size"
    return f"sending failed ({exc})"


def _print_summary(console: Console, summary: IngestSummary, reader: EventReader) -> None:
    elapsed = max(summary.elapsed_s, 1e-9)
    table = Table(title="tally send", title_justify="left")
    for name in ("accepted", "duplicate", "rejected", "elapsed", "events/s"):
        table.add_column(name, justify="right")
    table.add_row(
        f"{summary.accepted:,}",
        f"{summary.duplicate:,}",
        f"{summary.rejected:,}",
        f"{summary.elapsed_s:.2f} s",
        f"{summary.events / elapsed:,.0f}",
    )
    console.print(table)
    if summary.retries:
        console.print(f"reconnected {summary.retries} times; unacked batches were resent", markup=False)
    if summary.rejected:
        shown = summary.errors[:REJECTS_SHOWN]
        console.print(f"rejected events (first {len(shown)} of {summary.rejected:,}):", markup=False)
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
def send(file: str, target: str, api_key: str | None, fmt: str, batch_size: int, connect_timeout: float) -> None:
    """Send usage events from FILE (JSON lines or CSV; - reads stdin) to a Tally server.

    \b
    JSON lines: one object per line. value is a decimal STRING or an integer
    (JSON floats are refused: they are not exact); timestamp is RFC 3339 or
    integer unix microseconds; properties is optional, and so is value on
    count meters (each event counts 1):
      {"event_id":"r1","customer":"c42","meter":"tokens","timestamp":"2025-01-31T12:00:00Z","value":"12.5"}
      {"event_id":"r2","customer":"c42","meter":"calls","timestamp":1738324800000000,"properties":{"k":"v"}}

    \b
    CSV: a header naming event_id,customer,meter,timestamp[,value]; every
    other column becomes a property (an empty cell leaves it out):
      event_id,customer,meter,timestamp,value,region
      req-1,cus_42,tokens,2025-01-31T12:00:00Z,12.5,eu

    \b
    Safe to rerun: each event id is stored once, so events already sent come
    back as duplicates. Exit status 0 when nothing was rejected, 1 otherwise
    (rejected events are listed with their line numbers).
    """
    if not api_key:
        raise click.ClickException(
            "no API key: pass --api-key KEY or set TALLY_API_KEY (create one with `tally apikey create TENANT`)"
        )
    stream, size = _open(file)
    reader = EventReader(stream, _detect_format(file, fmt))
    out = Console()
    err_console = Console(stderr=True)
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
            f"{reader.error}; the {sent} events before it were sent (summary above) — "
            "fix the line and run again (resent events count as duplicates)"
        )
    if summary.rejected:
        raise click.exceptions.Exit(1)
