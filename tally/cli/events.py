"""`tally events`: the tenant's domain events (the outbox): list past ones, watch new ones.

It reads the database directly, like the other tenant commands, so it needs no server.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import click

from tally.cli._common import event_types, open_tenant, print_grid, utc_second

if TYPE_CHECKING:
    from invoicing.events import DomainEvent


def _line(e: DomainEvent) -> str:
    data = json.dumps(e.data, sort_keys=True, separators=(",", ":"))
    return f"{e.sequence} {utc_second(e.occurred_at)} {e.type} {e.customer or '-'} {data}"


@click.group("events")
def events() -> None:
    """The tenant's domain events (the outbox): list past ones, watch new ones."""


@events.command("list")
@click.argument("tenant_name", metavar="TENANT")
@click.option("--after", type=click.IntRange(min=0), default=0, show_default=True, help="Events after this sequence.")
@click.option("--type", "types", multiple=True, help="Only this type or prefix, e.g. invoice. (repeat).")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True, help="Events shown at most.")
@click.pass_context
def events_list(ctx: click.Context, tenant_name: str, after: int, types: tuple[str, ...], limit: int) -> None:
    """Events of TENANT in order, from a cursor.

    \b
    Example:
      tally events list acme --after 120 --type invoice.
    """
    from invoicing.events import read_events

    patterns = event_types(types)
    engine, tenant_id = open_tenant(ctx, tenant_name)
    found, last = read_events(engine, tenant_id, after, limit, patterns)
    rows = [
        [str(e.sequence), utc_second(e.occurred_at), e.type, e.customer, json.dumps(e.data, sort_keys=True)]
        for e in found
    ]
    columns = ["sequence", "occurred", "type", "customer", "data"]
    print_grid(f"{tenant_name} events after {after}", columns, rows, keep=("type",))
    click.echo(f"last sequence read: {last} (continue with --after {last})")


@events.command("watch")
@click.argument("tenant_name", metavar="TENANT")
@click.option("--after", type=click.IntRange(min=0), default=None, help="Start after this sequence [default: now].")
@click.option("--type", "types", multiple=True, help="Only this type or prefix, e.g. invoice. (repeat).")
@click.option("--poll", type=click.FloatRange(min=0.01), default=0.5, show_default=True, help="Seconds between reads.")
@click.option("--count", type=click.IntRange(min=1), default=None, help="Exit after this many events.")
@click.pass_context
def events_watch(
    ctx: click.Context, tenant_name: str, after: int | None, types: tuple[str, ...], poll: float, count: int | None
) -> None:
    """Print TENANT's events as they are committed, one line each, until Ctrl-C.

    Each line is `SEQUENCE OCCURRED TYPE CUSTOMER DATA`. Resume after an interruption with
    `--after` and the last sequence printed: nothing is skipped or repeated.

    \b
    Example:
      tally events watch acme --after 0 --type usage. --type wallet.
    """
    from invoicing.events import head, read_events

    patterns = event_types(types)
    engine, tenant_id = open_tenant(ctx, tenant_name)
    cursor = head(engine, tenant_id) if after is None else after
    seen = 0
    try:
        while True:
            found, last = read_events(engine, tenant_id, cursor, 500, patterns)
            for e in found:
                click.echo(_line(e))
                seen += 1
                if count is not None and seen >= count:
                    return
            if last == cursor:
                time.sleep(poll)
            cursor = last
    except KeyboardInterrupt:
        click.echo(f"stopped after sequence {cursor}; resume with --after {cursor}", err=True)
