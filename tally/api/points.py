"""Points: units, currency→points rates, and the accrual of points earned from usage.

Units and rates are the ledger's (`invoicing.ledger.unit`); every refusal there already names its field
(`code`, `scale`, `rate`, `valid_from`, ...), so this module only reads the wire: decimals stay strings
until the ledger's parser reads them (plain notation only: `1e-3` is refused), instants come from
Timestamps, lists page by keyset. `AccruePoints` runs `invoicing.earning.accrue_points`; the same run
goes on in the background every `TALLY_PLATFORM__POINTS_INTERVAL_S` seconds (`setup_points`), over the
billing periods an event may still arrive for (ingest's `event_age_max_days`).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from invoicing.earning import AccrualRun, Earned, accrue_all, accrue_points
from invoicing.ledger import Ledger
from invoicing.ledger.unit import PointsUnit, Rate, RateKey, from_us, get_points_unit, is_currency
from metering.errors import InvalidArgument, NotFound
from metering.tenant import Principal
from rating.rounding import RoundingMode
from tally.api.base import (
    ADMIN,
    READ,
    ApiBase,
    Periodic,
    Worker,
    decimal_str,
    decode_token,
    encode_token,
    instant,
    now,
    page_size,
    required,
    rpc,
    str_token,
    timestamp,
)
from tally.api.wallets import Units
from tally.settings import Settings
from tally.v1 import billing_pb2 as pb

#: Credits listed in one AccruePoints response (all are counted in `credited` and `totals`).
CREDITS_SHOWN_MAX = 1000
#: How far ahead of the server's clock `as_of` may be (ingest accepts events this far ahead too).
AS_OF_AHEAD_MAX = timedelta(minutes=5)
_FORGED = "not a token this API issued; pass next_page_token unchanged"


def points_unit_pb(u: PointsUnit) -> pb.PointsUnit:
    return pb.PointsUnit(code=u.code, scale=u.scale, name=u.name)


def rate_pb(r: Rate) -> pb.ConversionRate:
    return pb.ConversionRate(
        currency=r.currency,
        points_unit=r.points_unit,
        rate=decimal_str(r.rate),
        rounding=r.rounding.value,
        valid_from=timestamp(from_us(r.valid_from_us)),
        valid_to=None if r.valid_to_us is None else timestamp(from_us(r.valid_to_us)),
    )


def credit_pb(c: Earned, units: Units) -> pb.PointsCredit:
    return pb.PointsCredit(
        customer=c.customer, subscription_id=c.subscription_id, plan=c.plan, plan_version=c.plan_version,
        rule=c.rule, meter=c.meter, unit=c.unit,
        period_start=timestamp(c.period_start), period_end=timestamp(c.period_end), through=timestamp(c.through),
        quantity=decimal_str(c.quantity), points=units.text(c.points, c.unit), earned=units.text(c.earned, c.unit),
        capped=c.capped, transfer_id=c.transfer_id,
    )  # fmt: skip


def _rate_token(token: str) -> RateKey | None:
    """A ListConversionRates token: the last rate's (currency, points unit, valid_from µs)."""
    key = decode_token(token)
    if key is None:
        return None
    if (
        not isinstance(key, list) or len(key) != 3 or not all(isinstance(k, str) and len(k) <= 32 for k in key[:2])
        or not isinstance(key[2], int) or isinstance(key[2], bool) or not -(2**62) <= key[2] <= 2**62
    ):  # fmt: skip
        raise InvalidArgument(f"page_token: {_FORGED}")
    return key[0], key[1], key[2]


def _rounding(text: str) -> RoundingMode:
    if not text:
        return RoundingMode.DOWN
    try:
        return RoundingMode(text)
    except ValueError:
        names = ", ".join(m.value for m in RoundingMode)
        raise InvalidArgument(f"rounding: {text[:40]!r} is not a rounding rule; one of {names}") from None


