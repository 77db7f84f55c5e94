"""What every `tally` command shares: the group class that turns failures into one line, consoles, opening
the database (and a tenant or its ledger), tables, and reading and printing instants.

Command modules import from here and never from `tally.cli` (the package imports them to register
them). Imports that cost start-up time stay inside the functions that need them: `tally --help` loads
this module.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn

import click
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from metering.errors import TallyError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from invoicing.ledger import Ledger
    from invoicing.subscriptions import Subscription
    from tally.settings import Settings

console = Console()
err_console = Console(stderr=True)


# --- failures: one line, exit status 1 -------------------------------------------------------------------------


def fail(message: str) -> NoReturn:
    raise click.ClickException(message)


#: What a command may raise that the group prints as one line (`one_line_message`) instead of a traceback.
ONE_LINE_ERRORS: tuple[type[Exception], ...] = (TallyError, ValidationError, SQLAlchemyError, OSError, ValueError)


def one_line_message(exc: BaseException) -> str:
    """The one line printed after `error: ` for a failure in ONE_LINE_ERRORS (the group's only wording)."""
    if isinstance(exc, ValidationError):
        parts = [f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg']}" for e in exc.errors()]
        return "invalid input: " + "; ".join(parts)
    if isinstance(exc, OperationalError):
        first = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        return f"database unavailable ({first}); check --database-url / TALLY_DATABASE_URL"
    if isinstance(exc, SQLAlchemyError):
        return f"database error: {str(exc).splitlines()[0]}; run `tally migrate` if the schema is missing"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


class TallyGroup(click.Group):
    """The `tally` group: a failure in ONE_LINE_ERRORS becomes one line and exit status 1 (a traceback only
    with TALLY_DEBUG=1); click's own exceptions pass through as they are (`fail`: 1, a usage mistake: 2)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except ONE_LINE_ERRORS as exc:
            if os.environ.get("TALLY_DEBUG"):
                raise
            raise cli_error(exc) from exc


def cli_error(exc: BaseException) -> click.ClickException:
    """A domain error as the CLI says it: the message and exit code from `tally.errors.STATUS`, the one
    table every edge uses (imported here, on failure, so that start-up never pays for gRPC). What is not
    a domain error (validation, the database, files) keeps the CLI's own wording."""
    from tally.errors import STATUS, outcome

    code, message = outcome(exc)
    if code == "internal":
        message, exit_code = one_line_message(exc), 1
    else:
        message, exit_code = (message.splitlines() or [type(exc).__name__])[0], STATUS[code].exit
    error = click.ClickException(message)
    if exit_code != error.exit_code:  # a class variable in click's stubs; per instance it is what click reads
        setattr(error, "exit_code", exit_code)  # noqa: B010
    return error


# --- the database ----------------------------------------------------------------------------------------------


def open_engine(ctx: click.Context, migrate: bool = True) -> Engine:
    """The engine of the global --database-url, its schema upgraded to the newest revision first."""
    from tally.db import make_engine, upgrade

    settings: Settings = ctx.obj
    engine = make_engine(settings.database_url, settings.sqlite_synchronous)
    if migrate:
        upgrade(engine)
    return engine


def open_tenant(ctx: click.Context, name: str) -> tuple[Engine, int]:
    """The engine and the id of the tenant called NAME (a missing tenant is a one-line error)."""
    from metering.tenant import get_tenant

    engine = open_engine(ctx)
    return engine, get_tenant(engine, name).id


def open_ledger(ctx: click.Context, tenant_name: str) -> Ledger:
    from invoicing.ledger import Ledger

    engine, tenant_id = open_tenant(ctx, tenant_name)
    return Ledger(engine, tenant_id)


def new_id(given: str | None) -> str:
    """An idempotency id: the one given, else a random one."""
    return given or uuid.uuid4().hex


def event_types(values: tuple[str, ...]) -> list[str]:
    """The repeated --type of the events and webhook commands, checked: a bad one is a usage error."""
    from invoicing.events import check_patterns
    from metering.errors import InvalidArgument

    try:
        return check_patterns(values, "--type")
    except InvalidArgument as exc:
        raise click.UsageError(str(exc)) from None


# --- tables ----------------------------------------------------------------------------------------------------


def print_table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    """A table whose long values are cut with an ellipsis when the terminal is narrow."""
    table = Table(title=title, show_lines=False)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    console.print(table)


def print_grid(title: str, columns: list[str], rows: list[list[str]], keep: tuple[str, ...] = ()) -> None:
    """Like print_table, but long values fold onto more lines instead of being cut with an ellipsis (an id or
    an instant shown half is worse than a taller row); columns in `keep` never wrap (short words)."""
    table = Table(title=title)
    for col in columns:
        table.add_column(col, overflow="fold", no_wrap=col in keep)
    for row in rows:
        table.add_row(*row)
    console.print(table)


def filter_text(f: dict[str, list[str]] | None) -> str:
    """A meter filter or a group as `key=v1,v2 key2=v3`."""
    return " ".join(f"{k}={','.join(v)}" for k, v in (f or {}).items())


def subscription_table(engine: Engine, tenant_id: int, subs: list[Subscription]) -> None:
    """Subscriptions with their plan versions' labels (`tally subscription list/show`, `tally customer show`)."""
    from invoicing.catalog import get_plan_version_by_id

    labels: dict[int, str] = {}

    def label(version_id: int | None) -> str:
        if version_id is None:
            return ""
        if version_id not in labels:
            labels[version_id] = get_plan_version_by_id(engine, tenant_id, version_id).label
        return labels[version_id]

    rows = [
        [str(s.id), s.customer_external_id, label(s.plan_version_id), s.state.value, utc_minute(s.started_at),
         utc_minute(s.ends_at), f"{label(s.pending_plan_version_id)} {utc_minute(s.pending_change_at)}".strip()]
        for s in subs
    ]  # fmt: skip
    print_grid("subscriptions", ["id", "customer", "plan", "state", "started", "ends", "scheduled change"], rows)


# --- instants --------------------------------------------------------------------------------------------------


class InstantWording(NamedTuple):
    """How a bad instant is explained, after `FLAG 'TEXT' `."""

    not_iso: str
    no_zone: str


#: The metering and ledger commands' wording (`tally usage`, `tally grant create`, ...).
ISO_WORDING = InstantWording("is not ISO 8601; write e.g. 2026-11-01T00:00:00Z", "has no offset; add Z or +01:00")
#: The billing commands' wording (`--at`, `--as-of`, `--from`/`--to` of customers, plans, subscriptions, invoices,
#: journal, alerts). Both are kept word for word: scripts and tests match them.
BILLING_WORDING = InstantWording(
    "is not an ISO 8601 instant; e.g. 2026-02-01T00:00Z", "has no time zone; add Z or an offset, e.g. 2026-02-01T00:00Z"
)


def parse_instant(
    text: str,
    flag: str,
    *,
    wording: InstantWording = ISO_WORDING,
    error: type[click.ClickException] = click.ClickException,
) -> datetime:
    """The ISO 8601 instant given to FLAG; it must carry its offset (an instant, not a wall-clock time).
    A bad one raises `error` (one line, exit status 1; click.UsageError for status 2)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise error(f"{flag} {text!r} {wording.not_iso}") from None
    if moment.tzinfo is None:
        raise error(f"{flag} {text!r} {wording.no_zone}")
    return moment


def instant_or_now(text: str | None, flag: str = "--at") -> datetime:
    """The billing commands' instant: the current time when not given. The clock is read here, at the edge;
    the domain functions always receive instants explicitly."""
    if text is None:
        return datetime.now(UTC)
    return parse_instant(text, flag, wording=BILLING_WORDING)


def optional_instant(text: str | None, flag: str) -> datetime | None:
    """The ledger commands' optional instant: None when not given, a bad one a usage error (exit status 2)."""
    return None if text is None else parse_instant(text, flag, error=click.UsageError)


def utc_minute(value: datetime | None) -> str:
    """`2026-02-01 00:00Z` (empty for None)."""
    return "" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%MZ")


def utc_second(value: datetime | None) -> str:
    """`2026-02-01 00:00:00Z` (empty for None)."""
    return "" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
