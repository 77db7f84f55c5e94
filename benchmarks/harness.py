"""The contract every benchmark module follows, so `python -m benchmarks` can run them all.

A benchmark module defines `add_arguments(parser)` (optional) and
`run(args) -> dict[str, float]`, and ends with `if __name__ == "__main__": main_for(__name__ ...)`.
Figure names carry their unit (`sqlite_events_per_s`, `ack_p99_ms`,
`ratio_to_raw_insert`); `--json` prints exactly one JSON object of them on
stdout, and progress goes to stderr so the JSON stays parseable.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterable

Figures = dict[str, float]


def log(message: str) -> None:
    """Progress for humans: stderr, so `--json` output stays one clean object."""
    print(message, file=sys.stderr, flush=True)


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


def percentile(values: Iterable[float], pct: float) -> float:
    """Nearest-rank percentile: reports a latency that was really observed."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    rank = max(1, min(len(ordered), round(pct / 100.0 * len(ordered) + 0.5)))
    return float(ordered[rank - 1])


def best_of(repeats: int, fn: Callable[[], float]) -> list[float]:
    """Run fn `repeats` times, returning each run's seconds (fn returns elapsed seconds)."""
    return [fn() for _ in range(repeats)]


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def format_value(value: float) -> str:
    if isinstance(value, bool):
        return str(value)
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def print_table(rows: list[tuple[str, str, float]]) -> None:
    name_w = max([len("benchmark"), *(len(r[0]) for r in rows)])
    fig_w = max([len("figure"), *(len(r[1]) for r in rows)])
    print(f"{'benchmark':<{name_w}}  {'figure':<{fig_w}}  {'value':>16}")
    print(f"{'-' * name_w}  {'-' * fig_w}  {'-' * 16}")
    for bench, figure, value in rows:
        print(f"{bench:<{name_w}}  {figure:<{fig_w}}  {format_value(value):>16}")


def main_for(
    name: str,
    description: str,
    run: Callable[[argparse.Namespace], Figures],
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    argv: list[str] | None = None,
) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {name}", description=description)
    parser.add_argument("--json", action="store_true", help="print one JSON object of figures on stdout")
    parser.add_argument(
        "--quick", action="store_true", help="small sizes, for a smoke run (figures are not comparable)"
    )
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    figures = run(args)
    if args.json:
        print(json.dumps(figures, sort_keys=True))
    else:
        print_table([(name.rsplit(".", 1)[-1], k, v) for k, v in figures.items()])
    return 0
