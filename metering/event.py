"""Validation at the edge: an EventBatch (rows or columns) becomes a PreparedBatch of clean columns.

Both wire forms end in the same PreparedBatch and pass the same checks in the
same order, so an event gets the same verdict whichever form carried it. The
order of checks per event (first failure wins, so each event gets one reason):
event_id, customer, meter, timestamp, value, properties.

The columnar path does its checks with numpy and C-level builtins (`max(map(len,
...))`) and only walks events one by one when a fast check says something is
wrong, because a Python loop per event is what limits ingest throughput.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from metering.errors import BatchTooLarge, InvalidArgument
from metering.limits import IngestLimits
from metering.meter import Aggregation, MeterSpec, dimension_problem
from metering.text import any_control, control_problem
from rating.fixedpoint import DECIMAL_RE, not_plain_decimal

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
SCALE_MAX = 18
POW10: tuple[int, ...] = tuple(10**k for k in range(2 * SCALE_MAX + 1))

class Code(IntEnum):
    """Why an event was refused. The numbers are the wire's `tally.v1.EventErrorCode` (a test holds
    them equal), so metering names its verdicts without importing generated protobuf code."""

    INVALID_EVENT_ID = 1
    INVALID_CUSTOMER = 2
    UNKNOWN_METER = 3
    MISSING_TIMESTAMP = 4
    TIMESTAMP_TOO_OLD = 5
    TIMESTAMP_IN_FUTURE = 6
    INVALID_VALUE = 7
    VALUE_SCALE_EXCEEDED = 8
    VALUE_OVERFLOW = 9
    INVALID_PROPERTIES = 10
    EVENT_ID_CONFLICT = 11
    BATCH_REFUSED = 12
    STORAGE_REFUSED = 13


#: The wire message (`tally.v1.EventBatch`, rows or columns). Metering reads it by its field names only
#: (duck-typed), so it never imports the generated code; the gRPC edge is what decodes it.
BatchMessage = Any
ColumnsMessage = Any


@dataclass(frozen=True, slots=True)
class EventError:
    index: int
    field: str
    code: Code
    reason: str


@dataclass(slots=True)
class PreparedBatch:
    """Valid events of one batch as parallel columns, ready for a bulk insert.

    `index[k]` is the position in the incoming batch of the k-th valid event, so
    errors found later (conflicts) can still be reported by the client's index.
    """

    tenant_id: int
    batch_id: str
    size: int
    atomic: bool
    index: Sequence[int]
    event_ids: list[str]
    customers: list[str]
    meters: list[str]
    ts_us: list[int]
    value_units: list[int]
    value_scale: list[int]
    properties: list[str | None]
    errors: list[EventError] = field(default_factory=list)
    # The tenant's meters as validation saw them: rollups use the same filter and group_by.
    specs: Mapping[str, MeterSpec] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.event_ids)

    def payload(self, k: int) -> tuple[str, str, int, int, int, str | None]:
        """What must match for a resent event to count as the same event."""
        return (
            self.customers[k],
            self.meters[k],
            self.ts_us[k],
            self.value_units[k],
            self.value_scale[k],
            self.properties[k],
        )


@dataclass(frozen=True, slots=True)
class Clock:
    """The acceptance window for timestamps, fixed once per batch."""

    now_us: int
    oldest_us: int
    newest_us: int

    @classmethod
    def at(cls, now_us: int, limits: IngestLimits) -> Clock:
        return cls(
            now_us=now_us,
            oldest_us=now_us - limits.event_age_max_days * 86_400_000_000,
            newest_us=now_us + limits.event_future_max_s * 1_000_000,
        )


def canonical_properties(props: Mapping[str, str]) -> str | None:
    if not props:
        return None
    return json.dumps(dict(props), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def equal_values(units_a: int, scale_a: int, units_b: int, scale_b: int) -> bool:
    """Exact decimal equality of two fixed-point values with possibly different scales."""
    if scale_a == scale_b:
        return units_a == units_b
    if scale_a < scale_b:
        return units_a * POW10[scale_b - scale_a] == units_b
    return units_b * POW10[scale_a - scale_b] == units_a


def format_fixed(units: int, scale: int) -> str:
    """Fixed-point integer → plain decimal string, for messages."""
    if scale == 0:
        return str(units)
    sign = "-" if units < 0 else ""
    digits = str(abs(units)).rjust(scale + 1, "0")
    return f"{sign}{digits[:-scale]}.{digits[-scale:]}"


def check_batch_shape(batch: BatchMessage, limits: IngestLimits) -> int:
    """Whole-batch checks that refuse the batch with a status (not per event). Returns its size."""
    if len(batch.batch_id.encode()) > 128:
        raise InvalidArgument("batch_id is longer than 128 bytes")
    if problem := control_problem(batch.batch_id, "batch_id"):
        raise InvalidArgument(problem)
    has_cols = batch.HasField("columns")
    if batch.events and has_cols:
        raise InvalidArgument("batch carries both `events` and `columns`; send one form per batch")
    if not has_cols:
        n = len(batch.events)
    else:
        c = batch.columns
        n = len(c.event_ids)
        lengths = {
            "customers": len(c.customers),
            "meters": len(c.meters),
            "timestamps_unix_us": len(c.timestamps_unix_us),
        }
        if len(c.value_units):
            lengths["value_units"] = len(c.value_units)
        for prop in c.properties:
            lengths[f"properties[{prop.key!r}].values"] = len(prop.values)
        wrong = {name: m for name, m in lengths.items() if m != n}
        if wrong:
            detail = ", ".join(f"{name} has {m}" for name, m in wrong.items())
            raise InvalidArgument(f"columns must all have one entry per event: event_ids has {n}, {detail}")
        if c.value_scale > SCALE_MAX:
            raise InvalidArgument(f"columns.value_scale is {c.value_scale}; it must be 0 to {SCALE_MAX}")
        keys = [p.key for p in c.properties]
        if len(set(keys)) != len(keys):
            raise InvalidArgument("columns.properties names the same key twice")
    if n > limits.batch_events_max:
        raise BatchTooLarge(f"batch has {n} events; the limit is batch_events_max={limits.batch_events_max}: split it")
    return n


def prepare(
    tenant_id: int,
    batch: BatchMessage,
    specs: Mapping[str, MeterSpec],
    limits: IngestLimits,
    clock: Clock,
) -> PreparedBatch:
    """Validate a batch whose shape passed `check_batch_shape`."""
    if batch.HasField("columns"):
        out = _prepare_columns(tenant_id, batch, specs, limits, clock)
    else:
        out = _prepare_rows(tenant_id, batch, specs, limits, clock)
    out.specs = specs
    return out


# --- per-field checks, shared by both forms --------------------------------------------------------


def _text_error(i: int, field_name: str, code: Code, value: str, bytes_max: int) -> EventError | None:
    """Empty or longer than bytes_max in UTF-8; encodes only when the length in characters cannot decide."""
    if not value:
        return EventError(i, field_name, code, f"{field_name} is empty")
    if len(value) * 4 > bytes_max and len(value.encode()) > bytes_max:
        return EventError(i, field_name, code, f"{field_name} is longer than {bytes_max} bytes")
    if problem := control_problem(value, field_name):
        return EventError(i, field_name, code, problem)
    return None


def _id_error(i: int, value: str, limits: IngestLimits) -> EventError | None:
    return _text_error(i, "event_id", Code.INVALID_EVENT_ID, value, limits.event_id_bytes_max)


def _customer_error(i: int, value: str, limits: IngestLimits) -> EventError | None:
    return _text_error(i, "customer", Code.INVALID_CUSTOMER, value, limits.customer_bytes_max)


def _unknown_meter(i: int, code: str) -> EventError:
    shown = code if len(code) <= 64 else code[:64] + "…"
    return EventError(i, "meter", Code.UNKNOWN_METER, f"no meter {shown!r} for this tenant; create it first")


def _timestamp_error(i: int, ts_us: int, clock: Clock, limits: IngestLimits) -> EventError | None:
    if ts_us < clock.oldest_us:
        return EventError(
            i,
            "timestamp",
            Code.TIMESTAMP_TOO_OLD,
            f"timestamp is older than event_age_max_days={limits.event_age_max_days}",
        )
    if ts_us > clock.newest_us:
        return EventError(
            i,
            "timestamp",
            Code.TIMESTAMP_IN_FUTURE,
            f"timestamp is more than event_future_max_s={limits.event_future_max_s} ahead of the server clock",
        )
    return None


def _properties_error(i: int, props: Mapping[str, str], limits: IngestLimits) -> EventError | None:
    if len(props) > limits.properties_max:
        return EventError(
            i,
            "properties",
            Code.INVALID_PROPERTIES,
            f"{len(props)} properties; at most properties_max={limits.properties_max}",
        )
    for key, value in sorted(props.items()):  # sorted: the same first error in both wire forms
        if not key or len(key.encode()) > limits.property_key_bytes_max:
            return EventError(
                i,
                "properties",
                Code.INVALID_PROPERTIES,
                f"property keys must be 1 to {limits.property_key_bytes_max} bytes",
            )
        if problem := control_problem(key, "properties key"):
            return EventError(i, "properties", Code.INVALID_PROPERTIES, problem)
        if not value or len(value.encode()) > limits.property_value_bytes_max:
            return EventError(
                i,
                f"properties.{key}",
                Code.INVALID_PROPERTIES,
                f"property values must be 1 to {limits.property_value_bytes_max} bytes",
            )
        if problem := control_problem(value, f"properties.{key}"):
            return EventError(i, f"properties.{key}", Code.INVALID_PROPERTIES, problem)
    return None


def parse_value(text: str, spec: MeterSpec, limits: IngestLimits) -> tuple[int, EventError | None]:
    """Decimal string → units at the meter's scale. Returns (units, None) or (0, error with index -1)."""
    scale = spec.value_scale
    if not text:
        if spec.aggregation is Aggregation.COUNT:
            return 10**scale, None
        return 0, EventError(-1, "value", Code.INVALID_VALUE, f"value is required for a {spec.aggregation.value} meter")
    # The one notation every edge accepts (rating.fixedpoint), parsed by hand below, straight to units.
    if len(text) > limits.value_chars_max or DECIMAL_RE.fullmatch(text) is None:
        return 0, EventError(-1, "value", Code.INVALID_VALUE, not_plain_decimal(text, "value"))
    whole, _, frac = text.partition(".")
    stripped = frac.rstrip("0")
    if len(stripped) > scale:
        return 0, EventError(
            -1,
            "value",
            Code.VALUE_SCALE_EXCEEDED,
            f"value {text} has {len(stripped)} fractional digits; the meter's scale is {scale}",
        )
    sign = -1 if whole.startswith("-") else 1
    digits = whole.lstrip("+-") + stripped.ljust(scale, "0")
    units = sign * int(digits or "0")
    if not INT64_MIN <= units <= INT64_MAX:
        return 0, EventError(
            -1, "value", Code.VALUE_OVERFLOW, f"value {text} does not fit 64 bits at the meter's scale {scale}"
        )
    return units, None


