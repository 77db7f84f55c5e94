"""Settings from `TALLY_*` environment variables (nested with `__`), overridable by CLI flags.

Examples: `TALLY_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/tally`,
`TALLY_INGEST__BATCH_EVENTS_MAX=5000`, `TALLY_SQLITE_SYNCHRONOUS=NORMAL`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from metering.limits import IngestLimits


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TALLY_", env_nested_delimiter="__", extra="ignore")

    database_url: str = Field("sqlite:///tally.db", description="SQLite file (default) or PostgreSQL URL")
    host: str = "127.0.0.1"
    port: int = Field(50051, ge=0, le=65535)
    # FULL: a committed (acked) batch survives power loss. NORMAL: survives a crash
    # of Tally (kill -9) but the last commits may be lost on power loss or an OS crash.
    sqlite_synchronous: Literal["EXTRA", "FULL", "NORMAL"] = "FULL"
    # Writer threads on PostgreSQL (SQLite always uses one: it has one write lock).
    postgres_writers: int = Field(2, ge=1, le=64)
    shutdown_grace_s: float = Field(10.0, ge=0, description="time to drain in-flight batches on SIGTERM")
    store_events: bool = Field(True, description="False only for benchmarking decode+validate")
    ingest: IngestLimits = IngestLimits()
