"""Signed, expiring portal links: `/portal/<token>` opens one customer's portal until the link expires.

    token = base64url(payload) "." base64url(HMAC-SHA256(key, "tally-portal-link\\0" + base64url(payload)))

The payload is canonical JSON: version `v`, tenant id `t`, customer id `c`, expiry `e` (Unix seconds), a random
nonce `n` (so no two links are the same, and a link names nothing guessable), the signing key's version `k`, and
the return URL `r`. The key is the tenant's own (`invoicing.catalog.portal_secret`, one random key per tenant in
the database; that module says why). Checking a link:

1. the token is parsed (bounded, strict base64url and JSON, every field of the right type) — else refused;
2. the tenant's key is looked up (none: the tenant never made a link) and the MAC recomputed and compared in
   constant time (`hmac.compare_digest`) — a changed character anywhere is refused (`LinkRefused`, "altered");
3. only then is the expiry checked: a genuine but expired link says so ("expired": ask for a new link).

A rotated key fails step 2 for every earlier link ("altered" and "revoked" are indistinguishable by design: a
link of a rotated key is simply not one this tenant signs any more). Nothing here touches HTTP: the portal pages
call `verify`, the API calls `create_link`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Engine

from invoicing.catalog import find_portal_secret, get_customer, portal_secret
from metering.errors import InvalidArgument, PermissionDenied
from metering.text import control_problem

PATH_PREFIX = "/portal/"
TTL_MAX_S = 7 * 24 * 3600
TTL_DEFAULT_S = 3600
RETURN_URL_MAX = 2000
#: Longest token accepted: a link with the longest return URL is about 2,900 characters.
TOKEN_CHARS_MAX = 4096
_DOMAIN = b"tally-portal-link\x00"
_FIELDS = {"v": int, "t": int, "c": int, "e": int, "n": str, "k": int, "r": str}


class LinkRefused(PermissionDenied):
    """A portal link that opens nothing; `why` is "altered" (not signed by the tenant's current key, or not a
    link at all) or "expired"."""

    def __init__(self, why: str, message: str) -> None:
        super().__init__(message)
        self.why = why


@dataclass(frozen=True, slots=True)
class Claims:
    tenant_id: int
    customer_id: int
    expires_at: datetime
    nonce: str
    key_version: int
    return_url: str


@dataclass(frozen=True, slots=True)
class PortalLink:
    path: str  # /portal/<token>
    expires_at: datetime
    customer: str  # external id


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    if not text or len(text) % 4 == 1 or not all(ch.isalnum() or ch in "-_" for ch in text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, body: str) -> bytes:
    return hmac.new(key, _DOMAIN + body.encode("ascii"), hashlib.sha256).digest()


def sign(key: bytes, claims: Claims) -> str:
    """The token of `claims` under `key`."""
    payload = {
        "v": 1, "t": claims.tenant_id, "c": claims.customer_id, "e": int(claims.expires_at.timestamp()),
        "n": claims.nonce, "k": claims.key_version, "r": claims.return_url,
    }  # fmt: skip
    body = _b64(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode())
    return f"{body}.{_b64(_mac(key, body))}"


_ALTERED = "This portal link is not valid: it may have been changed or revoked."


def parse(token: str) -> tuple[Claims, str, bytes]:
    """(claims, signed body, MAC) of a token, unverified: only its shape is checked. Refused ("altered")
    when it is not a token this server could have made."""
    try:
        if len(token) > TOKEN_CHARS_MAX or token.count(".") != 1:
            raise ValueError("shape")
        body, mac_text = token.split(".")
        mac = _unb64(mac_text)
        data: Any = json.loads(_unb64(body), parse_constant=_no_constant)
        if not isinstance(data, dict) or set(data) != set(_FIELDS) or len(mac) != hashlib.sha256().digest_size:
            raise ValueError("fields")
        for name, kind in _FIELDS.items():
            value = data[name]
            if not isinstance(value, kind) or isinstance(value, bool):
                raise ValueError(name)
        if data["v"] != 1 or not 0 < data["t"] < 2**31 or not 0 < data["c"] < 2**31 or not 0 < data["e"] < 2**33:
            raise ValueError("range")
        claims = Claims(data["t"], data["c"], datetime.fromtimestamp(data["e"], UTC), data["n"], data["k"], data["r"])
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError, OverflowError):
        raise LinkRefused("altered", _ALTERED) from None
    return claims, body, mac


def _no_constant(name: str) -> Any:
    raise ValueError(name)


def verify(engine: Engine, token: str, now: datetime) -> Claims:
    """The claims of a link this tenant signed with its current key and that has not expired; else
    `LinkRefused` ("altered" or "expired")."""
    claims, body, mac = parse(token)
    key = find_portal_secret(engine, claims.tenant_id)
    expected = _mac(key.secret if key is not None else secrets.token_bytes(32), body)  # same work either way
    if key is None or not hmac.compare_digest(mac, expected) or claims.key_version != key.version:
        raise LinkRefused("altered", _ALTERED)
    if claims.expires_at <= now:
        raise LinkRefused(
            "expired",
            f"This portal link expired at {claims.expires_at:%Y-%m-%d %H:%M} UTC: links are valid for a limited time "
            "so that an old email cannot open your account.",
        )
    return claims


def check_return_url(url: str) -> str:
    """An absolute http(s) URL (the portal's "back" link), or ""."""
    if not url:
        return ""
    problem = control_problem(url, "return_url")
    if problem is not None:
        raise InvalidArgument(problem)
    if len(url) > RETURN_URL_MAX:
        raise InvalidArgument(f"return_url is {len(url)} characters; at most {RETURN_URL_MAX}")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(ch.isspace() for ch in url):
        raise InvalidArgument(f"return_url {url[:80]!r}: an absolute http(s) URL such as https://example.com/account")
    return url


def create_link(
    engine: Engine, tenant_id: int, customer: str, now: datetime, *, ttl_s: int = 0, return_url: str = ""
) -> PortalLink:
    """A link opening `customer`'s portal until now + `ttl_s` (1 s to 7 days; 0: one hour)."""
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int) or not 0 <= ttl_s <= TTL_MAX_S:
        raise InvalidArgument(f"ttl_seconds {ttl_s}: 1 to {TTL_MAX_S:,} seconds (7 days), or 0 for one hour")
    back = check_return_url(return_url)
    found = get_customer(engine, tenant_id, customer)  # NotFound names it
    key = portal_secret(engine, tenant_id, now)
    expires = now.replace(microsecond=0) + timedelta(seconds=ttl_s or TTL_DEFAULT_S)
    token = sign(key.secret, Claims(tenant_id, found.id, expires, secrets.token_urlsafe(12), key.version, back))
    return PortalLink(PATH_PREFIX + token, expires, found.external_id)


__all__ = [
    "PATH_PREFIX",
    "TTL_DEFAULT_S",
    "TTL_MAX_S",
    "Claims",
    "LinkRefused",
    "PortalLink",
    "check_return_url",
    "create_link",
    "parse",
    "sign",
    "verify",
]