# --- row form --------------------------------------------------------------------------------------


def _prepare_rows(
    tenant_id: int,
    batch: BatchMessage,
    specs: Mapping[str, MeterSpec],
    limits: IngestLimits,
    clock: Clock,
) -> PreparedBatch:
    out = PreparedBatch(tenant_id, batch.batch_id, len(batch.events), batch.atomic, [], [], [], [], [], [], [], [], [])
    index = out.index
    assert isinstance(index, list)
    errors = out.errors
    for i, ev in enumerate(batch.events):
        event_id = ev.event_id
        err = _id_error(i, event_id, limits) or _customer_error(i, ev.customer, limits)
        if err is not None:
            errors.append(err)
            continue
        spec = specs.get(ev.meter)
        if spec is None:
            errors.append(_unknown_meter(i, ev.meter))
            continue
        if not ev.HasField("timestamp"):
            errors.append(EventError(i, "timestamp", Code.MISSING_TIMESTAMP, "timestamp is required"))
            continue
        ts = ev.timestamp
        ts_us = ts.seconds * 1_000_000 + ts.nanos // 1000
        err = _timestamp_error(i, ts_us, clock, limits)
        if err is not None:
            errors.append(err)
            continue
        units, verr = parse_value(ev.value, spec, limits)
        if verr is not None:
            errors.append(EventError(i, verr.field, verr.code, verr.reason))
            continue
        props = ev.properties
        if props:
            err = _properties_error(i, props, limits)
            if err is not None:
                errors.append(err)
                continue
        if spec.group_by or spec.unique_property:
            problem = dimension_problem(spec, props)
            if problem is not None:
                errors.append(EventError(i, problem[0], Code.INVALID_PROPERTIES, problem[1]))
                continue
        index.append(i)
        out.event_ids.append(event_id)
        out.customers.append(ev.customer)
        out.meters.append(ev.meter)
        out.ts_us.append(ts_us)
        out.value_units.append(units)
        out.value_scale.append(spec.value_scale)
        out.properties.append(canonical_properties(props))
    return out


