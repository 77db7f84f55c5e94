"""`python -m tally ...` runs the `tally` command (`python -X importtime -m tally --help` shows what start-up loads)."""

from tally.cli import run

if __name__ == "__main__":
    run()
