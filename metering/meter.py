"""Meters: which events a tenant accepts, how they become quantities, and how usage splits into dimensions.

A meter in use never changes meaning silently: once it has events, its aggregation, scale, filter and
group_by are frozen (`update_meter` refuses with FailedPrecondition and says to create a new code);
its name and unit may still change. That keeps every stored rollup and every past invoice explainable.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import Engine, exists, insert, select, update
from sqlalchemy.exc import IntegrityError

from metering.errors import AlreadyExists, FailedPrecondition, NotFound
from metering.tables import events, meters
from metering.transactions import begin_write

_T = TypeVar("_T")


class Aggregation(StrEnum):
    """How a meter turns events into a quantity; every one is answered exactly from rollups."""

    COUNT = "count"
    SUM = "sum"
    MAX = "max"
    MIN = "min"
    LATEST = "latest"
    UNIQUE_COUNT = "unique_count"
    GAUGE = "gauge"


class TimeUnit(StrEnum):
    """The unit of time a gauge's integral is expressed in: seats held for a day are 1 seat-day."""

    SECOND = "second"
    MINUTE = "minute"
    HOUR = "hour"
    DAY = "day"

    @property
    def microseconds(self) -> int:
        return {"second": 1, "minute": 60, "hour": 3_600, "day": 86_400}[self.value] * 1_000_000


VALUE_SCALE_MAX = 18  # 10**18 < 2**63: any scale up to this keeps one unit representable in int64
# A gauge's integral divided by its time unit rarely terminates (1 seat for 1 hour = 1/24 seat-day), so
# its quantity is rounded once, half-even, to the value scale plus these digits (1e-6 day = 86 ms).
GAUGE_EXTRA_SCALE = 6
GROUP_BY_MAX = 8
PROPERTY_KEY_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}$"


class MeterDefinition(BaseModel):
    """Input to create a meter; pydantic collects every problem at once."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(pattern=r"^[a-z0-9][a-z0-9_.\-]{0,63}$", description="stable code events refer to")
    name: str = Field("", max_length=256)
    aggregation: Aggregation = Aggregation.SUM
    value_scale: int = Field(0, ge=0, le=VALUE_SCALE_MAX, description="fractional digits of event values")
    unit: str = Field("", max_length=32, description="display unit, e.g. tokens, GB, seats")
    filter: dict[str, list[str]] = Field(
        default_factory=dict, description="count only events whose property is one of these values"
    )
    group_by: list[str] = Field(default_factory=list, max_length=GROUP_BY_MAX, description="dimension properties")
    unique_property: str | None = Field(
        None, description="unique_count only: the property whose distinct values are counted"
    )
    time_unit: TimeUnit | None = Field(None, description="gauge only: integral unit (default day: seat-days)")

    @model_validator(mode="after")
    def _aggregation_options(self) -> MeterDefinition:
        if self.aggregation is Aggregation.UNIQUE_COUNT:
            if not self.unique_property:
                raise ValueError("unique_count needs unique_property: the property whose distinct values count")
            _check_property_name(self.unique_property, "unique_property")
        elif self.unique_property:
            raise ValueError(f"unique_property only applies to unique_count, not {self.aggregation.value}")
        if self.aggregation is Aggregation.GAUGE:
            if self.time_unit is None:
                object.__setattr__(self, "time_unit", TimeUnit.DAY)
        elif self.time_unit is not None:
            raise ValueError(f"time_unit only applies to gauge, not {self.aggregation.value}")
        return self

    @field_validator("filter")
    @classmethod
    def _filter(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for key, allowed in value.items():
            _check_property_name(key, "filter")
            if not allowed or any(not v or len(v.encode()) > 256 for v in allowed):
                raise ValueError(f"filter[{key!r}] must list 1 or more values of 1 to 256 bytes")
        return {k: sorted(set(v)) for k, v in sorted(value.items())}

    @field_validator("group_by")
    @classmethod
    def _group_by(cls, value: list[str]) -> list[str]:
        for key in value:
            _check_property_name(key, "group_by")
        if len(set(value)) != len(value):
            raise ValueError("group_by names a property twice")
        return value


def _check_property_name(key: str, where: str) -> None:
    if not re.fullmatch(PROPERTY_KEY_PATTERN, key):
        raise ValueError(f"{where} property {key!r} must be 1 to 64 of A-Z a-z 0-9 _ . -")


@dataclass(frozen=True, slots=True)
class Meter:
    id: int
    tenant_id: int
    code: str
    name: str
    aggregation: Aggregation
    value_scale: int
    created_at: datetime
    unit: str = ""
    filter: dict[str, list[str]] | None = None
    group_by: tuple[str, ...] = ()
    unique_property: str | None = None
    time_unit: TimeUnit | None = None

    @property
    def spec(self) -> MeterSpec:
        return MeterSpec(
            self.aggregation,
            self.value_scale,
            tuple((k, frozenset(v)) for k, v in sorted((self.filter or {}).items())),
            self.group_by,
            self.unique_property,
        )

    @property
    def quantity_scale(self) -> int:
        """Fractional digits of this meter's quantities (counts are whole; gauges add GAUGE_EXTRA_SCALE)."""
        if self.aggregation in (Aggregation.COUNT, Aggregation.UNIQUE_COUNT):
            return 0
        if self.aggregation is Aggregation.GAUGE:
            return self.value_scale + GAUGE_EXTRA_SCALE
        return self.value_scale


