"""Throughput benchmarks. Run one with `python -m benchmarks.NAME [--json]`, all with `python -m benchmarks`.

Every benchmark measures its own baseline in the same run and reports ratios to
it, because absolute figures on a shared 2-core machine drift from run to run.
"""

BENCHMARKS: tuple[str, ...] = (
    "ingest", "ledger", "rating", "usage", "invoicing", "entitlements", "simulation", "cli", "console",
)  # fmt: skip
