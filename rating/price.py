"""The one entry point for price definitions: the `Price` union, parsing, and the JSON schema.

`parse_price` accepts a model instance, a dict (the JSON form) or a JSON string, and either returns a
validated model or raises `InvalidPriceError` listing every problem with its full field path
(``tiers[1].up_to``, ``prices.eu.unit_amount``) and a stable snake_case code. Unknown model names
raise `UnknownModelError`. Decimals are strings in JSON; integers are accepted, floats are refused.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import Field, TypeAdapter, ValidationError

from rating.commitment import MinimumCommitmentPrice
from rating.dimensional import DimensionalPrice
from rating.errors import InvalidPriceError, Problem, UnknownModelError
from rating.flat import FlatPrice
from rating.leaf import OutcomePrice
from rating.outcome import KpiContingentPrice, PerOutcomePrice, ValueSharePrice
from rating.package import PackagePrice
from rating.per_unit import PerUnitPrice
from rating.percentage import GraduatedPercentagePrice, PercentagePrice
from rating.points_price import PointsPrice
from rating.sla import SlaCreditPrice
from rating.tiers import GraduatedPrice, VolumePrice
from rating.wording import problem_message

Price = Annotated[
    PerUnitPrice
    | PackagePrice
    | GraduatedPrice
    | VolumePrice
    | PercentagePrice
    | GraduatedPercentagePrice
    | FlatPrice
    | OutcomePrice
    | SlaCreditPrice
    | MinimumCommitmentPrice
    | PointsPrice
    | DimensionalPrice,
    Field(discriminator="model"),
]

PRICE_ADAPTER: TypeAdapter[Price] = TypeAdapter(Price)

#: Model name → classes implementing it (outcome has one class per `kind`).
MODELS: dict[str, tuple[type, ...]] = {
    "per_unit": (PerUnitPrice,),
    "package": (PackagePrice,),
    "graduated": (GraduatedPrice,),
    "volume": (VolumePrice,),
    "percentage": (PercentagePrice,),
    "graduated_percentage": (GraduatedPercentagePrice,),
    "flat": (FlatPrice,),
    "outcome": (PerOutcomePrice, ValueSharePrice, KpiContingentPrice),
    "sla_credit": (SlaCreditPrice,),
    "minimum_commitment": (MinimumCommitmentPrice,),
    "points": (PointsPrice,),
    "dimensional": (DimensionalPrice,),
}

_CODE_FOR_TYPE = {
    "missing": "missing_field",
    "extra_forbidden": "unknown_field",
    "union_tag_invalid": "unknown_model",
    "union_tag_not_found": "missing_model",
    "decimal_parsing": "invalid_decimal",
    "decimal_type": "invalid_decimal",
    "literal_error": "invalid_choice",
    "enum": "invalid_choice",
}


def parse_price(definition: object) -> Price:
    """A validated price, or `InvalidPriceError` naming every field that is wrong."""
    if isinstance(definition, tuple(c for cs in MODELS.values() for c in cs)):
        return definition  # type: ignore[return-value]
    try:
        if isinstance(definition, str | bytes):
            return PRICE_ADAPTER.validate_json(definition)
        return PRICE_ADAPTER.validate_python(definition)
    except ValidationError as exc:
        problems = _problems(exc)
        if any(p.code == "unknown_model" for p in problems):
            raise UnknownModelError(problems) from None
        raise InvalidPriceError(problems) from None


def _problems(exc: ValidationError) -> list[Problem]:
    problems: list[Problem] = []
    for err in exc.errors():
        path = _path(err["loc"])
        ctx = err.get("ctx") or {}
        inner = ctx.get("error")
        if isinstance(inner, InvalidPriceError):
            problems.extend(inner.prefixed(path).problems)
            continue
        kind = err["type"]
        code = _CODE_FOR_TYPE.get(kind, kind)
        message = problem_message(err)
        if code == "unknown_model":
            path = path or "model"
            message = f"unknown price model; choose one of: {', '.join(MODELS)}"
        problems.append(Problem(path, code, message))
    return problems


def _path(loc: tuple[int | str, ...]) -> str:
    """Pydantic's location as a dotted path, without the union tags it inserts."""
    out = ""
    parts = list(loc)
    i = 0
    while i < len(parts):
        part = parts[i]
        nxt = parts[i + 1] if i + 1 < len(parts) else None
        if (
            isinstance(part, str)
            and part in MODELS
            and (i == 0 or parts[i - 1] in ("price", "default") or _is_dimension_value_slot(parts, i))
        ):
            i += 1
            if part == "outcome" and isinstance(nxt, str) and nxt in ("per_outcome", "value_share", "kpi_contingent"):
                i += 1
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out = f"{out}.{part}" if out else str(part)
        i += 1
    return out


def _is_dimension_value_slot(parts: list[int | str], i: int) -> bool:
    """True when parts[i] follows a key of a dimensional price's `prices` mapping (a union tag slot)."""
    return i >= 2 and parts[i - 2] == "prices"


def price_json_schema() -> dict[str, Any]:
    """The published JSON schema of price definitions (committed as docs/price.schema.json)."""
    schema = PRICE_ADAPTER.json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Tally price definition"
    return schema


def price_json_schema_text() -> str:
    return json.dumps(price_json_schema(), indent=2, sort_keys=True) + "\n"


def model_names() -> list[str]:
    return list(MODELS)


__all__ = ["MODELS", "PRICE_ADAPTER", "Price", "model_names", "parse_price", "price_json_schema"]
