"""Usage queries, answered from rollups only (never by scanning raw events).

Ranges are half-open, `[start, end)`, and must fall on 15-minute boundaries (the rollup bucket):
any local hour, day or month boundary in any real time zone is one, so billing periods are always
answerable exactly; a range that would split a bucket is refused rather than estimated.

Quantities are exact `Decimal`s (fixed-point units scaled by the meter's scale), or, for the bulk
period extract that feeds the rating kernels, int64 units with their scale.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt
from sqlalchemy import Engine, func, select

from metering.errors import FailedPrecondition, InvalidArgument
from metering.meter import Aggregation, Meter, get_meter, list_meters
from metering.rollup import BUCKET_US, INT64_MAX, INT64_MIN
from metering.tables import rollups


class Window(StrEnum):
    """Calendar windows in the customer's time zone; each knows how to truncate a local time."""

    HOUR = "hour"
    DAY = "day"
    MONTH = "month"

    def truncate(self, local: datetime) -> datetime:
        if self is Window.HOUR:
            return local.replace(minute=0, second=0, microsecond=0)
        if self is Window.DAY:
            return local.replace(hour=0, minute=0, second=0, microsecond=0)
        return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


ROLLUP_AGGREGATIONS = {Aggregation.COUNT, Aggregation.SUM, Aggregation.MAX, Aggregation.MIN, Aggregation.LATEST}


@dataclass(frozen=True, slots=True)
class UsageRow:
    window_start: datetime | None  # local time in the requested zone; None when not windowed
    group: dict[str, str]  # group_by property values; empty when not grouped
    quantity: Decimal
    events: int


def to_us(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise InvalidArgument(f"{moment.isoformat()} has no time zone; pass an aware datetime")
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidArgument(f"unknown time zone {tz!r}; use an IANA name such as Europe/Paris") from exc


def _check_range(start_us: int, end_us: int) -> None:
    if end_us <= start_us:
        raise InvalidArgument("end must be after start")
    if start_us % BUCKET_US or end_us % BUCKET_US:
        raise InvalidArgument("start and end must fall on 15-minute boundaries (the rollup bucket)")


def _check_aggregation(meter: Meter) -> None:
    if meter.aggregation not in ROLLUP_AGGREGATIONS:
        raise FailedPrecondition(
            f"meter {meter.code!r} aggregates by {meter.aggregation.value}, which rollups do not answer yet"
        )


def _quantity(meter: Meter, rows: Sequence[Any]) -> tuple[Decimal, int]:
    """Combine bucket rows exactly into the meter's quantity."""
    n_events = sum(r.events for r in rows)
    agg = meter.aggregation
    if agg is Aggregation.COUNT:
        return Decimal(n_events), n_events
    if agg is Aggregation.SUM:
        units = sum(r.sum_units for r in rows)
    elif agg is Aggregation.MAX:
        units = max(r.max_units for r in rows)
    elif agg is Aggregation.MIN:
        units = min(r.min_units for r in rows)
    else:
        units = max(rows, key=lambda r: (r.latest_ts_us, r.latest_event_id)).latest_units
    return Decimal(units).scaleb(-meter.value_scale), n_events


def usage(
    engine: Engine,
    tenant_id: int,
    customer: str,
    meter_code: str,
    start: datetime,
    end: datetime,
    *,
    group_by: bool = False,
    window: Window | None = None,
    tz: str = "UTC",
) -> list[UsageRow]:
    """A customer's usage of one meter over [start, end), optionally per dimension and per window.

    Windows and groups with no events are left out; an empty list means no usage.
    """
    meter = get_meter(engine, tenant_id, meter_code)
    _check_aggregation(meter)
    start_us, end_us = to_us(start), to_us(end)
    _check_range(start_us, end_us)
    zone = _zone(tz)
    with engine.connect() as conn:
        rows = conn.execute(
            select(rollups).where(
                rollups.c.tenant_id == tenant_id,
                rollups.c.meter == meter_code,
                rollups.c.customer == customer,
                rollups.c.bucket_us >= start_us,
                rollups.c.bucket_us < end_us,
            )
        ).all()
    groups: dict[tuple[datetime | None, str], list[Any]] = {}
    for r in rows:
        w = None
        if window is not None:
            local = (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=r.bucket_us)).astimezone(zone)
            w = window.truncate(local)
        groups.setdefault((w, r.group_key if group_by else ""), []).append(r)
    out = []
    for (w, key), members in sorted(
        groups.items(), key=lambda kv: (kv[0][0] or datetime.min.replace(tzinfo=UTC), kv[0][1])
    ):
        quantity, n = _quantity(meter, members)
        out.append(UsageRow(w, _group(key), quantity, n))
    return out


