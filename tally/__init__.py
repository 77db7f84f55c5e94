"""Tally wiring: settings, database engines, the CLI and the server.

Deliberately imports nothing: `tally.v1` (the generated wire contract) is
imported by every layer, and must not drag the whole application with it.
"""

__version__ = "0.1.0"
