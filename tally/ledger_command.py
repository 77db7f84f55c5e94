"""CLI commands for the ledger (registered by tally.cli)."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
