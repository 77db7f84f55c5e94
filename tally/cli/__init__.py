"""The `tally` command line.

Every failure prints one line, `error: <what went wrong and what to do>`, and
exits with status 1 (2 for a usage mistake); a traceback is only shown with
TALLY_DEBUG=1.

This module builds the `main` group and registers every command; it is the only module that imports
the command modules, one per noun (`tally/cli/<noun>.py`), which share the helpers of
`tally.cli._common` and never import this package back.
"""

from __future__ import annotations

import click

from tally.cli import (
    alert,
    apikey,
    balance,
    convert,
    coupon,
    customer,
    demo,
    events,
    grant,
    invoice,
    journal,
    meter,
    plan,
    portfolio,
    profile,
    rate,
    send,
    server,
    subscription,
    tenant,
    transfer,
    usage,
    wallet,
    webhook,
)
from tally.cli._common import TallyGroup
from tally.settings import Settings


@click.group(cls=TallyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--database-url",
    envvar="TALLY_DATABASE_URL",
    default=None,
    help="SQLite file (default sqlite:///tally.db) or postgresql+psycopg://USER@HOST:PORT/DB.",
)
@click.pass_context
def main(ctx: click.Context, database_url: str | None) -> None:
    """Tally: usage metering and billing with exact money.

    \b
    See it all work (30-40 s, writes ./tally-demo):
      tally demo

    \b
    Start here (embedded SQLite, no server needed):
      tally tenant create acme          # a tenant
      tally apikey create acme          # prints a key, shown once
      tally meter create acme api_calls --aggregation count
      tally serve                       # gRPC ingest + billing API on 127.0.0.1:50051
      tally send events.jsonl --api-key KEY
      tally usage acme cus_42 api_calls --from 2026-11-01T00:00Z --to 2026-12-01T00:00Z --window day

    Settings come from TALLY_* environment variables; see `tally serve --help`.
    """
    settings = Settings() if database_url is None else Settings(database_url=database_url)
    ctx.obj = settings


COMMANDS: tuple[click.Command, ...] = (
    # metering: tenants, keys, meters, usage; the server
    tenant.tenant,
    apikey.apikey,
    meter.meter,
    usage.usage_command,
    server.serve,
    server.migrate,
    send.send,
    # rating
    rate.rate,
    # billing: catalog, subscriptions, invoices, the ledger, insight, events out
    customer.customer,
    plan.plan,
    subscription.subscription,
    invoice.invoice,
    profile.profile,
    journal.journal,
    wallet.wallet,
    grant.grant,
    transfer.transfer,
    convert.convert,
    balance.balance,
    portfolio.portfolio_command,
    events.events,
    webhook.webhook,
    alert.alert,
    coupon.coupon,
    demo.demo,
)
for _command in COMMANDS:
    main.add_command(_command)


def run() -> None:
    main(prog_name="tally")


__all__ = ["COMMANDS", "main", "run"]
