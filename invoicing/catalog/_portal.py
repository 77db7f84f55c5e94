"""The key that signs a tenant's customer portal links: one random secret per tenant, in the database.

Why a row per tenant rather than one server-wide setting (`TALLY_PORTAL_SECRET`): every server process
against the same database verifies the same links without sharing configuration (ingest and API servers
are stateless and run side by side); a link survives a restart; and rotating one tenant's key (a leaked
link, a customer who left) revokes exactly that tenant's links and portal sessions, no one else's. The
secret must be stored as it is: a digest of it could not sign anything. Whoever reads this table can sign
links, as whoever reads the webhook endpoints can sign webhooks; the database is the trust boundary.

Signing and checking links is the edge's business (`tally/console/portal/_links.py`): this module only
keeps the key.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from invoicing.catalog._period import stored_utc, utc
from invoicing.tables import portal_secrets
from metering.transactions import begin_write

SECRET_BYTES = 32


@dataclass(frozen=True, slots=True)
class PortalSecret:
    tenant_id: int
    secret: bytes
    #: 1 when first made, +1 at each rotation: a portal session remembers the version its link was signed
    #: with and ends when it changes.
    version: int
    rotated_at: datetime


def _read(engine: Engine, tenant_id: int) -> PortalSecret | None:
    p = portal_secrets.c
    with engine.connect() as conn:
        row = conn.execute(select(portal_secrets).where(p.tenant_id == tenant_id)).first()
    if row is None:
        return None
    return PortalSecret(tenant_id, bytes(row.secret), int(row.version), stored_utc(row.rotated_at))


def portal_secret(engine: Engine, tenant_id: int, now: datetime) -> PortalSecret:
    """The tenant's signing key, made on first use."""
    found = _read(engine, tenant_id)
    if found is not None:
        return found
    try:
        with begin_write(engine) as conn:
            conn.execute(
                insert(portal_secrets).values(
                    tenant_id=tenant_id, secret=secrets.token_bytes(SECRET_BYTES), version=1, created_at=utc(now),
                    rotated_at=utc(now),
                )
            )  # fmt: skip
    except IntegrityError:  # another process made it first: use theirs
        pass
    made = _read(engine, tenant_id)
    assert made is not None
    return made


def find_portal_secret(engine: Engine, tenant_id: int) -> PortalSecret | None:
    """The tenant's signing key, or None when it never made a link (nothing it could have signed is valid)."""
    return _read(engine, tenant_id)


def rotate_portal_secret(engine: Engine, tenant_id: int, now: datetime) -> PortalSecret:
    """A new signing key: every link and portal session of the tenant made before it stops working."""
    portal_secret(engine, tenant_id, now)
    p = portal_secrets.c
    with begin_write(engine) as conn:
        conn.execute(
            update(portal_secrets)
            .where(p.tenant_id == tenant_id)
            .values(secret=secrets.token_bytes(SECRET_BYTES), version=p.version + 1, rotated_at=utc(now))
        )
    rotated = _read(engine, tenant_id)
    assert rotated is not None
    return rotated


__all__ = ["SECRET_BYTES", "PortalSecret", "find_portal_secret", "portal_secret", "rotate_portal_secret"]