# --- columnar form ---------------------------------------------------------------------------------


def _long_strings(values: list[str], bytes_max: int) -> bool:
    """True when some string may exceed bytes_max (UTF-8 needs at most 4 bytes a character)."""
    return bool(values) and (min(map(len, values)) == 0 or max(map(len, values)) * 4 > bytes_max)


def _prepare_columns(
    tenant_id: int,
    batch: BatchMessage,
    specs: Mapping[str, MeterSpec],
    limits: IngestLimits,
    clock: Clock,
) -> PreparedBatch:
    c = batch.columns
    n = len(c.event_ids)
    ids = list(c.event_ids)
    customers = list(c.customers)
    meter_codes = list(c.meters)
    bad: dict[int, EventError] = {}

    if _long_strings(ids, limits.event_id_bytes_max) or any_control(ids):
        for i, v in enumerate(ids):
            err = _id_error(i, v, limits)
            if err is not None:
                bad[i] = err
    if _long_strings(customers, limits.customer_bytes_max) or any_control(customers):
        for i, v in enumerate(customers):
            if i not in bad:
                err = _customer_error(i, v, limits)
                if err is not None:
                    bad[i] = err

    codes = set(meter_codes)
    unknown = codes.difference(specs)
    if unknown:
        for i, code in enumerate(meter_codes):
            if code in unknown and i not in bad:
                bad[i] = _unknown_meter(i, code)
    known = codes - unknown

    ts = np.fromiter(c.timestamps_unix_us, dtype=np.int64, count=n)
    for i in np.flatnonzero((ts < clock.oldest_us) | (ts > clock.newest_us)).tolist():
        if i not in bad:
            err = _timestamp_error(i, int(ts[i]), clock, limits)
            assert err is not None
            bad[i] = err

    units, scales = _column_values(c, meter_codes, known, specs, n, bad)

    props: list[str | None] = _column_properties(c, n, limits, bad) if len(c.properties) else [None] * n
    dimensional = {code for code in known if specs[code].group_by or specs[code].unique_property}
    if dimensional:
        for i, code in enumerate(meter_codes):
            if code in dimensional and i not in bad:
                text = props[i]
                problem = dimension_problem(specs[code], json.loads(text) if text else {})
                if problem is not None:
                    bad[i] = EventError(i, problem[0], Code.INVALID_PROPERTIES, problem[1])

    ts_list: list[int] = ts.tolist()
    if not bad:
        return PreparedBatch(
            tenant_id, batch.batch_id, n, batch.atomic, range(n), ids, customers, meter_codes,
            ts_list, units, scales, props,
        )  # fmt: skip
    keep = [i for i in range(n) if i not in bad]
    return PreparedBatch(
        tenant_id,
        batch.batch_id,
        n,
        batch.atomic,
        keep,
        [ids[i] for i in keep],
        [customers[i] for i in keep],
        [meter_codes[i] for i in keep],
        [ts_list[i] for i in keep],
        [units[i] for i in keep],
        [scales[i] for i in keep],
        [props[i] for i in keep],
        [bad[i] for i in sorted(bad)],
    )


