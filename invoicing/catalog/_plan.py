"""Plans and their versions: what a subscription is billed for.

A plan (a code) has numbered versions. A version is a draft until published, and a published version
never changes again: subscriptions and issued invoices point at it, so editing it would silently
re-price them. Editing a plan whose latest version is published creates draft N+1 instead.

Prices are rating's JSON definitions, validated with `rating.parse_price` when the draft is saved, so
every problem comes back at once with a path such as ``charges[1].price.tiers[0].up_to``. Meters are
checked at publish time: a draft may be written before its meters exist, a published version may not.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from invoicing.catalog._period import Interval, stored_utc, utc
from invoicing.tables import plan_versions, plans
from metering.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from metering.meter import get_meter
from metering.transactions import begin_write
from rating.commitment import InvoiceLimits
from rating.errors import InvalidPriceError, Problem
from rating.fields import Amount, Positive
from rating.flat import FlatPrice
from rating.price import Price, parse_price
from rating.unit import currency as currency_unit
from rating.wording import problem_message

CODE_PATTERN = r"^[a-z0-9][a-z0-9_.\-]{0,63}$"
TRIAL_DAYS_MAX = 730
CHARGES_MAX = 100

Timing = Literal["in_advance", "in_arrears"]


class VersionStatus(StrEnum):
    DRAFT = "draft"
    PUBLISHED = "published"


class InvalidPlan(InvalidArgument):
    """A plan definition is refused; `problems` lists every one, each with its field path."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("invalid plan: " + "; ".join(str(p) for p in self.problems))

    @property
    def fields(self) -> list[str]:
        return [p.field for p in self.problems]


class ChargeDefinition(BaseModel):
    """One line of a plan. `price` stays the raw rating JSON here; `parse_plan` validates it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(pattern=CODE_PATTERN)
    kind: Literal["usage", "flat"]
    meter: str | None = Field(None, description="meter code a usage charge prices")
    group_by: str | None = Field(None, description="meter property whose values select the dimensional price")
    billing: Timing | None = Field(None, description="default: in_arrears for usage, the flat price's own")
    price: dict[str, Any]


FEATURES_MAX = 100
FeatureKind = Literal["boolean", "quota", "limit", "balance"]


class FeatureDefinition(BaseModel):
    """A feature the plan grants. Progressive levels of a product are plans with growing features.

    - boolean: on for every subscriber of the plan.
    - quota: `amount` of `meter` per billing period (None = unlimited), e.g. 10,000 api_calls.
    - limit: the meter's latest value may not exceed `amount` (None = unlimited), e.g. 25 seats.
    - balance: usable while the customer's wallet in `unit` holds enough; a top-up opens it at once.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str = Field(pattern=CODE_PATTERN)
    kind: FeatureKind = "boolean"
    meter: str | None = Field(None, description="quota and limit: the meter counted against the feature")
    # rating's decimal field: the one plain notation (no 1e-3, no floats), like every amount of a plan file.
    amount: Amount | None = Field(None, description="quota and limit: allowed amount; None = unlimited")
    unit: str | None = Field(None, description="balance: the currency or points unit of the funding wallet")

    @model_validator(mode="after")
    def _kind_fields(self) -> FeatureDefinition:
        needs_meter = self.kind in ("quota", "limit")
        if needs_meter and not self.meter:
            raise ValueError(f"a {self.kind} feature needs a meter")
        if not needs_meter and (self.meter is not None or self.amount is not None):
            raise ValueError(f"meter and amount apply to quota and limit features, not {self.kind}")
        if (self.kind == "balance") != (self.unit is not None):
            raise ValueError("unit applies to balance features only, and a balance feature needs one")
        return self

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "kind": self.kind,
            "meter": self.meter,
            "amount": None if self.amount is None else format(self.amount, "f"),
            "unit": self.unit,
        }


EARNING_MAX = 20
#: A points unit code (`rating.unit.points`): lower case, so it can never name a currency.
POINTS_CODE_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"


