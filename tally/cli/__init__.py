"""The `tally` command line.

Every failure prints one line, `Error: <what went wrong and what to do>`, and exits with status 1 (2 for a
usage mistake); a traceback is only shown with TALLY_DEBUG=1. Output into a closed pipe (`| head -1`) ends
quietly with status 141.

This module builds the `main` group and registers every command by name: the command modules, one per noun
(`tally/cli/<noun>.py`), are imported only when their command runs or shows its help, so `tally --help` and a
read command start fast. They share the helpers of `tally.cli._common` and never import this package back.
"""

from __future__ import annotations

import importlib
from typing import Any, NamedTuple

import click

from tally import __version__
from tally.cli._common import CliSettings, TallyGroup

#: The sections of `tally --help`, in order: what needs a running server is kept apart from what opens the
#: database directly.
SETUP = "Set up and run"
SERVER = "Need a running server (`tally serve`)"
DATABASE = "Work on the database directly (no server needed)"
OFFLINE = "Need neither a server nor a database"
SECTIONS = (SETUP, SERVER, DATABASE, OFFLINE)


class Registered(NamedTuple):
    """A command as `tally --help` lists it without importing it."""

    target: str  # "tally.cli.<module>:<attribute>", the click command
    summary: str  # its one line in `tally --help`
    section: str  # one of SECTIONS


# HOW TO ADD A COMMAND: add one line below, in the section where it belongs:
#     "name": Registered("tally.cli.<module>:<attribute>", "One-line summary for `tally --help`.", DATABASE),
# The module is imported only when the command runs or shows its help, so the summary is kept here; import
# domain packages (sqlalchemy, numpy, grpc, rich, pydantic, ...) inside the command functions, never at the
# top of the module. tests/tally/test_cli_frame.py loads every entry and checks its name and help texts.
COMMANDS: dict[str, Registered] = {
    # set up and run
    "demo": Registered("tally.cli.demo:demo", "Bill a month of a SaaS business end to end (in ./tally-demo).", SETUP),
    "migrate": Registered(
        "tally.cli.server:migrate", "Create the database or upgrade its schema (safe to repeat).", SETUP
    ),
    "serve": Registered("tally.cli.server:serve", "Run the gRPC server (ingest and billing API) until SIGTERM.", SETUP),
    # through a running server
    "send": Registered("tally.cli.send:send", "Send usage events from a JSON-lines or CSV file to a server.", SERVER),
    # metering: tenants, keys, meters, usage
    "tenant": Registered("tally.cli.tenant:tenant", "Create and list tenants.", DATABASE),
    "apikey": Registered("tally.cli.apikey:apikey", "Create, list and revoke a tenant's API keys.", DATABASE),
    "meter": Registered("tally.cli.meter:meter", "Create, list, show and rebuild meters.", DATABASE),
    "usage": Registered(
        "tally.cli.usage:usage_command", "Exact usage of a meter by a customer over a range.", DATABASE
    ),
    # billing: catalog, subscriptions, invoices
    "customer": Registered("tally.cli.customer:customer", "Create, update, list and show customers.", DATABASE),
    "plan": Registered("tally.cli.plan:plan", "Create, version, publish and inspect plans (JSON files).", DATABASE),
    "subscription": Registered(
        "tally.cli.subscription:subscription", "Subscribe customers to plans; change, pause, cancel.", DATABASE
    ),
    "invoice": Registered(
        "tally.cli.invoice:invoice", "Run billing cycles; list, show, finalize, pay, void invoices.", DATABASE
    ),
    "profile": Registered(
        "tally.cli.profile:profile", "Show and set the seller named on a tenant's invoices.", DATABASE
    ),
    "coupon": Registered("tally.cli.coupon:coupon", "Coupons and discounts: create, list, apply, remove.", DATABASE),
    "dispute": Registered(
        "tally.cli.dispute:dispute", "Disputed invoice lines: the queue; credit or reject each.", DATABASE
    ),
    "portal": Registered("tally.cli.portal:portal", "Signed links to the customer portal; revoke them.", DATABASE),
    # the ledger: wallets, grants, transfers, points
    "wallet": Registered("tally.cli.wallet:wallet", "A customer's wallets: list, show, top up.", DATABASE),
    "grant": Registered("tally.cli.grant:grant", "Credit grants: create, list, expire.", DATABASE),
    "transfer": Registered(
        "tally.cli.transfer:transfer", "Transfers between accounts: create, pending, post, void.", DATABASE
    ),
    "convert": Registered(
        "tally.cli.convert:convert", "Convert a customer's credit into another unit at its rate.", DATABASE
    ),
    "points": Registered(
        "tally.cli.points:points", "Points units, their rates, and crediting points earned from usage.", DATABASE
    ),
    "balance": Registered(
        "tally.cli.balance:balance", "Balance of an account or a customer, now or as of an instant.", DATABASE
    ),
    "journal": Registered(
        "tally.cli.journal:journal", "Export the ledger's posted movements for accounting.", DATABASE
    ),
    # insight and events out
    "portfolio": Registered(
        "tally.cli.portfolio:portfolio_command", "Customers per lifecycle stage, with recent revenue.", DATABASE
    ),
    "events": Registered(
        "tally.cli.events:events", "The tenant's domain events: list past ones, watch new ones.", DATABASE
    ),
    "webhook": Registered(
        "tally.cli.webhook:webhook", "Webhook endpoints: create, list, disable, deliveries, replay.", DATABASE
    ),
    "alert": Registered("tally.cli.alert:alert", "Usage, spend, balance and leakage threshold alerts.", DATABASE),
    "simulate": Registered(
        "tally.cli.simulate:simulate", "Re-price a past window's usage under another plan.", DATABASE
    ),
    "leakage": Registered(
        "tally.cli.leakage:leakage", "Usage no invoice will bill, by cause (revenue leakage).", DATABASE
    ),
    # pure computation
    "rate": Registered("tally.cli.rate:rate", "Quote one price for one quantity, exactly (no database).", OFFLINE),
}