def create_meter(engine: Engine, tenant_id: int, definition: MeterDefinition) -> Meter:
    now = datetime.now(UTC)
    row = {
        "tenant_id": tenant_id,
        "code": definition.code,
        "name": definition.name or definition.code,
        "aggregation": definition.aggregation.value,
        "value_scale": definition.value_scale,
        "created_at": now,
        "unit": definition.unit,
        "filter": json.dumps(definition.filter, sort_keys=True, separators=(",", ":")),
        "group_by": json.dumps(definition.group_by, separators=(",", ":")),
        "unique_property": definition.unique_property or "",
        "time_unit": definition.time_unit.value if definition.time_unit else "",
    }
    try:
        with begin_write(engine) as conn:
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
        unit=definition.unit,
        filter=definition.filter,
        group_by=tuple(definition.group_by),
        unique_property=definition.unique_property,
        time_unit=definition.time_unit,
    )


def list_meters(engine: Engine, tenant_id: int) -> list[Meter]:
    with engine.connect() as conn:
        rows = conn.execute(select(meters).where(meters.c.tenant_id == tenant_id).order_by(meters.c.code)).all()
    return [_meter(r) for r in rows]


def _meter(r: Any) -> Meter:
    return Meter(
        id=r.id,
        tenant_id=r.tenant_id,
        code=r.code,
        name=r.name,
        aggregation=Aggregation(r.aggregation),
        value_scale=r.value_scale,
        created_at=r.created_at,
        unit=r.unit,
        filter=json.loads(r.filter),
        group_by=tuple(json.loads(r.group_by)),
        unique_property=r.unique_property or None,
        time_unit=TimeUnit(r.time_unit) if r.time_unit else None,
    )


def get_meter(engine: Engine, tenant_id: int, code: str) -> Meter:
    with engine.connect() as conn:
        row = conn.execute(select(meters).where(meters.c.tenant_id == tenant_id, meters.c.code == code)).one_or_none()
    if row is None:
        raise NotFound(f"no meter {code!r} for this tenant; list them with `tally meter list TENANT`")
    return _meter(row)


