"""Run every benchmark, each in its own process, and print one table.

Each benchmark runs as `python -m benchmarks.NAME --json` in a fresh interpreter
so that one benchmark's warm caches, threads or open databases cannot colour
the next one's figures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from benchmarks import BENCHMARKS
from benchmarks.harness import log, print_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON object {benchmark: figures}")
    parser.add_argument("--quick", action="store_true", help="pass --quick to every benchmark")
    parser.add_argument("names", nargs="*", default=list(BENCHMARKS), help="benchmarks to run (default: all)")
    args = parser.parse_args(argv)
    results: dict[str, dict[str, float]] = {}
    failed: list[str] = []
    for name in args.names:
        if name not in BENCHMARKS:
            parser.error(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}")
        log(f"== benchmarks.{name}")
        cmd = [sys.executable, "-m", f"benchmarks.{name}", "--json", *(["--quick"] if args.quick else [])]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
        if proc.returncode != 0:
            failed.append(name)
            log(f"benchmarks.{name} failed with exit code {proc.returncode}")
            continue
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    if args.json:
        print(json.dumps(results, sort_keys=True))
    else:
        print_table([(b, k, v) for b, figs in results.items() for k, v in figs.items()])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