def _column_values(
    c: ColumnsMessage,
    meter_codes: list[str],
    known: set[str],
    specs: Mapping[str, MeterSpec],
    n: int,
    bad: dict[int, EventError],
) -> tuple[list[int], list[int]]:
    """Rescale the batch's fixed-point values to each meter's scale, exactly and with overflow checks."""
    if not len(c.value_units):
        # Absent values: every event counts 1, which only count meters accept.
        units = np.zeros(n, dtype=np.int64)
        scales = np.zeros(n, dtype=np.int64)
        for code in known:
            spec = specs[code]
            mask = _mask(meter_codes, code, len(known))
            if spec.aggregation is not Aggregation.COUNT:
                for i in np.flatnonzero(mask).tolist():
                    bad.setdefault(
                        i,
                        EventError(
                            i, "value", Code.INVALID_VALUE, f"value is required for a {spec.aggregation.value} meter"
                        ),
                    )
            units[mask] = 10**spec.value_scale
            scales[mask] = spec.value_scale
        return units.tolist(), scales.tolist()

    raw = np.fromiter(c.value_units, dtype=np.int64, count=n)
    batch_scale = int(c.value_scale)
    units = raw.copy()
    scales = np.full(n, batch_scale, dtype=np.int64)
    for code in known:
        meter_scale = specs[code].value_scale
        if meter_scale == batch_scale:
            continue
        mask = _mask(meter_codes, code, len(known))
        if meter_scale < batch_scale:
            step = 10 ** (batch_scale - meter_scale)
            inexact = mask & (raw % step != 0)
            for i in np.flatnonzero(inexact).tolist():
                bad.setdefault(
                    i,
                    EventError(
                        i,
                        "value",
                        Code.VALUE_SCALE_EXCEEDED,
                        f"value {format_fixed(int(raw[i]), batch_scale)} has more fractional digits than "
                        f"the meter's scale {meter_scale}",
                    ),
                )
            units[mask] = raw[mask] // step
        else:
            step = 10 ** (meter_scale - batch_scale)
            too_big = mask & ((raw > INT64_MAX // step) | (raw < -(INT64_MAX // step)))
            for i in np.flatnonzero(too_big).tolist():
                bad.setdefault(
                    i,
                    EventError(
                        i,
                        "value",
                        Code.VALUE_OVERFLOW,
                        f"value {format_fixed(int(raw[i]), batch_scale)} does not fit 64 bits at the "
                        f"meter's scale {meter_scale}",
                    ),
                )
            safe = mask & ~too_big
            units[safe] = raw[safe] * step
        scales[mask] = meter_scale
    return units.tolist(), scales.tolist()


def _mask(meter_codes: list[str], code: str, distinct: int) -> npt.NDArray[np.bool_]:
    if distinct == 1:
        return np.ones(len(meter_codes), dtype=np.bool_)
    return np.fromiter((m == code for m in meter_codes), dtype=np.bool_, count=len(meter_codes))


def _column_properties(
    c: ColumnsMessage, n: int, limits: IngestLimits, bad: dict[int, EventError]
) -> list[str | None]:
    """Checks in the row form's order (count, then each key in sorted order and its value)."""
    columns = [(p.key, list(p.values)) for p in c.properties]
    if len(columns) > limits.properties_max:
        counts = np.zeros(n, dtype=np.int64)
        for _key, values in columns:
            counts += np.fromiter((v != "" for v in values), dtype=np.int64, count=n)
        for i in np.flatnonzero(counts > limits.properties_max).tolist():
            bad.setdefault(
                i,
                EventError(
                    i,
                    "properties",
                    Code.INVALID_PROPERTIES,
                    f"{int(counts[i])} properties; at most properties_max={limits.properties_max}",
                ),
            )
    key_max = limits.property_key_bytes_max
    value_max = limits.property_value_bytes_max
    for key, values in sorted(columns):
        key_error = None
        if not key or len(key.encode()) > key_max:
            key_error = f"property keys must be 1 to {key_max} bytes"
        else:
            key_error = control_problem(key, "properties key")
        if key_error is not None:
            for i, v in enumerate(values):
                if v:
                    bad.setdefault(i, EventError(i, "properties", Code.INVALID_PROPERTIES, key_error))
        elif values and (max(map(len, values)) * 4 > value_max or any_control(values)):
            for i, v in enumerate(values):
                if problem := control_problem(v, f"properties.{key}"):
                    bad.setdefault(i, EventError(i, f"properties.{key}", Code.INVALID_PROPERTIES, problem))
                elif len(v.encode()) > value_max:
                    bad.setdefault(
                        i,
                        EventError(
                            i,
                            f"properties.{key}",
                            Code.INVALID_PROPERTIES,
                            f"property values must be 1 to {value_max} bytes",
                        ),
                    )
    out: list[str | None] = []
    for i in range(n):
        props = {key: values[i] for key, values in columns if values[i]}
        out.append(canonical_properties(props))
    return out