class MeterUpdate(BaseModel):
    """What may change on an existing meter. Meaning-bearing fields only while it has no events."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str | None = Field(None, max_length=256)
    unit: str | None = Field(None, max_length=32)
    aggregation: Aggregation | None = None
    value_scale: int | None = Field(None, ge=0, le=VALUE_SCALE_MAX)
    filter: dict[str, list[str]] | None = None
    group_by: list[str] | None = None
    unique_property: str | None = None
    time_unit: TimeUnit | None = None


def update_meter(engine: Engine, tenant_id: int, code: str, change: MeterUpdate) -> Meter:
    current = get_meter(engine, tenant_id, code)
    merged = MeterDefinition(
        code=code,
        name=change.name if change.name is not None else current.name,
        unit=change.unit if change.unit is not None else current.unit,
        aggregation=change.aggregation or current.aggregation,
        value_scale=change.value_scale if change.value_scale is not None else current.value_scale,
        filter=change.filter if change.filter is not None else (current.filter or {}),
        group_by=change.group_by if change.group_by is not None else list(current.group_by),
        unique_property=change.unique_property if change.unique_property is not None else _kept(
            current.unique_property, change.aggregation
        ),
        time_unit=change.time_unit if change.time_unit is not None else _kept(current.time_unit, change.aggregation),
    )
    meaning_changed = [
        name
        for name, old, new in (
            ("aggregation", current.aggregation, merged.aggregation),
            ("value_scale", current.value_scale, merged.value_scale),
            ("filter", current.filter or {}, merged.filter),
            ("group_by", list(current.group_by), merged.group_by),
            ("unique_property", current.unique_property, merged.unique_property),
            ("time_unit", current.time_unit, merged.time_unit),
        )
        if old != new
    ]
    with begin_write(engine) as conn:
        if meaning_changed:
            used = conn.execute(
                select(exists().where(events.c.tenant_id == tenant_id, events.c.meter == code))
            ).scalar_one()
            if used:
                raise FailedPrecondition(
                    f"meter {code!r} has events, so its {', '.join(meaning_changed)} cannot change "
                    f"(stored usage would change meaning); create a new meter, e.g. {code}_v2"
                )
        conn.execute(
            update(meters)
            .where(meters.c.tenant_id == tenant_id, meters.c.code == code)
            .values(
                name=merged.name,
                unit=merged.unit,
                aggregation=merged.aggregation.value,
                value_scale=merged.value_scale,
                filter=json.dumps(merged.filter, sort_keys=True, separators=(",", ":")),
                group_by=json.dumps(merged.group_by, separators=(",", ":")),
                unique_property=merged.unique_property or "",
                time_unit=merged.time_unit.value if merged.time_unit else "",
            )
        )
    return get_meter(engine, tenant_id, code)


def _kept(value: _T, new_aggregation: Aggregation | None) -> _T | None:
    """An aggregation-specific option survives an update unless the aggregation itself changes."""
    return value if new_aggregation is None else None


@dataclass(frozen=True, slots=True)
class MeterSpec:
    """What validation and rollups need of a meter, kept in memory on the hot path."""

    aggregation: Aggregation
    value_scale: int
    filter: tuple[tuple[str, frozenset[str]], ...] = ()
    group_by: tuple[str, ...] = ()
    unique_property: str | None = None


# Rollup key columns: group_key is String(2048) but sits in a composite B-tree key with the customer and,
# for unique_count, the value; PostgreSQL caps an index entry near 2.7 kB, so dimensions get 1 kB.
GROUP_KEY_BYTES_MAX = 1024
UNIQUE_VALUE_BYTES_MAX = 256  # rollup_values.value


def group_key(spec: MeterSpec, props: Mapping[str, str]) -> str | None:
    """The canonical dimension key of an event's properties, or None when the meter's filter drops it."""
    for key, allowed in spec.filter:
        if props.get(key) not in allowed:
            return None
    if not spec.group_by:
        return ""
    return json.dumps({k: props.get(k, "") for k in spec.group_by}, sort_keys=True, separators=(",", ":"))


def _key_bytes_bound(names: tuple[str, ...], props: Mapping[str, str]) -> int:
    """An upper bound on len(group_key(...).encode()) without building it: names are plain ASCII, and
    json.dumps escapes a value character to at most 12 bytes (a surrogate pair of \\uXXXX)."""
    return 2 + sum(len(k) + 6 + 12 * len(props.get(k, "")) for k in names)


def dimension_problem(spec: MeterSpec, props: Mapping[str, str]) -> tuple[str, str] | None:
    """(field, reason) when an event's dimension values cannot be rolled up; checked before storing."""
    if spec.group_by and _key_bytes_bound(spec.group_by, props) > GROUP_KEY_BYTES_MAX:
        key = group_key(spec, props)  # exact, only when the cheap bound cannot rule the event in
        if key is not None and len(key.encode()) > GROUP_KEY_BYTES_MAX:
            return (
                "properties",
                f"the values of this meter's group_by properties ({', '.join(spec.group_by)}) take "
                f"{len(key.encode())} bytes as a dimension key; at most {GROUP_KEY_BYTES_MAX}",
            )
    if spec.unique_property:
        value = props.get(spec.unique_property)
        if value is not None and len(value.encode()) > UNIQUE_VALUE_BYTES_MAX:
            return (
                f"properties.{spec.unique_property}",
                f"a unique_count value must be at most {UNIQUE_VALUE_BYTES_MAX} bytes",
            )
    return None


class MeterCatalog:
    """Per-tenant meter specs cached in memory.

    A miss (an event naming an unknown meter) reloads the tenant's meters, at
    most once per `refresh_s`, so a meter created a moment ago is accepted at
    once while a stream of bad meter codes cannot turn into a query per event.
    Specs older than `max_age_s` are reloaded on use even without a miss, so an
    update to a meter that has no events yet (the only meaning change allowed)
    reaches a running server within that time.
    """

    def __init__(self, engine: Engine, refresh_s: float = 1.0, max_age_s: float = 5.0) -> None:
        self._engine = engine
        self._refresh_s = refresh_s
        self._max_age_s = max_age_s
        self._lock = threading.Lock()
        self._specs: dict[int, dict[str, MeterSpec]] = {}
        self._loaded_at: dict[int, float] = {}

    def specs(self, tenant_id: int, codes: set[str] | None = None) -> dict[str, MeterSpec]:
        """The tenant's meters; reloads if `codes` names one not cached and the cache is stale."""
        with self._lock:
            cached = self._specs.get(tenant_id)
            loaded_at = self._loaded_at.get(tenant_id, 0.0)
        age = time.monotonic() - loaded_at
        missing = cached is None or (codes is not None and not codes.issubset(cached))
        if cached is not None and not (missing and age >= self._refresh_s) and age < self._max_age_s:
            return cached
        fresh = {m.code: m.spec for m in list_meters(self._engine, tenant_id)}
        with self._lock:
            self._specs[tenant_id] = fresh
            self._loaded_at[tenant_id] = time.monotonic()
        return fresh
