"""`tally demo`: a month of a small SaaS business, billed end to end through the public API.

The demo itself (catalog, customers, usage, the in-process server, the report) is `tally.demo`.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.command("demo")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("tally-demo"),
    show_default=True,
    help="Where the demo's database, events and invoices go.",
)
@click.option(
    "--customers", type=click.IntRange(1, 100_000), default=300, show_default=True, help="How many customers to bill."
)
@click.option("--seed", type=int, default=7, show_default=True, help="Same seed, same customers and usage.")
@click.option("--force", is_flag=True, help="Replace an earlier demo in --dir.")
@click.option(
    "--serve",
    "keep_serving",
    is_flag=True,
    help="Afterwards keep serving the demo's database with the web console (printed URL) until Ctrl-C.",
)
@click.option(
    "--http-port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="With --serve: the port of the web console and the HTTP API (0 = any free port).",
)
def demo(directory: Path, customers: int, seed: int, force: bool, keep_serving: bool, http_port: int) -> None:
    """Bill a month of a small SaaS business end to end, through the gRPC API.

    \b
    Starts a server in-process on an embedded SQLite file in --dir (the global
    --database-url is not used), creates plans of every kind (graduated API
    calls and tokens, a flat monthly fee, points-priced images paid from a
    credits wallet, impressions per thousand, per-outcome fees with SLA
    credits), customers subscribed since the first day of last month, streams
    last month's usage, runs the invoice cycle, finalizes and exports every
    invoice, and prints what it billed and how fast. With --serve it then keeps
    serving that database and prints the web console's URL and keys.
    """
    from tally.cli._common import console
    from tally.demo import print_report, run_demo

    result = run_demo(directory, customers, seed, force=force, console=console)
    print_report(result, console, directory)
    if keep_serving:
        from tally.demo import serve_console

        serve_console(result, console, http_port)
    else:
        console.print(
            "\nsee it in the web console: run the demo with --serve (it prints the console's URL)", highlight=False
        )
