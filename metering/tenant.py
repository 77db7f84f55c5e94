"""Tenants and their API keys.

A key is shown once, at creation, and stored only as its SHA-256. Keys carry
scopes (`ingest`, `read`, `admin`) so a product service can hold a key that can
send usage and nothing else.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from metering.errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied, Unauthenticated
from metering.tables import api_keys, tenants
from metering.transactions import begin_write

SCOPES = ("ingest", "read", "admin")
KEY_PREFIX = "tly_"


@dataclass(frozen=True, slots=True)
class Tenant:
    id: int
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: resolved from the API key on every RPC."""

    tenant_id: int
    key_id: int
    scopes: frozenset[str]

    def require(self, scope: str) -> None:
        if scope not in self.scopes and "admin" not in self.scopes:
            raise PermissionDenied(f"this API key lacks the {scope!r} scope; create a key with --scope {scope}")


def create_tenant(engine: Engine, name: str) -> Tenant:
    name = name.strip()
    if not name or len(name) > 128:
        raise InvalidArgument("tenant name must be 1 to 128 characters")
    now = datetime.now(UTC)
    try:
        with begin_write(engine) as conn:
            tenant_id = conn.execute(
                insert(tenants).values(name=name, created_at=now).returning(tenants.c.id)
            ).scalar_one()
    except IntegrityError as exc:
        raise AlreadyExists(f"tenant {name!r} already exists") from exc
    return Tenant(tenant_id, name, now)


def get_tenant(engine: Engine, name: str) -> Tenant:
    with engine.connect() as conn:
        row = conn.execute(select(tenants).where(tenants.c.name == name)).one_or_none()
    if row is None:
        raise NotFound(f"no tenant named {name!r}; create it with `tally tenant create {name}`")
    return Tenant(row.id, row.name, row.created_at)


def list_tenants(engine: Engine) -> list[Tenant]:
    with engine.connect() as conn:
        rows = conn.execute(select(tenants).order_by(tenants.c.name)).all()
    return [Tenant(r.id, r.name, r.created_at) for r in rows]


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(engine: Engine, tenant_id: int, scopes: tuple[str, ...] = SCOPES) -> tuple[int, str]:
    """Returns (key id, the key). The key is not stored and cannot be shown again."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise InvalidArgument(f"scopes must be some of {', '.join(SCOPES)}; got {', '.join(unknown) or 'none'}")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    try:
        with begin_write(engine) as conn:
            key_id = conn.execute(
                insert(api_keys)
                .values(
                    tenant_id=tenant_id,
                    prefix=key[:12],
                    key_sha256=hash_key(key),
                    scopes=",".join(s for s in SCOPES if s in scopes),
                    created_at=datetime.now(UTC),
                )
                .returning(api_keys.c.id)
            ).scalar_one()
    except IntegrityError as exc:  # an unknown tenant id (foreign key)
        raise NotFound(f"no tenant with id {tenant_id}") from exc
    return key_id, key


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    id: int
    prefix: str
    scopes: str
    created_at: datetime
    revoked_at: datetime | None


def list_api_keys(engine: Engine, tenant_id: int) -> list[ApiKeyInfo]:
    with engine.connect() as conn:
        rows = conn.execute(select(api_keys).where(api_keys.c.tenant_id == tenant_id).order_by(api_keys.c.id)).all()
    return [ApiKeyInfo(r.id, r.prefix, r.scopes, r.created_at, r.revoked_at) for r in rows]


def revoke_api_key(engine: Engine, tenant_id: int, key_id: int) -> None:
    """Revoke a key of this tenant. Servers stop accepting it within KeyStore's cache TTL (5 s)."""
    with begin_write(engine) as conn:
        done = conn.execute(
            update(api_keys)
            .where(api_keys.c.id == key_id, api_keys.c.tenant_id == tenant_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        ).rowcount
    if not done:
        raise NotFound(f"no active API key {key_id} for this tenant; see `tally apikey list TENANT`")


class KeyStore:
    """Resolves bearer keys to principals, caching hits for `ttl_s`.

    The cache keeps authentication off the database on every RPC; its TTL bounds
    how long a revoked key keeps working. Misses are not cached, so a key
    created a moment ago works at once.
    """

    def __init__(self, engine: Engine, ttl_s: float = 5.0) -> None:
        self._engine = engine
        self._ttl_s = ttl_s
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, Principal]] = {}

    def authenticate_call(self, metadata: Any) -> Principal:
        """The principal of a gRPC call, from its `authorization: Bearer <key>` metadata."""
        authorization = None
        for key, value in metadata or ():
            if key == "authorization":
                authorization = value if isinstance(value, str) else value.decode()
        return self.authenticate(authorization)

    def authenticate(self, authorization: str | None, max_age_s: float | None = None) -> Principal:
        """The key's principal, from a cache entry no older than `max_age_s` (default: the TTL).

        Open streams pass a shorter age than the TTL so that, re-checked every second, a revoked
        key's stream ends within the documented 5 s too."""
        if not authorization:
            raise Unauthenticated("missing API key: send metadata 'authorization: Bearer <key>'")
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Unauthenticated("malformed authorization metadata: expected 'Bearer <key>'")
        digest = hash_key(key.strip())
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(digest)
        age_max = self._ttl_s if max_age_s is None else min(max_age_s, self._ttl_s)
        if hit is not None and now - hit[0] < age_max:
            return hit[1]
        with self._engine.connect() as conn:
            row = conn.execute(
                select(api_keys.c.id, api_keys.c.tenant_id, api_keys.c.scopes).where(
                    api_keys.c.key_sha256 == digest, api_keys.c.revoked_at.is_(None)
                )
            ).one_or_none()
        if row is None:
            raise Unauthenticated("unknown or revoked API key; create one with `tally apikey create`")
        principal = Principal(row.tenant_id, row.id, frozenset(row.scopes.split(",")))
        with self._lock:
            self._cache[digest] = (now, principal)
        return principal