def load(entry: Registered) -> click.Command:
    """Import the module of a registered command and return the command."""
    module, _, attribute = entry.target.partition(":")
    command = getattr(importlib.import_module(module), attribute)
    if not isinstance(command, click.Command):
        raise TypeError(f"{entry.target} is not a click command")
    return command


class LazyGroup(TallyGroup):
    """The root group: commands come from `COMMANDS` and are imported on first use; `tally --help` lists
    them by section from the registry alone."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*COMMANDS, *(name for name in self.commands if name not in COMMANDS)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            self.commands[cmd_name] = load(COMMANDS[cmd_name])
        return self.commands.get(cmd_name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            import difflib

            close = difflib.get_close_matches(name, self.list_commands(ctx), n=1)
            ctx.fail(f"no command {name!r}; " + (f"did you mean `{close[0]}`?" if close else "see `tally --help`"))
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows: dict[str, list[tuple[str, str]]] = {section: [] for section in SECTIONS}
        for name, entry in COMMANDS.items():
            rows.setdefault(entry.section, []).append((name, entry.summary))
        for name, command in self.commands.items():
            if name not in COMMANDS:
                rows.setdefault("Other commands", []).append((name, command.get_short_help_str()))
        width = max((len(name) for items in rows.values() for name, _ in items), default=0)
        for section, items in rows.items():
            if items:  # names padded alike, so that every section's summaries start in the same column
                with formatter.section(section):
                    formatter.write_dl([(name.ljust(width), summary) for name, summary in items], col_spacing=2)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="tally", message="%(prog)s %(version)s")
@click.option(
    "--database-url",
    envvar="TALLY_DATABASE_URL",
    default="sqlite:///tally.db",
    show_default=True,
    metavar="URL",
    help="SQLite file or postgresql+psycopg://USER@HOST:PORT/DB (or env TALLY_DATABASE_URL).",
)
@click.pass_context
def main(ctx: click.Context, database_url: str) -> None:
    """Tally: usage metering and billing with exact money.

    \b
    See it all work (30-40 s, writes ./tally-demo):
      tally demo

    \b
    Start here (embedded SQLite, no server needed):
      tally tenant create acme          # a tenant (creates ./tally.db)
      tally apikey create acme          # prints a key, shown once
      tally meter create acme api_calls --aggregation count
      tally serve                       # the gRPC API on 127.0.0.1:50051
      tally send events.jsonl --api-key KEY
      tally usage acme cus_42 api_calls --window day \\
          --from 2026-11-01T00:00Z --to 2026-12-01T00:00Z

    Settings come from TALLY_* environment variables; see `tally serve --help`.
    """
    ctx.obj = CliSettings(database_url)


def run(args: Any = None) -> None:
    main(args=args, prog_name="tally")


__all__ = ["COMMANDS", "SECTIONS", "Registered", "load", "main", "run"]
