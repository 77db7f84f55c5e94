"""Meters: which events a tenant accepts, and the decimal scale of their values.

This is the minimal registry the ingest path needs (code, aggregation, scale);
filters, group-by dimensions and rollups build on it in the meters issue.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError

from metering.errors import AlreadyExists
from metering.tables import meters


class Aggregation(StrEnum):
    """How a meter turns events into a quantity (computed by rollups in a later issue)."""

    COUNT = "count"
    SUM = "sum"
    MAX = "max"
    MIN = "min"
    LATEST = "latest"
    UNIQUE_COUNT = "unique_count"
    GAUGE = "gauge"


VALUE_SCALE_MAX = 18  # 10**18 < 2**63: any scale up to this keeps one unit representable in int64


class MeterDefinition(BaseModel):
    """Input to create a meter; pydantic collects every problem at once."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(pattern=r"^[a-z0-9][a-z0-9_.\-]{0,63}$", description="stable code events refer to")
    name: str = Field("", max_length=256)
    aggregation: Aggregation = Aggregation.SUM
    value_scale: int = Field(0, ge=0, le=VALUE_SCALE_MAX, description="fractional digits of event values")


@dataclass(frozen=True, slots=True)
class Meter:
    id: int
    tenant_id: int
    code: str
    name: str
    aggregation: Aggregation
    value_scale: int
    created_at: datetime


def create_meter(engine: Engine, tenant_id: int, definition: MeterDefinition) -> Meter:
    now = datetime.now(UTC)
    row = {
        "tenant_id": tenant_id,
        "code": definition.code,
        "name": definition.name or definition.code,
        "aggregation": definition.aggregation.value,
        "value_scale": definition.value_scale,
        "created_at": now,
    }
    try:
        with engine.begin() as conn:
            meter_id = conn.execute(insert(meters).values(**row).returning(meters.c.id)).scalar_one()
    except IntegrityError as exc:
        raise AlreadyExists(f"meter {definition.code!r} already exists for this tenant; pick another code") from exc
    return Meter(
        id=meter_id,
        tenant_id=tenant_id,
        code=definition.code,
        name=str(row["name"]),
        aggregation=definition.aggregation,
        value_scale=definition.value_scale,
        created_at=now,
    )


def list_meters(engine: Engine, tenant_id: int) -> list[Meter]:
    with engine.connect() as conn:
        rows = conn.execute(select(meters).where(meters.c.tenant_id == tenant_id).order_by(meters.c.code)).all()
    return [
        Meter(
            id=r.id,
            tenant_id=r.tenant_id,
            code=r.code,
            name=r.name,
            aggregation=Aggregation(r.aggregation),
            value_scale=r.value_scale,
            created_at=r.created_at,
        )
        for r in rows
    ]


@dataclass(frozen=True, slots=True)
class MeterSpec:
    """What validation needs of a meter, kept in memory on the hot path."""

    aggregation: Aggregation
    value_scale: int


class MeterCatalog:
    """Per-tenant meter specs cached in memory.

    A miss (an event naming an unknown meter) reloads the tenant's meters, at
    most once per `refresh_s`, so a meter created a moment ago is accepted at
    once while a stream of bad meter codes cannot turn into a query per event.
    """

    def __init__(self, engine: Engine, refresh_s: float = 1.0) -> None:
        self._engine = engine
        self._refresh_s = refresh_s
        self._lock = threading.Lock()
        self._specs: dict[int, dict[str, MeterSpec]] = {}
        self._loaded_at: dict[int, float] = {}

    def specs(self, tenant_id: int, codes: set[str] | None = None) -> dict[str, MeterSpec]:
        """The tenant's meters; reloads if `codes` names one not cached and the cache is stale."""
        with self._lock:
            cached = self._specs.get(tenant_id)
            loaded_at = self._loaded_at.get(tenant_id, 0.0)
        stale = time.monotonic() - loaded_at >= self._refresh_s
        missing = cached is None or (codes is not None and not codes.issubset(cached))
        if cached is not None and not (missing and stale):
            return cached
        fresh = {m.code: MeterSpec(m.aggregation, m.value_scale) for m in list_meters(self._engine, tenant_id)}
        with self._lock:
            self._specs[tenant_id] = fresh
            self._loaded_at[tenant_id] = time.monotonic()
        return fresh