class EarningRule(BaseModel):
    """Points a subscriber earns from its own usage: `points_per_unit` points of `unit` per unit of `meter`,
    at most `cap_per_period` in one billing period (None = no cap). Credited by `invoicing.earning`
    from the tenant's points-issuance account into the customer's points wallet (docs/ledger.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(pattern=CODE_PATTERN)
    meter: str = Field(min_length=1, max_length=64, description="the meter whose usage earns points")
    unit: str = Field(pattern=POINTS_CODE_PATTERN, description="the points unit credited (defined in the ledger)")
    points_per_unit: Positive
    cap_per_period: Positive | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "meter": self.meter,
            "unit": self.unit,
            "points_per_unit": format(self.points_per_unit, "f"),
            "cap_per_period": None if self.cap_per_period is None else format(self.cap_per_period, "f"),
        }


class PlanDefinition(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(pattern=CODE_PATTERN)
    name: str = Field("", max_length=256)
    currency: str = "USD"
    interval: Interval = Interval.MONTHLY
    trial_days: int = Field(0, ge=0, le=TRIAL_DAYS_MAX)
    charges: list[ChargeDefinition] = Field(default_factory=list, max_length=CHARGES_MAX)
    invoice_limits: InvoiceLimits = Field(default_factory=InvoiceLimits)
    features: list[FeatureDefinition] = Field(default_factory=list, max_length=FEATURES_MAX)
    earning: list[EarningRule] = Field(default_factory=list, max_length=EARNING_MAX)


@dataclass(frozen=True, slots=True)
class Charge:
    code: str
    kind: Literal["usage", "flat"]
    meter: str | None
    group_by: str | None
    billing: Timing
    price_definition: dict[str, Any]

    @property
    def price(self) -> Price:
        return parse_price(self.price_definition)

    def as_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "kind": self.kind,
            "meter": self.meter,
            "group_by": self.group_by,
            "billing": self.billing,
            "price": self.price_definition,
        }


@dataclass(frozen=True, slots=True)
class PlanVersion:
    id: int
    plan_id: int
    code: str
    version: int
    status: VersionStatus
    name: str
    currency: str
    interval: Interval
    trial_days: int
    charges: tuple[Charge, ...]
    invoice_limits: InvoiceLimits
    created_at: datetime
    published_at: datetime | None
    features: tuple[FeatureDefinition, ...] = ()
    earning: tuple[EarningRule, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.code} v{self.version}"

    def has_timing(self, timing: Timing) -> bool:
        return any(c.billing == timing for c in self.charges)

    def definition(self) -> PlanDefinition:
        return PlanDefinition(
            code=self.code,
            name=self.name,
            currency=self.currency,
            interval=self.interval,
            trial_days=self.trial_days,
            charges=[ChargeDefinition.model_validate(c.as_json()) for c in self.charges],
            invoice_limits=self.invoice_limits,
            features=list(self.features),
            earning=list(self.earning),
        )


@dataclass(frozen=True, slots=True)
class PlanSummary:
    code: str
    name: str
    latest_version: int
    latest_status: VersionStatus
    published_version: int | None


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def parse_plan(raw: PlanDefinition | Mapping[str, Any] | str | bytes) -> tuple[PlanDefinition, tuple[Charge, ...]]:
    """The validated definition and its resolved charges, or `InvalidPlan` with every problem found."""
    if isinstance(raw, PlanDefinition):
        raw = raw.model_dump(mode="json")
    if isinstance(raw, str | bytes):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise InvalidPlan([Problem("", "invalid_json", f"not JSON: {exc}")]) from None
    if not isinstance(raw, Mapping):
        raise InvalidPlan([Problem("", "invalid_plan", "a plan is a JSON object")])
    problems: list[Problem] = []
    plan: PlanDefinition | None = None
    try:
        plan = PlanDefinition.model_validate(raw)
    except ValidationError as exc:
        problems += [Problem(_path(e["loc"]), e["type"], problem_message(e)) for e in exc.errors()]
    raw_charges = raw.get("charges")
    prices: dict[int, Price] = {}
    if isinstance(raw_charges, list):
        for i, c in enumerate(raw_charges):
            if isinstance(c, Mapping) and isinstance(c.get("price"), Mapping):
                try:
                    prices[i] = parse_price(dict(c["price"]))
                except InvalidPriceError as exc:
                    problems += exc.prefixed(f"charges[{i}].price").problems
    if plan is None or problems:
        raise InvalidPlan(problems)
    problems += _currency_problems(plan.currency)
    charges: list[Charge] = []
    seen: set[str] = set()
    for i, c in enumerate(plan.charges):
        where = f"charges[{i}]"
        if c.code in seen:
            problems.append(Problem(f"{where}.code", "duplicate_charge", f"charge code {c.code!r} is used twice"))
        seen.add(c.code)
        charge, found = _charge(where, c, prices[i], plan.currency)
        problems += found
        charges.append(charge)
    limits = plan.invoice_limits
    minimum, cap = limits.minimum_commitment, limits.cap_amount
    if minimum is not None and cap is not None and cap < minimum:
        problems.append(Problem("invoice_limits.cap_amount", "invalid_min_max", "cap is below minimum_commitment"))
    keys: set[str] = set()
    for i, f in enumerate(plan.features):
        if f.key in keys:
            problems.append(Problem(f"features[{i}].key", "duplicate_feature", f"feature {f.key!r} is listed twice"))
        keys.add(f.key)
    rules: set[str] = set()
    for i, rule in enumerate(plan.earning):
        if rule.code in rules:
            problems.append(
                Problem(f"earning[{i}].code", "duplicate_rule", f"earning rule {rule.code!r} is listed twice")
            )
        rules.add(rule.code)
    if problems:
        raise InvalidPlan(problems)
    return plan, tuple(charges)


def _currency_problems(code: str) -> list[Problem]:
    try:
        currency_unit(code)
    except InvalidPriceError:
        return [Problem("currency", "unknown_currency", f"unknown currency {code!r}; use an ISO 4217 code")]
    return []


def _price_currency(price: Price) -> str:
    code = getattr(price, "currency", None)
    return code if isinstance(code, str) else price.unit().code


def _charge(where: str, c: ChargeDefinition, price: Price, plan_currency: str) -> tuple[Charge, list[Problem]]:
    problems: list[Problem] = []
    is_flat = isinstance(price, FlatPrice)
    billing: Timing = "in_arrears"
    if c.kind == "flat":
        if not isinstance(price, FlatPrice):
            problems.append(Problem(f"{where}.price.model", "flat_needs_flat_price", "a flat charge needs model flat"))
        else:
            billing = price.billing
        if c.meter is not None or c.group_by is not None:
            problems.append(Problem(f"{where}.meter", "flat_has_meter", "a flat charge prices no meter; remove it"))
    else:
        if is_flat:
            problems.append(
                Problem(f"{where}.kind", "usage_needs_usage_price", "model flat is a recurring fee: use kind flat")
            )
        if c.meter is None:
            problems.append(Problem(f"{where}.meter", "missing_meter", "a usage charge names the meter it prices"))
        if c.billing == "in_advance":
            problems.append(
                Problem(f"{where}.billing", "usage_in_advance", "usage is known only after the period: in_arrears")
            )
    if c.billing is not None and c.billing != billing and c.kind == "flat":
        problems.append(
            Problem(f"{where}.billing", "billing_mismatch", f"the price bills {billing}; make both say the same")
        )
    if c.group_by is not None:
        dimension = getattr(price, "dimension", None)
        if price.model != "dimensional" or dimension != c.group_by:
            problems.append(
                Problem(
                    f"{where}.group_by",
                    "group_by_needs_dimensional",
                    f"group_by {c.group_by!r} needs a dimensional price with dimension {c.group_by!r}",
                )
            )
    price_currency = _price_currency(price)
    if price_currency != plan_currency:
        problems.append(
            Problem(
                f"{where}.price.currency",
                "currency_mismatch",
                f"prices in {price_currency} but the plan bills in {plan_currency}",
            )
        )
    return Charge(c.code, c.kind, c.meter, c.group_by, billing, dict(c.price)), problems


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _version_values(plan: PlanDefinition, charges: tuple[Charge, ...]) -> dict[str, Any]:
    return {
        "name": plan.name or plan.code,
        "currency": plan.currency,
        "interval": plan.interval.value,
        "trial_days": plan.trial_days,
        "charges": _dumps([c.as_json() for c in charges]),
        "invoice_limits": _dumps(plan.invoice_limits.model_dump(mode="json")),
        "features": _dumps([f.as_json() for f in plan.features]),
        "earning": _dumps([r.as_json() for r in plan.earning]),
    }


def create_plan(
    engine: Engine, tenant_id: int, definition: PlanDefinition | Mapping[str, Any], now: datetime
) -> PlanVersion:
    """A new plan with draft version 1."""
    plan, charges = parse_plan(definition)
    at = utc(now)
    try:
        with begin_write(engine) as conn:
            plan_id = conn.execute(
                insert(plans).values(tenant_id=tenant_id, code=plan.code, created_at=at).returning(plans.c.id)
            ).scalar_one()
            conn.execute(
                insert(plan_versions).values(
                    plan_id=plan_id, version=1, status=VersionStatus.DRAFT.value, created_at=at,
                    **_version_values(plan, charges),
                )
            )  # fmt: skip
    except IntegrityError as exc:
        raise AlreadyExists(
            f"plan {plan.code!r} already exists; change it with `tally plan edit TENANT FILE` (a new version)"
        ) from exc
    return get_plan_version(engine, tenant_id, plan.code)


def edit_plan(
    engine: Engine, tenant_id: int, definition: PlanDefinition | Mapping[str, Any], now: datetime
) -> PlanVersion:
    """Save a new definition: overwrites the latest version if it is a draft, else creates draft N+1."""
    plan, charges = parse_plan(definition)
    values = _version_values(plan, charges)
    try:
        _save(engine, tenant_id, plan.code, values, utc(now))
    except IntegrityError as exc:
        raise _concurrent(plan.code) from exc
    return get_plan_version(engine, tenant_id, plan.code)


def _save(engine: Engine, tenant_id: int, code: str, values: dict[str, Any], at: datetime) -> None:
    with begin_write(engine) as conn:
        plan_id, latest = _latest(conn, tenant_id, code)
        if latest.status == VersionStatus.DRAFT.value:
            # The status condition makes a published row unreachable even if it was published a moment ago.
            done = conn.execute(
                update(plan_versions)
                .where(plan_versions.c.id == latest.id, plan_versions.c.status == VersionStatus.DRAFT.value)
                .values(**values)
            ).rowcount
            if not done:
                raise FailedPrecondition(f"plan {code!r} v{latest.version} was just published; retry the edit")
        else:
            _insert_version(conn, plan_id, latest.version + 1, values, at)


def new_draft(engine: Engine, tenant_id: int, code: str, now: datetime) -> PlanVersion:
    """Draft N+1, an exact copy of published version N, to edit."""
    try:
        with begin_write(engine) as conn:
            plan_id, latest = _latest(conn, tenant_id, code)
            if latest.status == VersionStatus.DRAFT.value:
                raise FailedPrecondition(f"plan {code!r} already has draft v{latest.version}; edit or publish it")
            keep = ("name", "currency", "interval", "trial_days", "charges", "invoice_limits", "features", "earning")
            _insert_version(conn, plan_id, latest.version + 1, {k: latest._mapping[k] for k in keep}, utc(now))
    except IntegrityError as exc:
        raise _concurrent(code) from exc
    return get_plan_version(engine, tenant_id, code)


def _insert_version(conn: Connection, plan_id: int, version: int, values: dict[str, Any], at: datetime) -> None:
    conn.execute(
        insert(plan_versions).values(
            plan_id=plan_id, version=version, status=VersionStatus.DRAFT.value, created_at=at, **values
        )
    )


def _concurrent(code: str) -> FailedPrecondition:
    return FailedPrecondition(f"plan {code!r} gained a version concurrently; show it and retry")


def publish_plan(engine: Engine, tenant_id: int, code: str, now: datetime) -> PlanVersion:
    """Publish the latest draft after checking that every meter (and group_by property) exists."""
    draft = get_plan_version(engine, tenant_id, code)
    if draft.status is VersionStatus.PUBLISHED:
        raise FailedPrecondition(
            f"plan {code!r} v{draft.version} is already published and cannot change; "
            f"edit the plan to create draft v{draft.version + 1}"
        )
    problems: list[Problem] = []
    for i, charge in enumerate(draft.charges):
        if charge.meter is None:
            continue
        try:
            meter = get_meter(engine, tenant_id, charge.meter)
        except NotFound:
            problems.append(
                Problem(f"charges[{i}].meter", "unknown_meter", f"no meter {charge.meter!r}; create it first")
            )
            continue
        if charge.group_by is not None and charge.group_by not in meter.group_by:
            problems.append(
                Problem(
                    f"charges[{i}].group_by",
                    "not_a_meter_dimension",
                    f"meter {charge.meter!r} does not group by {charge.group_by!r} "
                    f"(its group_by: {', '.join(meter.group_by) or 'none'})",
                )
            )
    for i, feature in enumerate(draft.features):
        if feature.meter is None:
            continue
        try:
            get_meter(engine, tenant_id, feature.meter)
        except NotFound:
            problems.append(
                Problem(f"features[{i}].meter", "unknown_meter", f"no meter {feature.meter!r}; create it first")
            )
    for i, rule in enumerate(draft.earning):
        try:
            get_meter(engine, tenant_id, rule.meter)
        except NotFound:
            problems.append(
                Problem(f"earning[{i}].meter", "unknown_meter", f"no meter {rule.meter!r}; create it first")
            )
    if problems:
        raise InvalidPlan(problems)
    with begin_write(engine) as conn:
        done = conn.execute(
            update(plan_versions)
            .where(plan_versions.c.id == draft.id, plan_versions.c.status == VersionStatus.DRAFT.value)
            .values(status=VersionStatus.PUBLISHED.value, published_at=utc(now))
        ).rowcount
    if not done:
        raise FailedPrecondition(f"plan {code!r} v{draft.version} was published concurrently")
    return get_plan_version(engine, tenant_id, code, draft.version)


def _latest(conn: Connection, tenant_id: int, code: str) -> tuple[int, Any]:
    plan_id = conn.execute(
        select(plans.c.id).where(plans.c.tenant_id == tenant_id, plans.c.code == code)
    ).scalar_one_or_none()
    if plan_id is None:
        raise NotFound(f"no plan {code!r}; create it with `tally plan create TENANT FILE`")
    latest = conn.execute(
        select(plan_versions).where(plan_versions.c.plan_id == plan_id).order_by(plan_versions.c.version.desc())
    ).first()
    assert latest is not None  # a plan is always created with version 1
    return plan_id, latest


def _version(r: Any, code: str) -> PlanVersion:
    return PlanVersion(
        id=r.id,
        plan_id=r.plan_id,
        code=code,
        version=r.version,
        status=VersionStatus(r.status),
        name=r.name,
        currency=r.currency,
        interval=Interval(r.interval),
        trial_days=r.trial_days,
        charges=tuple(
            Charge(c["code"], c["kind"], c["meter"], c["group_by"], c["billing"], c["price"])
            for c in json.loads(r.charges)
        ),
        invoice_limits=InvoiceLimits.model_validate(json.loads(r.invoice_limits)),
        created_at=stored_utc(r.created_at),
        published_at=None if r.published_at is None else stored_utc(r.published_at),
        features=tuple(FeatureDefinition.model_validate(f) for f in json.loads(r.features)),
        earning=tuple(EarningRule.model_validate(e) for e in json.loads(r.earning)),
    )


def _versions_query(tenant_id: int) -> Any:
    return (
        select(plan_versions, plans.c.code)
        .join(plans, plans.c.id == plan_versions.c.plan_id)
        .where(plans.c.tenant_id == tenant_id)
    )


def get_plan_version(
    engine: Engine, tenant_id: int, code: str, version: int | None = None, published: bool = False
) -> PlanVersion:
    """Version `version` of plan `code`; without it the latest (the latest published if `published`)."""
    query = _versions_query(tenant_id).where(plans.c.code == code)
    if version is not None:
        query = query.where(plan_versions.c.version == version)
    if published:
        query = query.where(plan_versions.c.status == VersionStatus.PUBLISHED.value)
    with engine.connect() as conn:
        row = conn.execute(query.order_by(plan_versions.c.version.desc())).first()
    if row is None:
        which = f"v{version} of plan {code!r}" if version is not None else f"plan {code!r}"
        if published:
            raise NotFound(f"no published {which}; publish it with `tally plan publish TENANT {code}`")
        raise NotFound(f"no {which}; list plans with `tally plan list TENANT`")
    return _version(row, row.code)


def get_plan_version_by_id(engine: Engine, tenant_id: int, version_id: int) -> PlanVersion:
    with engine.connect() as conn:
        row = conn.execute(_versions_query(tenant_id).where(plan_versions.c.id == version_id)).first()
    if row is None:
        raise NotFound(f"no plan version with id {version_id} for this tenant")
    return _version(row, row.code)


def list_plan_versions(engine: Engine, tenant_id: int, code: str) -> list[PlanVersion]:
    with engine.connect() as conn:
        rows = conn.execute(
            _versions_query(tenant_id).where(plans.c.code == code).order_by(plan_versions.c.version)
        ).all()
    if not rows:
        raise NotFound(f"no plan {code!r}; list plans with `tally plan list TENANT`")
    return [_version(r, r.code) for r in rows]


def list_plans(engine: Engine, tenant_id: int) -> list[PlanSummary]:
    with engine.connect() as conn:
        rows = conn.execute(_versions_query(tenant_id).order_by(plans.c.code, plan_versions.c.version)).all()
    by_code: dict[str, list[Any]] = {}
    for r in rows:
        by_code.setdefault(r.code, []).append(r)
    out = []
    for code, versions in by_code.items():
        latest = versions[-1]
        published = [v.version for v in versions if v.status == VersionStatus.PUBLISHED.value]
        out.append(
            PlanSummary(code, latest.name, latest.version, VersionStatus(latest.status), max(published, default=None))
        )
    return out


__all__ = [
    "Charge",
    "ChargeDefinition",
    "EarningRule",
    "FeatureDefinition",
    "InvalidPlan",
    "PlanDefinition",
    "PlanSummary",
    "PlanVersion",
    "Timing",
    "VersionStatus",
    "create_plan",
    "edit_plan",
    "get_plan_version",
    "get_plan_version_by_id",
    "list_plan_versions",
    "list_plans",
    "new_draft",
    "parse_plan",
    "publish_plan",
]
