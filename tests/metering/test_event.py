"""Validation at the edge: both wire forms, every rule, and their agreement (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metering.errors import BatchTooLarge, InvalidArgument
from metering.event import Clock, PreparedBatch, check_batch_shape, format_fixed, parse_value, prepare
from metering.limits import IngestLimits
from metering.meter import Aggregation, MeterSpec
from tally.v1 import ingest_pb2 as pb

NOW_US = 1_800_000_000_000_000
LIMITS = IngestLimits()
CLOCK = Clock.at(NOW_US, LIMITS)
SPECS = {
    "api_calls": MeterSpec(Aggregation.COUNT, 0),
    "tokens": MeterSpec(Aggregation.SUM, 2),
    "gb": MeterSpec(Aggregation.SUM, 6),
    "gpu": MeterSpec(Aggregation.SUM, 0, group_by=("a", "b")),
    "mau": MeterSpec(Aggregation.UNIQUE_COUNT, 0, unique_property="a"),
}


def row(event_id: str = "e1", customer: str = "c1", meter: str = "tokens", value: str = "1.5",
        ts_us: int | None = NOW_US, properties: dict[str, str] | None = None) -> pb.Event:  # fmt: skip
    ev = pb.Event(event_id=event_id, customer=customer, meter=meter, value=value, properties=properties or {})
    if ts_us is not None:
        ev.timestamp.FromMicroseconds(ts_us)
    return ev


def rows_batch(*events: pb.Event, atomic: bool = False) -> pb.EventBatch:
    return pb.EventBatch(batch_id="b", events=events, atomic=atomic)


def prepared(batch: pb.EventBatch) -> PreparedBatch:
    check_batch_shape(batch, LIMITS)
    return prepare(7, batch, SPECS, LIMITS, CLOCK)


def codes(p: PreparedBatch) -> list[tuple[int, str, int]]:
    return [(e.index, e.field, e.code) for e in p.errors]


def test_good_row_is_converted_exactly() -> None:
    p = prepared(rows_batch(row(value="12.50", properties={"region": "eu"})))
    assert p.errors == []
    assert (p.event_ids, p.value_units, p.value_scale) == (["e1"], [1250], [2])
    assert p.properties == ['{"region":"eu"}']


@pytest.mark.parametrize(
    ("event", "field", "code"),
    [
        (row(event_id=""), "event_id", pb.INVALID_EVENT_ID),
        (row(event_id="é" * 65), "event_id", pb.INVALID_EVENT_ID),  # 130 bytes
        (row(customer=""), "customer", pb.INVALID_CUSTOMER),
        (row(meter="nope"), "meter", pb.UNKNOWN_METER),
        (row(ts_us=None), "timestamp", pb.MISSING_TIMESTAMP),
        (row(ts_us=NOW_US - 36 * 86_400_000_000), "timestamp", pb.TIMESTAMP_TOO_OLD),
        (row(ts_us=NOW_US + 301_000_000), "timestamp", pb.TIMESTAMP_IN_FUTURE),
        (row(value="NaN"), "value", pb.INVALID_VALUE),
        (row(value="Infinity"), "value", pb.INVALID_VALUE),
        (row(value="1e3"), "value", pb.INVALID_VALUE),
        (row(value="1,5"), "value", pb.INVALID_VALUE),
        (row(value=" 1"), "value", pb.INVALID_VALUE),
        (row(value=""), "value", pb.INVALID_VALUE),
        (row(value="1.234"), "value", pb.VALUE_SCALE_EXCEEDED),
        (row(value="92233720368547758.08"), "value", pb.VALUE_OVERFLOW),
        (row(value="9" * 41), "value", pb.INVALID_VALUE),
        (row(properties={"k": ""}), "properties.k", pb.INVALID_PROPERTIES),
        (row(properties={"k" * 65: "v"}), "properties", pb.INVALID_PROPERTIES),
        (row(properties={f"k{i}": "v" for i in range(33)}), "properties", pb.INVALID_PROPERTIES),
    ],
)
def test_each_rule_rejects_with_field_and_code(event: pb.Event, field: str, code: int) -> None:
    p = prepared(rows_batch(row(event_id="ok"), event))
    assert codes(p) == [(1, field, code)]
    assert p.event_ids == ["ok"] and list(p.index) == [0]
    assert p.errors[0].reason  # a human-readable reason is always given


def test_trailing_zeros_beyond_scale_are_exact_and_accepted() -> None:
    p = prepared(rows_batch(row(value="1.5000"), row(event_id="e2", value="-0.01"), row(event_id="e3", value=".5")))
    assert p.errors == [] and p.value_units == [150, -1, 50]


def test_count_meter_defaults_empty_value_to_one() -> None:
    p = prepared(rows_batch(row(meter="api_calls", value="")))
    assert p.value_units == [1] and p.errors == []


def test_limits_boundaries() -> None:
    assert parse_value("92233720368547758.07", SPECS["tokens"], LIMITS) == (2**63 - 1, None)
    assert parse_value("-92233720368547758.08", SPECS["tokens"], LIMITS) == (-(2**63), None)
    ok = prepared(rows_batch(row(ts_us=CLOCK.oldest_us), row(event_id="e2", ts_us=CLOCK.newest_us)))
    assert ok.errors == []
    assert prepared(rows_batch(row(event_id="x" * 128))).errors == []


def test_whole_batch_shape_errors() -> None:
    both = pb.EventBatch(events=[row()], columns=pb.EventColumns(event_ids=["a"]))
    with pytest.raises(InvalidArgument, match="both"):
        check_batch_shape(both, LIMITS)
    ragged = pb.EventBatch(columns=pb.EventColumns(event_ids=["a", "b"], customers=["c"], meters=["m", "m"],
                                                   timestamps_unix_us=[1, 2]))  # fmt: skip
    with pytest.raises(InvalidArgument, match="customers has 1"):
        check_batch_shape(ragged, LIMITS)
    with pytest.raises(BatchTooLarge, match="batch_events_max=2"):
        check_batch_shape(rows_batch(row(), row(), row()), IngestLimits(batch_events_max=2))
    with pytest.raises(InvalidArgument, match="value_scale"):
        check_batch_shape(pb.EventBatch(columns=pb.EventColumns(value_scale=19)), LIMITS)


def to_columns(events: list[pb.Event], scale: int) -> pb.EventBatch:
    """The columnar twin of a row batch; values given at `scale` (None when they do not fit it)."""
    keys = sorted({k for e in events for k in e.properties})
    units = []
    for e in events:
        whole, _, frac = e.value.partition(".")
        units.append(int((whole + frac.ljust(scale, "0")[:scale]) or "0"))
    cols = pb.EventColumns(
        event_ids=[e.event_id for e in events],
        customers=[e.customer for e in events],
        meters=[e.meter for e in events],
        timestamps_unix_us=[e.timestamp.ToMicroseconds() for e in events],
        value_units=units,
        value_scale=scale,
        properties=[pb.PropertyColumn(key=k, values=[e.properties.get(k, "") for e in events]) for k in keys],
    )
    return pb.EventBatch(batch_id="b", columns=cols)


@st.composite
def event_lists(draw: st.DrawFn) -> tuple[list[pb.Event], int]:
    scale = draw(st.integers(0, 8))
    n = draw(st.integers(1, 12))
    events = []
    for i in range(n):
        digits = draw(st.integers(0, 10**12))
        sign = draw(st.sampled_from(["", "-"]))
        text = str(digits).rjust(scale + 1, "0")
        value = f"{sign}{text[:-scale]}.{text[-scale:]}" if scale else f"{sign}{text}"
        events.append(
            row(
                event_id=draw(st.sampled_from(["", f"id-{i}", "x" * 129, "é" * 40])),
                customer=draw(st.sampled_from(["c1", "", "ü" * 70])),
                meter=draw(st.sampled_from([*SPECS, "unknown"])),
                value=value,
                ts_us=NOW_US + draw(st.integers(-40 * 86_400_000_000, 400_000_000)),
                properties=draw(st.dictionaries(st.sampled_from(["a", "b", "", "k" * 65]),
                                                st.one_of(st.text(min_size=1, max_size=3), st.just("v" * 257)),
                                                max_size=3)),
            )
        )  # fmt: skip
    return events, scale


@settings(max_examples=300, deadline=None)
@given(event_lists())
def test_rows_and_columns_get_identical_verdicts(case: tuple[list[pb.Event], int]) -> None:
    """The columnar form is an optimisation, never a different contract."""
    events, scale = case
    by_rows = prepared(rows_batch(*events))
    by_cols = prepared(to_columns(events, scale))
    assert codes(by_cols) == codes(by_rows)
    assert list(by_cols.index) == list(by_rows.index)
    for name in ("event_ids", "customers", "meters", "ts_us", "value_units", "value_scale", "properties"):
        assert getattr(by_cols, name) == getattr(by_rows, name), name


def test_format_fixed() -> None:
    assert [format_fixed(u, s) for u, s in [(1, 3), (-1250, 2), (7, 0), (-5, 1)]] == ["0.001", "-12.50", "7", "-0.5"]


def test_dimension_values_that_cannot_be_rolled_up_are_rejected_in_both_forms() -> None:
    """Long dimension keys and unique values are refused per event, with the field and the limit."""
    limits = IngestLimits(property_value_bytes_max=4096)
    events = [
        row("ok", meter="gpu", value="1", properties={"a": "eu", "b": "x"}),
        row("wide", meter="gpu", value="1", properties={"a": "é" * 200, "b": "y" * 700}),
        row("long", meter="mau", value="1", properties={"a": "u" * 257}),
        row("fine", meter="mau", value="1", properties={"a": "u" * 256, "b": "z" * 3000}),
    ]
    for batch in (rows_batch(*events), to_columns(events, 0)):
        check_batch_shape(batch, limits)
        out = prepare(7, batch, SPECS, limits, CLOCK)
        assert codes(out) == [(1, "properties", pb.INVALID_PROPERTIES), (2, "properties.a", pb.INVALID_PROPERTIES)]
        assert "at most 1024" in out.errors[0].reason and "(a, b)" in out.errors[0].reason
        assert "at most 256 bytes" in out.errors[1].reason
        assert list(out.event_ids) == ["ok", "fine"]


def test_metering_codes_are_the_wire_codes() -> None:
    """metering names its verdicts without the generated code; the numbers must be the proto's."""
    from metering.event import Code
    from tally.v1 import ingest_pb2

    wire = {v.name: v.number for v in ingest_pb2.EventErrorCode.DESCRIPTOR.values if v.number}
    assert {c.name: c.value for c in Code} == wire
