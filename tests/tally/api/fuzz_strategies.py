"""Request generators for the API fuzz (tests/tally/api/test_fuzz.py), built from the message descriptors.

Nothing here knows a particular RPC: `requests(descriptor, base, known)` walks `descriptor.fields` recursively
and draws, for each field, either the base request's value (so a request can get past validation and
NOT_FOUND) or a hostile one chosen by the field's wire type and, for strings, by what its name says it holds
(an exact decimal, JSON, a page token, free text). `single_field_variants` is the deterministic side: the base
request with exactly one leaf replaced by each hostile value of its kind, so a failure names its field.
`RAW_BODIES` are request bodies that are not valid protobuf, sent with a generic channel call.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

F = FieldDescriptor
TIMESTAMP = "google.protobuf.Timestamp"

# --- hostile strings, by what the field holds -----------------------------------------------------------------

DEEP = 10_000
DEEP_ARRAY = "[" * DEEP + "]" * DEEP
DEEP_OBJECT = '{"a":' * DEEP + "1" + "}" * DEEP
THOUSANDS_OF_DIGITS = "9" * 5000

#: Every string field gets these: control characters, a 10k-character string, digits that are not ASCII.
GENERIC: list[str] = [
    "\x00",
    "a\x00b",
    "\x01\x02\x07\x08\x0b\x0c\x1b[31m\x7f\x85",
    "\r\n\t ",
    "x" * 10_000,
    "\uff19\uff19",  # full-width "99"
    "\u0661\u0662\u0663",  # Arabic-Indic "123"
    "\u202e\ufeff\u200b",
    "🙂" * 300,
    "1_0",
    " 12 ",
]

#: Exact-decimal fields (amounts, thresholds, quantities, event values).
NUMERIC: list[str] = [
    "",
    "0",
    "-0",
    "1",
    "-1",
    "0.5",
    "1.005",
    "1_0",
    " 12 ",
    "\uff11\uff12",  # full-width "12"
    "\u0661\u0662",  # Arabic-Indic "12"
    "NaN",
    "-Infinity",
    "sNaN",
    "1e999",
    "1E-999",
    "1e9",
    THOUSANDS_OF_DIGITS,
    "-" + THOUSANDS_OF_DIGITS,
    "0." + "0" * 4999 + "1",
    THOUSANDS_OF_DIGITS + "." + THOUSANDS_OF_DIGITS,
    "99999999999999999999999",
    "9223372036854775808",
    "+.5",
    "0x10",
    "1\x00",
]

_PLAN = {
    "code": "fz",
    "name": "Fuzz",
    "currency": "USD",
    "interval": "monthly",
    "charges": [
        {"code": "base", "kind": "flat",
         "price": {"model": "flat", "amount_per_period": "30", "billing": "in_advance", "currency": "USD"}},
        {"code": "calls", "kind": "usage", "meter": "api_calls",
         "price": {"model": "per_unit", "unit_amount": "0.01", "currency": "USD"}},
    ],
    "features": [{"key": "sso", "kind": "boolean"}],
}  # fmt: skip


def _plan(**changes: Any) -> str:
    plan = json.loads(json.dumps(_PLAN))
    for path, value in changes.items():
        node = plan
        *parents, leaf = path.split("__")
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        node[int(leaf) if leaf.isdigit() else leaf] = value
    return json.dumps(plan)


#: JSON documents: a valid one, deeply nested ones, numbers no float holds, wrong types, NUL and lone surrogates.
JSON_GENERIC: list[str] = [
    "",
    "null",
    "[]",
    "{}",
    '"a string"',
    "1",
    "[1e400]",
    "1e400",
    "NaN",
    '{"a":[]}',
    "99999999999999999999999",
    DEEP_ARRAY,
    DEEP_OBJECT,
    "[" * 64 + "]" * 64,
    "{" + ",".join(f'"k{i}":{i}' for i in range(20_000)) + "}",
    '{"code": "p\\u0000x", "charges": []}',
    '{"code": "\\ud800", "charges": []}',
    "\x00{}",
    '{"a": 1',
]

PLAN_JSON: list[str] = [
    _plan(),
    _plan(code="fz2", trial_days=99999999999999999999999),
    _plan(code="fz3", trial_days=-1),
    _plan(code="fz4", trial_days=2**63),
    _plan(code="fz5", interval="weekly"),
    _plan(code="fz6", interval="\x00"),
    _plan(code="fz7", currency="\x00"),
    _plan(code="fz8", name="N\x00"),
    _plan(code="fz9", charges__1__price__unit_amount=THOUSANDS_OF_DIGITS),
    _plan(code="fz10", charges__1__price__unit_amount="0." + "0" * 4999 + "1"),
    _plan(code="fz11", charges__1__price__unit_amount=1e300),
    _plan(code="fz12", charges__1__meter="\x00"),
    _plan(code="fz13", charges__0__price__amount_per_period="1e999"),
    _plan(code="fz14", charges__1__price={"model": "graduated",
                                          "tiers": [{"up_to": THOUSANDS_OF_DIGITS, "unit_amount": "1"}]}),
    _plan(code="fz15", invoice_limits={"minimum_commitment": THOUSANDS_OF_DIGITS, "cap_amount": "1"}),
    _plan(code="fz16", features=[{"key": "q", "kind": "quota", "meter": "api_calls", "amount": THOUSANDS_OF_DIGITS}]),
    _plan(code="fz17", features=[{"key": "\x00", "kind": "boolean"}]),
    _plan(code="fz18", charges=[_PLAN["charges"][0]] * 5000),
    _plan(code="fz19", charges__1__price={"model": "dimensional", "dimension": "r",
                                          "prices": {"\x00": {"model": "per_unit", "unit_amount": "1"}}}),
    _plan(code="pro"),  # replaces the draft of the seeded plan
    '{"code": "fz20", "charges": [' + DEEP_ARRAY + "]}",
    '{"code": "fz21", "trial_days": 1e400, "charges": []}',
    '{"code": "fz22", "charges": {"a": []}}',
    '{"code": "fz23", "charges": [null, 1, "x", []]}',
    '{"code": ["x"], "charges": []}',
    '{"code": "fz24", "charges": [], "features": [{"key": "k", "kind": "quota", "amount": 1e400}]}',
]  # fmt: skip

PRICE_JSON: list[str] = [
    '{"model": "per_unit", "unit_amount": "0.5", "currency": "USD"}',
    '{"model": "per_unit", "unit_amount": "' + THOUSANDS_OF_DIGITS + '", "currency": "USD"}',
    '{"model": "per_unit", "unit_amount": 99999999999999999999999, "currency": "USD"}',
    '{"model": "per_unit", "unit_amount": 1e400, "currency": "USD"}',
    '{"model": "per_unit", "unit_amount": "0.' + "0" * 4999 + '1", "currency": "USD"}',
    '{"model": "per_unit", "unit_amount": "1", "currency": "\\u0000"}',
    '{"model": "graduated", "tiers": [{"up_to": "'
    + THOUSANDS_OF_DIGITS
    + '", "unit_amount": "1"}, {"unit_amount": "2"}]}',
    '{"model": "graduated", "tiers": ['
    + ",".join(f'{{"up_to": "{i}", "unit_amount": "1"}}' for i in range(1, 20_000))
    + "]}",
    '{"model": "volume", "tiers": [{"up_to": 1e400, "unit_amount": "1"}]}',
    '{"model": "package", "package_amount": "1", "package_size": "0"}',
    '{"model": "package", "package_amount": "1", "package_size": "' + THOUSANDS_OF_DIGITS + '"}',
    '{"model": "percentage", "rate": "1e999"}',
    '{"model": "dimensional", "dimension": "r", "prices": ' + DEEP_OBJECT + "}",
    '{"model": "flat", "amount_per_period": "1", "billing": "\\u0000"}',
    '{"model": "nope"}',
]

# --- page tokens ------------------------------------------------------------------------------------------------


def b64(raw: str | bytes) -> str:
    data = raw.encode() if isinstance(raw, str) else raw
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


#: Forged page tokens: base64 JSON of every shape but the one the API issues, and strings that are not base64.
PAGE_TOKENS: list[str] = [
    b64("[1e400]"),
    b64("1e400"),
    b64('{"a":[]}'),
    b64("99999999999999999999999"),
    b64("-99999999999999999999999"),
    b64("9223372036854775808"),
    b64("-9223372036854775809"),
    b64("[99999999999999999999999]"),
    b64(THOUSANDS_OF_DIGITS),
    b64("1.5"),
    b64("-1"),
    b64("0"),
    b64("true"),
    b64("null"),
    b64("NaN"),
    b64("Infinity"),
    b64("[]"),
    b64('["x"]'),
    b64("[1, 2]"),
    b64('"\\u0000"'),
    b64('"\\ud800"'),
    b64('"' + "x" * 10_000 + '"'),
    b64(DEEP_ARRAY),
    b64(b"\xff\xfe\x00"),
    b64('"cus_a"'),
    b64("1"),
    "!!!",
    "a",
    "====",
    "\x00",
]

# --- other string fields: values that get past the first checks ------------------------------------------------

DOMAIN: dict[str, list[str]] = {
    "customer": ["cus_a", "cus_new"],
    "external_id": ["cus_a", "cus_new"],
    "plan": ["pro"],
    "code": ["pro", "api_calls", "tokens", "transfer"],
    "meter": ["api_calls", "tokens"],
    "meters": ["api_calls", "tokens"],
    "feature": ["sso", "api_calls"],
    "unit": ["USD", "EUR", "pts"],
    "currency": ["USD", "EUR"],
    "from_unit": ["USD", "pts"],
    "to_unit": ["pts", "USD"],
    "timezone": ["UTC", "Europe/Paris", "Etc/GMT+12", "Pacific/Kiritimati", "../../etc/passwd", "UTC\x00"],
    "window": ["", "hour", "day", "month"],
    "timing": ["now", "period_end"],
    "kind": ["usage", "spend", "balance", "paid", "promotional"],
    "aggregation": ["count", "sum", "max", "min", "latest", "unique_count", "gauge"],
    "time_unit": ["second", "minute", "hour", "day"],
    "status": ["draft", "finalized", "paid", "void"],
    "format": ["json", "csv", "pdf"],
    "flags": ["linked", "pending", "post_pending", "void_pending"],
    "types": ["invoice.", "subscription.created", "usage.threshold_crossed", "*", ""],
    "update_mask": ["name", "currency", "timezone", "address", "tax_region", "email", "metadata"],
    "url": ["http://127.0.0.1:9/x", "https://example.invalid/h", "file:///etc/passwd", "http://[::1", "http://a\x00b/"],
    "country": ["FR", "US"],
    "email": ["a@b.c"],
    "tax_region": ["", "FR"],
    "group_by": ["region", "model"],
    "unique_property": ["user"],
    "applies_to": ["calls", "base"],
}

NUMERIC_FIELDS = {"amount", "threshold", "value", "requested", "quantities", "unit_amount", "remaining"}


def string_kind(field: FieldDescriptor) -> str:
    name = field.name
    if name.endswith("_json"):
        return "json"
    if name == "page_token":
        return "token"
    if name in NUMERIC_FIELDS:
        return "numeric"
    return "text"


def string_pool(field: FieldDescriptor) -> list[str]:
    """The hostile values one string field is swept with."""
    kind = string_kind(field)
    if kind == "json":
        docs = PLAN_JSON if field.name == "definition_json" else PRICE_JSON if field.name == "price_json" else []
        return [*docs, *JSON_GENERIC, *GENERIC[:5]]
    if kind == "token":
        return PAGE_TOKENS
    if kind == "numeric":
        return NUMERIC
    return [*GENERIC, *DOMAIN.get(field.name, [])]


# --- integers, timestamps, enums ---------------------------------------------------------------------------------

I32 = (-(2**31), 2**31 - 1)
I64 = (-(2**63), 2**63 - 1)
U32 = (0, 2**32 - 1)
U64 = (0, 2**64 - 1)
INT_RANGES: dict[int, tuple[int, int]] = {
    F.TYPE_INT32: I32, F.TYPE_SINT32: I32, F.TYPE_SFIXED32: I32,
    F.TYPE_INT64: I64, F.TYPE_SINT64: I64, F.TYPE_SFIXED64: I64,
    F.TYPE_UINT32: U32, F.TYPE_FIXED32: U32,
    F.TYPE_UINT64: U64, F.TYPE_FIXED64: U64,
}  # fmt: skip


def int_pool(field: FieldDescriptor, known: dict[str, list[int]]) -> list[int]:
    lo, hi = INT_RANGES[field.type]
    pool = [lo, hi, 0, 1, -1 if lo < 0 else 2, lo + 1, hi - 1, 1001, 2**53 + 1 if hi > 2**53 else 65536]
    if hi > 2**32:  # just past a 32-bit column
        pool += [2**31, -(2**31) - 1] if lo < 0 else [2**31, 2**32]
    if field.name == "timestamps_unix_us":
        now_us = time.time_ns() // 1000
        pool += [now_us, now_us + 10**12, -(10**18), 253402300799 * 10**6, -62135596800 * 10**6]
    return [*dict.fromkeys([*pool, *known.get(field.name, [])])]


NOW_S = int(time.time())
YEAR_1 = -62135596800  # 0001-01-01T00:00:00Z
YEAR_9999_END = 253402300799  # 9999-12-31T23:59:59Z
#: (seconds, nanos) of Timestamps at and beyond the ends of the representable range, and with invalid nanos.
TIMESTAMPS: list[tuple[int, int]] = [
    (YEAR_1, 0),
    (YEAR_9999_END, 999_999_999),
    (YEAR_9999_END - 86_400 * 40, 0),
    (YEAR_1 - 1, 0),
    (YEAR_9999_END + 1, 0),
    (-(2**63), 0),
    (2**63 - 1, 0),
    (NOW_S, -1),
    (NOW_S, 1_000_000_000),
    (NOW_S, 2**31 - 1),
    (NOW_S, -(2**31)),
    (0, 0),
    (NOW_S, 0),
    (NOW_S + 3600, 0),
    (NOW_S - 86_400 * 400, 0),
]

ENUM_UNKNOWN = [99, -1, 2**31 - 1, -(2**31)]


def enum_pool(field: FieldDescriptor) -> list[int]:
    assert field.enum_type is not None
    return [v.number for v in field.enum_type.values] + ENUM_UNKNOWN


FLOATS = [0.0, -0.0, float("nan"), float("inf"), float("-inf"), 1e308, 5e-324]


def scalar_pool(field: FieldDescriptor, known: dict[str, list[int]]) -> list[Any]:
    """Hostile values of one non-message field (one element when the field is repeated)."""
    t = field.type
    if t == F.TYPE_STRING:
        return string_pool(field)
    if t == F.TYPE_BYTES:
        return [b"", b"\x00", b"\xff" * 10_000, "🙂".encode()]
    if t in INT_RANGES:
        return int_pool(field, known)
    if t == F.TYPE_BOOL:
        return [True, False]
    if t in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
        return FLOATS
    if t == F.TYPE_ENUM:
        return enum_pool(field)
    raise AssertionError(f"no pool for {field.full_name} (type {t})")


def _no_surrogates(s: str) -> bool:
    return not any(0xD800 <= ord(c) <= 0xDFFF for c in s)


#: Strategies made once per (field or message, known ids, depth): hypothesis computes a new strategy's label and
#: emptiness (reading lambdas' source) on first use, which cost a third of the fuzz's time when every draw built
#: fresh ones.
_STRATEGIES: dict[tuple[Any, ...], st.SearchStrategy[Any]] = {}


def _known_key(known: dict[str, list[int]]) -> tuple[Any, ...]:
    return tuple((k, tuple(v)) for k, v in sorted(known.items()))


def scalar_strategy(field: FieldDescriptor, known: dict[str, list[int]]) -> st.SearchStrategy[Any]:
    """Hypothesis values of one non-message field: its sweep pool plus free generation by wire type."""
    key = ("scalar", field.full_name, _known_key(known))
    found = _STRATEGIES.get(key)
    if found is None:
        found = _STRATEGIES[key] = _scalar_strategy(field, known)
    return found


def _scalar_strategy(field: FieldDescriptor, known: dict[str, list[int]]) -> st.SearchStrategy[Any]:
    pool = scalar_pool(field, known)
    t = field.type
    if t == F.TYPE_STRING:
        free: st.SearchStrategy[Any] = st.one_of(
            st.text(max_size=24),
            st.text(st.characters(codec="utf-8"), min_size=100, max_size=400),
            st.decimals(allow_nan=True, allow_infinity=True).map(str),
            st.integers(-(10**30), 10**30).map(str),
        ).filter(_no_surrogates)
        if string_kind(field) == "json":
            free = st.recursive(
                st.none() | st.booleans() | st.integers() | st.text(max_size=8).filter(_no_surrogates),
                lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3),
                max_leaves=12,
            ).map(json.dumps)
        return st.one_of(st.sampled_from(pool), free)
    if t in INT_RANGES:
        lo, hi = INT_RANGES[t]
        return st.one_of(st.sampled_from(pool), st.integers(lo, hi))
    if t in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
        return st.one_of(st.sampled_from(pool), st.floats())
    if t == F.TYPE_ENUM:
        return st.one_of(st.sampled_from(pool), st.integers(*I32))
    return st.sampled_from(pool)


# --- building messages -------------------------------------------------------------------------------------------


def is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def is_timestamp(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.full_name == TIMESTAMP


def set_timestamp(ts: Any, value: tuple[int, int]) -> None:
    ts.seconds, ts.nanos = value


def timestamp_strategy() -> st.SearchStrategy[tuple[int, int]]:
    return st.one_of(
        st.sampled_from(TIMESTAMPS),
        st.tuples(st.integers(YEAR_1, YEAR_9999_END), st.integers(0, 999_999_999)),
        st.tuples(st.integers(*I64), st.integers(*I32)),
    )


def message_strategy(
    descriptor: Descriptor,
    base: Message | Callable[[], Message] | None,
    known: dict[str, list[int]],
    depth: int = 0,
) -> st.SearchStrategy[Message]:
    """Messages of `descriptor`: each field is left as in `base` (a message, or a factory called per example, so
    ids follow the seeded objects) or drawn hostile, recursively."""
    if base is None:
        key = ("message", descriptor.full_name, _known_key(known), depth)
        found = _STRATEGIES.get(key)
        if found is None:
            found = _STRATEGIES[key] = _message_strategy(descriptor, None, known, depth)
        return found
    return _message_strategy(descriptor, base, known, depth)


def _message_strategy(
    descriptor: Descriptor,
    base: Message | Callable[[], Message] | None,
    known: dict[str, list[int]],
    depth: int,
) -> st.SearchStrategy[Message]:
    cls = _message_class(descriptor)

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        msg = cls()
        start = base() if callable(base) else base
        if start is not None:
            msg.CopyFrom(start)
        for field in descriptor.fields:
            if not draw(st.booleans()):  # keep the base value (or leave unset)
                continue
            draw_field(draw, msg, field, known, depth)
        return msg

    return build()


def draw_field(draw: st.DrawFn, msg: Message, field: FieldDescriptor, known: dict[str, list[int]], depth: int) -> None:
    name = field.name
    if is_map(field):
        entry = field.message_type
        assert entry is not None
        key_f, value_f = entry.fields_by_name["key"], entry.fields_by_name["value"]
        container = getattr(msg, name)
        container.clear()
        for _ in range(draw(st.integers(0, 3))):
            key = draw(scalar_strategy(key_f, known))
            if value_f.message_type is not None:
                container[key].CopyFrom(draw(message_strategy(value_f.message_type, None, known, depth + 1)))
            else:
                container[key] = draw(scalar_strategy(value_f, known))
        return
    if field.is_repeated:
        container = getattr(msg, name)
        size = draw(st.sampled_from([0, 1, 2, 3, 200]))
        if field.message_type is not None:
            if depth > 3:
                return
            items = draw(st.lists(message_strategy(field.message_type, None, known, depth + 1), max_size=min(size, 3)))
            del container[:]
            container.extend(items)
        else:
            values = draw(st.lists(scalar_strategy(field, known), min_size=min(size, 3), max_size=min(size, 3)))
            if size == 200:  # a long list of one (hostile) value
                values = values[:1] * 200
            del container[:]
            container.extend(values)
        return
    if is_timestamp(field):
        if draw(st.booleans()):
            msg.ClearField(name)
        else:
            set_timestamp(getattr(msg, name), draw(timestamp_strategy()))
        return
    if field.message_type is not None:
        if depth > 3 or draw(st.integers(0, 4)) == 0:
            msg.ClearField(name)
            return
        sub_base = getattr(msg, name) if msg.HasField(name) else None
        sub = draw(message_strategy(field.message_type, sub_base, known, depth + 1))
        getattr(msg, name).CopyFrom(sub)
        return
    setattr(msg, name, draw(scalar_strategy(field, known)))


def _message_class(descriptor: Descriptor) -> type[Message]:
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(descriptor)


# --- the deterministic sweep: one field at a time ------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    path: str  # the field set, e.g. "customer.metadata{key}" or "transfers[0].amount"
    value: Any  # the hostile value (repr'd in reports)
    message: Message


Setter = Callable[[Message, Any], None]


def leaf_setters(
    descriptor: Any, known: dict[str, list[int]], prefix: str = "", depth: int = 0
) -> Iterator[tuple[str, Any, Setter]]:
    """(path, value, setter) for every leaf reachable from `descriptor`; setter(msg, value) sets that leaf on msg."""
    for field in descriptor.fields:
        name = field.name
        path = f"{prefix}{name}"
        if is_map(field):
            entry = field.message_type
            assert entry is not None
            key_f, value_f = entry.fields_by_name["key"], entry.fields_by_name["value"]
            for key in scalar_pool(key_f, known)[:8]:
                yield f"{path}{{key}}", key, _map_setter(name, value_f, key_is_value=True)
            inner = value_f.message_type
            if inner is None:
                for value in scalar_pool(value_f, known)[:8]:
                    yield f"{path}{{value}}", value, _map_setter(name, value_f, key_is_value=False)
            else:
                for value in scalar_pool(inner.fields[0], known)[:8]:
                    setter = _map_setter(name, value_f, key_is_value=False)
                    yield f"{path}{{value}}.{inner.fields[0].name}[0]", value, setter
        elif is_timestamp(field):
            for ts in TIMESTAMPS:
                yield path, ts, _timestamp_setter(name)
        elif field.message_type is not None:
            if depth >= 3:
                continue
            sub = f"{path}[0]." if field.is_repeated else f"{path}."
            for sub_path, value, setter in leaf_setters(field.message_type, known, "", depth + 1):
                yield sub + sub_path, value, _into(name, field.is_repeated, setter)
        else:
            for value in scalar_pool(field, known):
                if field.is_repeated:
                    yield f"{path}[0]", value, _one_element_setter(name)
                else:
                    yield path, value, _scalar_setter(name)


def _timestamp_setter(name: str) -> Setter:
    def apply(msg: Message, value: Any) -> None:
        set_timestamp(getattr(msg, name), value)

    return apply


def _one_element_setter(name: str) -> Setter:
    def apply(msg: Message, value: Any) -> None:
        container = getattr(msg, name)
        del container[:]
        container.append(value)

    return apply


def _scalar_setter(name: str) -> Setter:
    def apply(msg: Message, value: Any) -> None:
        setattr(msg, name, value)

    return apply


def _into(name: str, repeated: bool, setter: Callable[[Message, Any], None]) -> Callable[[Message, Any], None]:
    def apply(msg: Message, value: Any) -> None:
        if repeated:
            container = getattr(msg, name)
            target = container[0] if len(container) else container.add()
        else:
            target = getattr(msg, name)
        setter(target, value)

    return apply


def _map_setter(name: str, value_f: FieldDescriptor, key_is_value: bool) -> Callable[[Message, Any], None]:
    def apply(msg: Message, value: Any) -> None:
        container = getattr(msg, name)
        container.clear()
        if value_f.message_type is not None:
            key = value if key_is_value else "k"
            inner = container[key]
            inner_field = value_f.message_type.fields[0]
            getattr(inner, inner_field.name).append("v" if key_is_value else value)
        elif key_is_value:
            container[value] = "v"
        else:
            container["k"] = value

    return apply


def single_field_variants(base: Message, known: dict[str, list[int]]) -> Iterator[Variant]:
    """The base request with one leaf replaced, for every leaf of its type and every hostile value of that leaf."""
    for path, value, setter in leaf_setters(base.DESCRIPTOR, known):
        msg = type(base)()
        msg.CopyFrom(base)
        try:
            setter(msg, value)
        except (ValueError, TypeError):  # a value protobuf itself refuses to hold (never reaches the wire)
            continue
        yield Variant(path, value, msg)


# --- bodies that are not protobuf ----------------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


#: (label, body): each is refused by a protobuf parser, or parses only by accident of the wire format.
RAW_BODIES: list[tuple[str, bytes]] = [
    ("0xff x3", b"\xff\xff\xff"),
    ("truncated varint", b"\x08\xff"),
    ("length past the end", b"\x0a\xff\xff\xff\xff\x0f" + b"a"),
    ("field number 0", b"\x00\x01"),
    ("wire type 7", b"\x0f\x01"),
    ("groups nested 10k deep", b"\x0b" * 10_000 + b"\x0c" * 10_000),
    ("invalid UTF-8 in field 1", b"\x0a\x02\xff\xfe"),
    ("invalid UTF-8 in field 2", b"\x12\x03\xc3\x28\x41"),
    ("text", b"hello, world"),
    ("length 5, 1 byte", b"\x0a\x05a"),
    ("end group without start", b"\x0c"),
    ("overlong UTF-8 NUL in field 1", b"\x0a\x02\xc0\x80"),
    ("CESU surrogate in field 1", b"\x0a\x03\xed\xa0\x80"),
    ("UTF-8 NUL in field 1", b"\x0a\x01\x00"),
    ("field 1 as a 10-byte varint", b"\x08" + b"\xff" * 9 + b"\x01"),
    ("field 1 as an 11-byte varint", b"\x08" + b"\xff" * 10 + b"\x01"),
    ("JSON", b'{"customer": "cus_a"}'),
    ("64 KiB of zero bytes", b"\x00" * 65_536),
    ("random-looking", bytes((i * 197 + 89) % 256 for i in range(512))),
    ("huge unknown field", _varint((9999 << 3) | 2) + _varint(1_000_000) + b"z" * 1_000_000),
]
