"""The discriminated union of leaf price models (those that do not contain another price)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from rating.flat import FlatPrice
from rating.outcome import KpiContingentPrice, PerOutcomePrice, ValueSharePrice
from rating.package import PackagePrice
from rating.per_unit import PerUnitPrice
from rating.percentage import GraduatedPercentagePrice, PercentagePrice
from rating.sla import SlaCreditPrice
from rating.tiers import GraduatedPrice, VolumePrice

OutcomePrice = Annotated[PerOutcomePrice | ValueSharePrice | KpiContingentPrice, Field(discriminator="kind")]

LeafPrice = Annotated[
    PerUnitPrice
    | PackagePrice
    | GraduatedPrice
    | VolumePrice
    | PercentagePrice
    | GraduatedPercentagePrice
    | FlatPrice
    | OutcomePrice
    | SlaCreditPrice,
    Field(discriminator="model"),
]

__all__ = ["LeafPrice", "OutcomePrice"]
