"""What every `tally` command shares: the group class that turns failures into one line, consoles, opening
the database (and a tenant or its ledger), tables, and reading and printing instants.

Command modules import from here and never from `tally.cli` (the package imports them to register
them). Imports that cost start-up time stay inside the functions that need them: `tally --help` loads
this module.
"""

from __future__ import annotations

import errno
import os
import re
import sys
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn

import click

if TYPE_CHECKING:
    from rich.console import Console
    from sqlalchemy import Engine

    from invoicing.ledger import Ledger
    from invoicing.subscriptions import Subscription
    from tally.settings import Settings


# --- consoles: created on first use (rich costs start-up time that `tally --help` should not pay) -------------

_consoles: dict[str, Console] = {}


def _console(name: str) -> Console:
    if name not in _consoles:
        from rich.console import Console

        class QuietPipeConsole(Console):
            """A reader that went away (`tally ... | head -1`) ends the command quietly: the group turns
            BrokenPipeError into exit status 141, like any tool killed by SIGPIPE (rich would exit 1)."""

            def on_broken_pipe(self) -> None:
                self.quiet = True
                raise BrokenPipeError(errno.EPIPE, "the reader of the output went away")

        _consoles[name] = QuietPipeConsole(stderr=name == "err_console")
    return _consoles[name]


def __getattr__(name: str) -> Any:
    """`console` (stdout) and `err_console` (stderr), made when first imported: import them inside the
    command function, so that the command's `--help` does not load rich."""
    if name in ("console", "err_console"):
        return _console(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --- settings: built on first use ------------------------------------------------------------------------------


class CliSettings:
    """What the group hands every command as `ctx.obj`: the database URL of --database-url (or
    TALLY_DATABASE_URL), and every other setting from `tally.settings.Settings`, built the first time one is
    read. pydantic-settings costs a tenth of a second at start-up, which a command that only opens the
    database should not pay; `settings_of(ctx)` gives the full Settings, with the URL applied."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from tally.settings import Settings

            self._settings = Settings(database_url=self.database_url)
        return self._settings

    @property
    def sqlite_synchronous(self) -> str | None:
        """TALLY_SQLITE_SYNCHRONOUS when set (checked by Settings), else None: the engine's own default."""
        if not any(k.upper() == "TALLY_SQLITE_SYNCHRONOUS" for k in os.environ):
            return None
        return self.settings.sqlite_synchronous

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.settings, name)


def settings_of(ctx: click.Context) -> Settings:
    """The full settings of this run (TALLY_* environment variables, the global --database-url applied)."""
    obj = ctx.find_object(CliSettings)
    if obj is None:  # a command invoked on its own (tests): the environment alone
        from tally.settings import Settings

        return Settings()
    return obj.settings


# --- failures: one line, exit status 1 -------------------------------------------------------------------------


def fail(message: str) -> NoReturn:
    raise click.ClickException(message)


def one_line_errors() -> tuple[type[Exception], ...]:
    """What a command may raise that the group prints as one line (`one_line_message`) instead of a
    traceback. A library's errors are only looked up when it was loaded: an error can only come from there."""
    from metering.errors import TallyError

    kinds: list[type[Exception]] = [TallyError, OSError, ValueError]  # pydantic's ValidationError is a ValueError
    if "sqlalchemy" in sys.modules:
        from sqlalchemy.exc import SQLAlchemyError

        kinds.append(SQLAlchemyError)
    return tuple(kinds)


def one_line_message(exc: BaseException) -> str:
    """The one line printed after `Error: ` for a failure in `one_line_errors()` (the group's only wording)."""
    if "pydantic_core" in sys.modules:
        from pydantic import ValidationError

        if isinstance(exc, ValidationError):
            return "invalid input: " + validation_problems(exc)
    if "sqlalchemy" in sys.modules:
        from sqlalchemy.exc import OperationalError, SQLAlchemyError

        if isinstance(exc, OperationalError):
            first = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            return f"database unavailable ({first}); check --database-url / TALLY_DATABASE_URL"
        if isinstance(exc, SQLAlchemyError):
            return f"database error: {str(exc).splitlines()[0]}; run `tally migrate` if the schema is missing"
    if isinstance(exc, OSError) and exc.strerror:  # not "[Errno 2] No such file or directory: 'x'"
        reason = exc.strerror[:1].lower() + exc.strerror[1:]
        return f"{exc.filename}: {reason}" if exc.filename else reason
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def validation_problems(exc: Any) -> str:
    """A pydantic ValidationError in the CLI's words: `field.path: what is wrong` for each problem, joined by
    `; `. Never pydantic's own phrasing ("Value error, ...", "String should match pattern '^[a-z]...$'")."""
    from rating.wording import problems_text

    return problems_text(exc.errors(include_url=False))


