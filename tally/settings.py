"""Settings from `TALLY_*` environment variables (nested with `__`), overridable by CLI flags.

Examples: `TALLY_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/tally`,
`TALLY_INGEST__BATCH_EVENTS_MAX=5000`, `TALLY_SQLITE_SYNCHRONOUS=NORMAL`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from metering.limits import ApiLimits, IngestLimits


class PlatformSettings(BaseModel):
    """Events out: how often the background workers look for work, and the webhook retry schedule.

    Env: `TALLY_PLATFORM__WEBHOOK_MAX_ATTEMPTS=12`, ... Tests shrink the intervals to milliseconds.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    events_poll_s: float = Field(0.1, gt=0, le=60, description="WatchEvents: outbox poll interval when idle")
    webhook_interval_s: float = Field(1.0, gt=0, description="dispatcher: pause between passes when idle")
    webhook_timeout_s: float = Field(5.0, gt=0, le=120, description="one POST, connect to response")
    webhook_max_attempts: int = Field(12, ge=1, le=100, description="attempts per event before it is dead")
    webhook_backoff_base_s: float = Field(1.0, ge=0, description="wait after the first failure; doubles each time")
    webhook_backoff_max_s: float = Field(3600.0, ge=0, description="cap on the wait between attempts")
    webhook_parallel: int = Field(8, ge=1, le=256, description="endpoints served at once by one dispatcher")
    alert_interval_s: float = Field(5.0, gt=0, description="alert evaluator: pause between passes")
    points_interval_s: float = Field(
        60.0, gt=0, description="points accrual: pause between passes crediting what plans' earning rules owe"
    )
    webhook_block_private: bool = Field(
        False, description="refuse webhook URLs on loopback/private/link-local addresses (shared deployments)"
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TALLY_", env_nested_delimiter="__", extra="ignore")

    database_url: str = Field("sqlite:///tally.db", description="SQLite file (default) or PostgreSQL URL")
    host: str = "127.0.0.1"
    port: int = Field(50051, ge=0, le=65535)
    # The HTTP JSON API (and the console) on this port beside gRPC; None = off, 0 = any free port.
    http_port: int | None = Field(None, ge=0, le=65535)
    # FULL: a committed (acked) batch survives power loss. NORMAL: survives a crash
    # of Tally (kill -9) but the last commits may be lost on power loss or an OS crash.
    sqlite_synchronous: Literal["EXTRA", "FULL", "NORMAL"] = "FULL"
    # Writer threads on PostgreSQL (SQLite always uses one: it has one write lock).
    postgres_writers: int = Field(2, ge=1, le=64)
    shutdown_grace_s: float = Field(10.0, ge=0, description="time to drain in-flight batches on SIGTERM")
    store_events: bool = Field(True, description="False only for benchmarking decode+validate")
    # Rollups are folded after the ack (metering/fold.py); reads stay exact either way (read-through).
    fold_enabled: bool = Field(True, description="False leaves commits unfolded: only for tests and benchmarks")
    fold_interval_s: float = Field(0.2, gt=0, le=60, description="folder: look for unfolded commits this often")
    fold_events_max: int = Field(
        50_000,
        ge=1,
        description="events folded in one transaction at most (on SQLite the writer folds between commits: "
        "this bounds how long a batch waits behind a fold)",
    )
    ingest: IngestLimits = IngestLimits()
    api: ApiLimits = ApiLimits()
    platform: PlatformSettings = PlatformSettings()