def _group(key: str) -> dict[str, str]:
    return dict(json.loads(key)) if key else {}


@dataclass(frozen=True)
class PeriodColumns:
    """One billing period's usage for a whole tenant, as columns for the rating kernels.

    Row i: `customers[i]` used `units[i] * 10^-scales[i]` of `meters[i]` in dimension `group_keys[i]`.
    """

    customers: npt.NDArray[np.object_]
    meters: npt.NDArray[np.object_]
    group_keys: npt.NDArray[np.object_]
    units: npt.NDArray[np.int64]
    scales: npt.NDArray[np.int64]
    events: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.units)


def period_columns(engine: Engine, tenant_id: int, start: datetime, end: datetime) -> PeriodColumns:
    """Every (customer, meter, dimension) quantity of [start, end) in one grouped query per kind.

    Sums are exact or fail: SQLite's sum() raises on integer overflow, PostgreSQL widens to numeric;
    a quantity that does not fit int64 units is refused rather than wrapped.
    """
    start_us, end_us = to_us(start), to_us(end)
    _check_range(start_us, end_us)
    aggregation = {m.code: m.aggregation for m in list_meters(engine, tenant_id)}
    r = rollups.c
    in_period = (r.tenant_id == tenant_id, r.bucket_us >= start_us, r.bucket_us < end_us)
    keys = (r.meter, r.customer, r.group_key)
    with engine.connect() as conn:
        grouped = conn.execute(
            select(
                *keys,
                func.max(r.value_scale).label("scale"),
                func.sum(r.events).label("events"),
                func.sum(r.sum_units).label("sum_units"),
                func.min(r.min_units).label("min_units"),
                func.max(r.max_units).label("max_units"),
            )
            .where(*in_period)
            .group_by(*keys)
            .order_by(*keys)
        ).all()
        ranked = (
            select(
                *keys,
                r.latest_units,
                func.row_number()
                .over(partition_by=keys, order_by=(r.latest_ts_us.desc(), r.latest_event_id.desc()))
                .label("rank"),
            )
            .where(*in_period)
            .subquery()
        )
        latest = {
            (row.meter, row.customer, row.group_key): row.latest_units
            for row in conn.execute(select(ranked).where(ranked.c.rank == 1))
        }
    units: list[int] = []
    for row in grouped:
        agg = aggregation.get(row.meter)
        if agg is Aggregation.COUNT:
            value = int(row.events)
        elif agg is Aggregation.SUM:
            value = int(row.sum_units)
        elif agg is Aggregation.MAX:
            value = int(row.max_units)
        elif agg is Aggregation.MIN:
            value = int(row.min_units)
        elif agg is Aggregation.LATEST:
            value = int(latest[(row.meter, row.customer, row.group_key)])
        else:
            raise FailedPrecondition(f"meter {row.meter!r} aggregation is not answered by rollups yet")
        if not INT64_MIN <= value <= INT64_MAX:
            raise FailedPrecondition(f"usage of {row.meter!r} by {row.customer!r} does not fit 64-bit units")
        units.append(value)
    n = len(grouped)
    return PeriodColumns(
        customers=np.array([g.customer for g in grouped], dtype=object),
        meters=np.array([g.meter for g in grouped], dtype=object),
        group_keys=np.array([g.group_key for g in grouped], dtype=object),
        units=np.array(units, dtype=np.int64).reshape(n),
        scales=np.array(
            [0 if aggregation.get(g.meter) is Aggregation.COUNT else int(g.scale) for g in grouped], dtype=np.int64
        ).reshape(n),
        events=np.array([int(g.events) for g in grouped], dtype=np.int64).reshape(n),
    )