class TallyGroup(click.Group):
    """The `tally` group: a failure in `one_line_errors()` becomes one line and exit status 1 (a traceback only
    with TALLY_DEBUG=1); click's own exceptions pass through as they are (`fail`: 1, a usage mistake: 2). A
    reader that went away (`| head -1`) ends the command quietly with status 141, as SIGPIPE would."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.NoSuchOption as exc:
            if exc.option_name and NEGATIVE_NUMBER.fullmatch(exc.option_name):
                raise negative_argument_error(exc.option_name, exc.ctx) from None
            raise
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except BrokenPipeError:
            _silence_stdout()
            raise click.exceptions.Exit(141) from None
        except Exception as exc:
            if os.environ.get("TALLY_DEBUG") or not isinstance(exc, one_line_errors()):
                raise
            raise cli_error(exc) from exc


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush has nowhere to fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # not a real file (a test's captured output)
        pass


#: A token click would take for an option but a user means as a number: `-5`, `-0.25`, `-.5`.
NEGATIVE_NUMBER = re.compile(r"-(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


def negative_argument_error(token: str, ctx: click.Context | None) -> click.UsageError:
    return click.UsageError(
        f"{token} is a negative number, which this command does not take as an argument (it would read as an "
        "option): amounts and ids here are positive, and the command itself says which way money moves",
        ctx=ctx,
    )


class SignedArguments(click.Command):
    """A command whose arguments may be negative numbers (`tally alert create ... balance -10`), which click
    would read as unknown options. Options (with their values) are moved before a `--`, the arguments after
    it, so click parses and converts everything as usual; a mistyped option is still an error."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not any(NEGATIVE_NUMBER.fullmatch(a) for a in args):
            return super().parse_args(ctx, args)
        values = {
            opt: p.nargs
            for p in self.get_params(ctx)
            if isinstance(p, click.Option) and not p.is_flag and not p.count
            for opt in (*p.opts, *p.secondary_opts)
        }
        options: list[str] = []
        arguments: list[str] = []
        i = 0
        while i < len(args):
            token = args[i]
            if token == "--":
                arguments.extend(args[i + 1 :])
                break
            if token.startswith("-") and len(token) > 1 and not NEGATIVE_NUMBER.fullmatch(token):
                taken = 0 if "=" in token else values.get(token, 0)
                options.extend(args[i : i + 1 + taken])
                i += 1 + taken
                continue
            arguments.append(token)
            i += 1
        return super().parse_args(ctx, [*options, "--", *arguments])


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


def open_engine(ctx: click.Context, create: bool = False) -> Engine:
    """The engine of the global --database-url.

    Only the commands that set a database up (`tenant create`, `migrate`; `serve` and `demo` open their own)
    pass `create`: a missing SQLite file is created and the schema upgraded to the newest revision. Every
    other command opens the database as it is and writes nothing unasked: a missing file is an error naming
    the path it looked for (SQLite would silently create an empty one), an older schema asks for `tally
    migrate`.
    """
    from tally.db import make_engine, schema_problem, sqlite_file, upgrade

    obj = ctx.find_object(CliSettings)
    url = obj.database_url if obj is not None else settings_of(ctx).database_url
    synchronous = obj.sqlite_synchronous if obj is not None else None
    path = sqlite_file(url)
    if not create and path is not None and not path.exists():
        fail(
            f"no database at {path}: create one with `tally tenant create NAME` (or `tally migrate`), or point "
            "--database-url / TALLY_DATABASE_URL at an existing one"
        )
    engine = make_engine(url) if synchronous is None else make_engine(url, synchronous)
    if create:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        upgrade(engine)
    elif problem := schema_problem(engine):
        engine.dispose()
        fail(problem)
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
    import uuid

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


#: A value that is a number or an amount, right-aligned and never wrapped: `1,234`, `-12.50`, `12.50 USD`, `4 %`.
_NUMBER_CELL = re.compile(r"[-+]?[0-9][0-9,]*(?:\.[0-9]+)?(?: ?[A-Za-z%]{1,12})?")
#: The narrowest a folding column gets (unless its values are narrower).
_FOLD_MIN = 10
#: Values up to this long (ids, codes, instants, statuses) fold only after the columns of longer text.
_SHORT_CELL = 20


