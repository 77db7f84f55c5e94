"""`python -m tally.cli ...` runs the `tally` command (tests and benchmarks start `serve` this way)."""

from tally.cli import run

if __name__ == "__main__":
    run()
