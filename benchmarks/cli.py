"""CLI start-up: `tally --help` and a read command (`tally tenant list` on a small SQLite database), each the
median of `--runs` fresh processes, against the ceiling of `python -c pass` measured in the same run.

A command line is started anew every time it is typed, so what it costs is the interpreter plus what the
command imports: the registry of `tally.cli` lists every command without importing it, and command modules
import their domain packages inside the command functions. The three commands are run interleaved (pass,
help, read, pass, ...), so drift on a shared machine touches them alike; `*_over_python_pass` are the ratios.
`sqlalchemy_import_s` (`python -c "import sqlalchemy"`) is the floor of any command that opens a database.
The target is `help_s` and `read_command_s` under 0.3 s.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import Figures, log, main_for, median


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=int, default=21, help="processes per command; the median is reported [21]")


def _seconds(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def run(args: argparse.Namespace) -> Figures:
    runs = 5 if args.quick else args.runs
    tally = [sys.executable, "-m", "tally"]
    with tempfile.TemporaryDirectory(prefix="tally-bench-cli-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'tally.db'}"
        for name in ("acme", "globex", "initech"):
            subprocess.run([*tally, "--database-url", url, "tenant", "create", name], check=True, capture_output=True)
        commands = {
            "python_pass_s": [sys.executable, "-c", "pass"],
            # The floor of any command that opens a database: the engine library alone.
            "sqlalchemy_import_s": [sys.executable, "-c", "import sqlalchemy"],
            "help_s": [*tally, "--help"],
            "read_command_s": [*tally, "--database-url", url, "tenant", "list"],
        }
        for cmd in commands.values():  # warm the file cache and the bytecode once, unmeasured
            _seconds(cmd)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(runs):
            for name, cmd in commands.items():
                times[name].append(_seconds(cmd))
    figures: Figures = {name: median(values) for name, values in times.items()}
    figures["help_over_python_pass"] = figures["help_s"] / figures["python_pass_s"]
    figures["read_command_over_python_pass"] = figures["read_command_s"] / figures["python_pass_s"]
    figures["read_command_over_sqlalchemy_import"] = figures["read_command_s"] / figures["sqlalchemy_import_s"]
    log(
        f"python -c pass {figures['python_pass_s']:.3f} s, import sqlalchemy {figures['sqlalchemy_import_s']:.3f} s, "
        f"tally --help {figures['help_s']:.3f} s, tally tenant list {figures['read_command_s']:.3f} s "
        f"(medians of {runs})"
    )
    return figures


if __name__ == "__main__":
    raise SystemExit(main_for(__name__, __doc__ or "", run, add_arguments))