class PointsRpcs(ApiBase):
    settings: Settings

    def setup_points(self) -> list[Worker]:
        """The accrual worker: every pass credits what earning rules owe in the periods an event may still
        arrive for (ingest accepts events `event_age_max_days` old), and tells the caches whose wallets moved."""
        lookback = timedelta(days=self.settings.ingest.event_age_max_days + 1)

        def job(moment: datetime) -> list[AccrualRun]:
            return accrue_all(self.engine, moment, since=moment - lookback)

        def credited(runs: list[AccrualRun]) -> None:
            for run in runs:
                for customer in sorted({c.customer for c in run.credits}):
                    self.changed(run.tenant_id, customer)

        return [Periodic("points-accrual", self.settings.platform.points_interval_s, job, credited)]

    # --- units -----------------------------------------------------------------------------------------------
    @rpc(ADMIN)
    def DefinePointsUnit(self, principal: Principal, request: pb.DefinePointsUnitRequest) -> pb.PointsUnit:
        code = required(request.code, "code")
        ledger = Ledger(self.engine, principal.tenant_id)
        ledger.define_points_unit(code, request.scale, request.name)  # refusals name code, scale or name
        with self.engine.connect() as conn:
            return points_unit_pb(get_points_unit(conn, principal.tenant_id, code))

    @rpc(READ)
    def ListPointsUnits(self, principal: Principal, request: pb.ListPointsUnitsRequest) -> pb.ListPointsUnitsResponse:
        size = page_size(request.page_size)
        found = Ledger(self.engine, principal.tenant_id).points_units(str_token(request.page_token), size + 1)
        token = encode_token(found[size - 1].code) if len(found) > size else ""
        return pb.ListPointsUnitsResponse(units=[points_unit_pb(u) for u in found[:size]], next_page_token=token)

    # --- rates -----------------------------------------------------------------------------------------------
    @rpc(ADMIN)
    def SetConversionRate(self, principal: Principal, request: pb.SetConversionRateRequest) -> pb.ConversionRate:
        currency = required(request.currency, "currency")
        points_unit = required(request.points_unit, "points_unit")
        if not request.rate:
            raise InvalidArgument(f'rate is required: points per one {currency}, an exact decimal such as "100"')
        valid_from = instant(request, "valid_from")
        if valid_from is None:
            raise InvalidArgument("valid_from is required: the instant the rate starts to apply")
        valid_to = instant(request, "valid_to")
        rounding = _rounding(request.rounding)
        ledger = Ledger(self.engine, principal.tenant_id)
        return rate_pb(ledger.set_rate(currency, points_unit, request.rate, valid_from, valid_to, rounding))

    @rpc(READ)
    def ListConversionRates(
        self, principal: Principal, request: pb.ListConversionRatesRequest
    ) -> pb.ListConversionRatesResponse:
        size = page_size(request.page_size)
        after = _rate_token(request.page_token)
        if request.currency and not is_currency(request.currency):
            raise InvalidArgument(f"currency: {request.currency[:40]!r} is not a known currency; use an ISO 4217 code")
        ledger = Ledger(self.engine, principal.tenant_id)
        if request.points_unit:
            with self.engine.connect() as conn:
                try:
                    get_points_unit(conn, principal.tenant_id, request.points_unit)
                except NotFound as exc:
                    raise NotFound(f"points_unit: {exc}") from None
        found = ledger.rates(request.currency or None, request.points_unit or None, after, size + 1)
        last = found[size - 1] if len(found) > size else None
        token = "" if last is None else encode_token([last.currency, last.points_unit, last.valid_from_us])
        return pb.ListConversionRatesResponse(rates=[rate_pb(r) for r in found[:size]], next_page_token=token)

    # --- earning ---------------------------------------------------------------------------------------------
    @rpc(ADMIN)
    def AccruePoints(self, principal: Principal, request: pb.AccruePointsRequest) -> pb.AccruePointsResponse:
        at = now()
        as_of = instant(request, "as_of", at)
        assert as_of is not None  # a default is given
        if as_of > at + AS_OF_AHEAD_MAX:
            raise InvalidArgument(
                f"as_of: {as_of.isoformat()} is in the future; usage is known up to now (at most 5 minutes ahead)"
            )
        since = instant(request, "since")
        if since is not None and since >= as_of:
            raise InvalidArgument(f"since: {since.isoformat()} must be before as_of {as_of.isoformat()}")
        run = accrue_points(self.engine, principal.tenant_id, as_of, since=since)
        for customer in sorted({c.customer for c in run.credits}):
            self.changed(principal.tenant_id, customer)
        units = Units(Ledger(self.engine, principal.tenant_id))
        return pb.AccruePointsResponse(
            through=timestamp(run.through),
            checked=run.checked,
            credits=[credit_pb(c, units) for c in run.credits[:CREDITS_SHOWN_MAX]],
            credited=len(run.credits),
            totals=[pb.UnitAmount(unit=u, amount=units.text(n, u)) for u, n in sorted(run.totals().items())],
            problems=list(run.problems),
        )


__all__ = ["PointsRpcs", "credit_pb", "points_unit_pb", "rate_pb"]