def print_table(
    title: str, columns: list[str], rows: list[list[str]], keep: tuple[str, ...] = (), *, file: Any = None
) -> None:
    """Every table of the CLI, readable at 80 columns, where no value is ever cut short (an id, an instant or
    an amount shown half is worse than a taller row).

    When the table is wider than the terminal: a header longer than its values breaks between words; then
    columns fold onto more lines, down to 10 characters, first those of long text (the widest first), then
    those of short values (ids, instants, statuses), numbers and amounts (right-aligned) and the columns in
    `keep` last. A table that still does not fit is printed as records instead: one section per row, a
    line per field, so that no id is ever broken in the middle to make it fit."""
    from rich.table import Table

    out = file or _console("console")
    cells = [[row[i] for row in rows if i < len(row) and row[i]] for i in range(len(columns))]
    longest = [max((len(line) for c in col for line in c.splitlines()), default=0) for col in cells]
    numeric = [bool(col) and all(_NUMBER_CELL.fullmatch(c) for c in col) for col in cells]
    headers = [_wrap_header(name, longest[i]) for i, name in enumerate(columns)]
    natural = [max([longest[i], *(len(line) for line in headers[i].splitlines())]) for i in range(len(columns))]
    excess = sum(w + 3 for w in natural) + 1 - out.width  # each column: its padding and one border
    fold: set[int] = set()

    def order(i: int) -> tuple[int, int]:
        last = numeric[i] or columns[i] in keep
        return (2 if last else 0 if natural[i] > _SHORT_CELL else 1), -natural[i]

    for i in sorted(range(len(columns)), key=order):
        if excess <= 0:
            break
        if natural[i] > _FOLD_MIN:
            fold.add(i)
            excess -= natural[i] - _FOLD_MIN
    if excess > 0:
        _print_records(out, title, columns, rows)
        return
    table = Table(title=title)
    for i, header in enumerate(headers):
        table.add_column(
            header,
            justify="right" if numeric[i] else "left",
            overflow="fold",
            no_wrap=i not in fold,
            min_width=_FOLD_MIN if i in fold else None,
        )
    for row in rows:
        table.add_row(*row)
    out.print(table)


def _print_records(out: Console, title: str, columns: list[str], rows: list[list[str]]) -> None:
    """A table too wide for the terminal, as records: a section per row, a line per field."""
    from rich.table import Table

    table = Table(title=title, show_header=False)
    table.add_column("field", no_wrap=True, style="bold")
    table.add_column("value", overflow="fold")
    for n, row in enumerate(rows):
        if n:
            table.add_section()
        for name, value in zip(columns, row, strict=False):
            table.add_row(name, value)
    out.print(table)


def _wrap_header(name: str, room: int) -> str:
    """A header longer than its column's values, broken between words (`scheduled change` over a column of
    dates keeps the dates on one line)."""
    if len(name) <= room or " " not in name:
        return name
    lines: list[str] = []
    for word in name.split(" "):
        if lines and len(lines[-1]) + 1 + len(word) <= max(room, len(word)):
            lines[-1] += " " + word
        else:
            lines.append(word)
    return "\n".join(lines)


#: The same table; kept as its own name for the commands that call it.
print_grid = print_table


# --- numbers: one way everywhere -------------------------------------------------------------------------------


def count(n: int) -> str:
    """A count of things: `12,345` (thousands separated)."""
    return f"{n:,}"


def money(amount: Any, currency: str) -> str:
    """An amount of money or points, exact, with its unit: `1234.50 USD` (no separators: it reads back as
    input). `amount` is a Decimal or an int of whole units; a currency's amount shows at least its minor
    unit's places (`0.00 USD`, never `0 USD`), never fewer digits than it has (nothing is rounded)."""
    from rating.unit import CURRENCY_MINOR_UNITS

    value = Decimal(amount)
    places = CURRENCY_MINOR_UNITS.get(currency)
    exponent = value.as_tuple().exponent
    if places is not None and isinstance(exponent, int) and -exponent < places:
        value = value.quantize(Decimal(1).scaleb(-places))  # only adds zeros: exact
    return f"{value:f} {currency}"


def money_minor(minor: int, currency: str) -> str:
    """An amount held in the currency's minor units (cents), as `money` prints it: 1234 USD cents → `12.34 USD`."""
    from rating.unit import currency as unit

    return money(Decimal(minor).scaleb(-unit(currency).scale), currency)


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
