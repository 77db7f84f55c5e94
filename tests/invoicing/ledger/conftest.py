"""A tenant's Ledger on each database, with a controllable clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from invoicing.ledger import Ledger
from tests.conftest import TenantKey

T0 = datetime(2026, 11, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ledger(engine: Engine, tenant: TenantKey, clock: Clock) -> Ledger:
    led = Ledger(engine, tenant.tenant_id, clock)
    led.define_points_unit("pts", 0)
    return led
