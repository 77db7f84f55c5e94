"""Webhooks: the tenant's domain events POSTed to its endpoints, signed, in order, retried.

Why it works the way it does:
- Each endpoint keeps a cursor, `delivered_sequence`: every event at or below it was delivered or
  given up on (dead), or did not match the endpoint's type filter. Only the next matching event is
  ever queued, so delivery is in sequence order per endpoint: a failing event holds back the later
  ones until it succeeds or is dead, and then the endpoint moves on.
- Every attempt is a `webhook_deliveries` row. A row is created `pending` (queued) and becomes
  `succeeded`, `failed` (a new pending row is queued for the retry, due after the backoff) or
  `dead` (the last attempt failed). A dispatcher claims a pending row by moving its
  `next_attempt_at` a lease ahead with a compare-and-set update, so two dispatchers (two servers,
  or the server and `tally webhook deliver`) never send the same attempt twice; one that crashes
  mid-send leaves the row pending and it is sent again once the lease is over (at-least-once).
- The queue of an endpoint is its pending rows in (sequence, id) order, and only the head is sent:
  replays and retries keep sequence order too.
- The signature is Stripe's scheme: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
  The timestamp is signed, so a captured request cannot be replayed later: receivers reject a
  stale `t` (`verify_signature`).
- A URL is accepted only if httpx can send it unambiguously (`_sendable`: at creation and again
  before every attempt). A stored URL that fails the rules (a row older than them, or edited in the
  database) makes its delivery dead at once. Anything else that goes wrong in one attempt is a failed
  attempt on that delivery, and one endpoint's failure never ends the pass for the others.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import socket
import threading
import time
import unicodedata
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
from sqlalchemy import Connection, Engine, exists, func, insert, select, update

from invoicing.catalog import stored_utc
from invoicing.events._outbox import DomainEvent, check_patterns, head, matches, read_events
from invoicing.platform_tables import outbox_events, outbox_heads, webhook_deliveries, webhook_endpoints
from metering.errors import FailedPrecondition, InvalidArgument, NotFound
from metering.tables import tenants
from metering.transactions import begin_write

log = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"
SIGNATURE_HEADER = "Tally-Signature"
SEQUENCE_HEADER = "Tally-Event-Sequence"
URL_MAX = 2048
REPLAY_MAX = 10_000
#: How long one dispatcher pass keeps serving one endpoint before yielding to the next pass.
PASS_SECONDS_MAX = 10.0
#: Statuses of a delivery row. `pending` is queued (or being sent right now).
PENDING, SUCCEEDED, FAILED, DEAD = "pending", "succeeded", "failed", "dead"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How attempts are made and spaced; `tally.settings.PlatformSettings` fills it in the server."""

    max_attempts: int = 12
    backoff_base_s: float = 1.0
    backoff_max_s: float = 3600.0
    timeout_s: float = 5.0
    parallel: int = 8
    #: Refuse endpoints whose host is (or resolves to) a loopback, private, link-local or reserved
    #: address: on a shared deployment a tenant must not reach the operator's internal network.
    block_private: bool = False

    def delay(self, attempt: int) -> timedelta:
        """The wait after failed attempt number `attempt` (1-based): base, 2×base, 4×base, ... capped."""
        return timedelta(seconds=min(self.backoff_base_s * 2 ** (attempt - 1), self.backoff_max_s))

    @property
    def lease(self) -> timedelta:
        """How long a claimed attempt belongs to its dispatcher: longer than any POST can take."""
        return timedelta(seconds=self.timeout_s * 2 + 30)


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: int
    tenant_id: int
    url: str
    types: tuple[str, ...]
    secret: str  # only ever shown to the caller that created it
    enabled: bool
    delivered_sequence: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    endpoint_id: int
    sequence: int
    type: str
    attempt: int
    status: str
    http_status: int
    error: str
    replay: bool
    attempted_at: datetime | None
    next_attempt_at: datetime | None


@dataclass
class PassSummary:
    """What one dispatcher pass did (for logs, the CLI and tests)."""

    attempts: int = 0
    succeeded: int = 0
    failed: int = 0
    dead: int = 0

    def add(self, other: PassSummary) -> None:
        self.attempts += other.attempts
        self.succeeded += other.succeeded
        self.failed += other.failed
        self.dead += other.dead


# --- endpoints -------------------------------------------------------------------------------------------------
def private_address(host: str) -> str | None:
    """The first address `host` resolves to that is not a public unicast one, else None.

    Unresolvable hosts are not private (delivery will fail and be logged like any other failure).
    """
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if not address.is_global or address.is_multicast:
            return str(address)
    return None


#: Ports a URL's scheme implies when it names none.
DEFAULT_PORTS = {"http": 80, "https": 443}
#: DNS limits: a name of at most 253 characters, each dot-separated label 1 to 63.
HOST_MAX, LABEL_MAX = 253, 63
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.")


def _shown(url: str) -> str:
    """`url` for an error message: escaped (control characters visible) and cut short."""
    return repr(url if len(url) <= 100 else url[:100] + "...")


def _bad_character(url: str) -> str | None:
    """Why a character of `url` makes it unsendable or ambiguous, else None."""
    for position, char in enumerate(url):
        category = unicodedata.category(char)
        if char.isspace() or category.startswith("C"):  # Cc control, Cf format, Cs surrogate, Co, Cn
            kind = {"Cc": "a control", "Cf": "an invisible format"}.get(category) or (
                "a whitespace" if char.isspace() else "a surrogate, private-use or unassigned"
            )
            return f"contains {kind} character (U+{ord(char):04X}) at position {position}"
        if char == "\\":
            return f"contains a backslash at position {position} (browsers read it as '/'; percent-encode it as %5C)"
        if char == "#":
            return "has a #fragment, which is never sent to the server; remove it"
    return None


def _bad_host(raw_host: str, bracketed: bool) -> str | None:
    """Why the host httpx would connect to (ASCII, IDNA-encoded) is not a plain DNS name or IP, else None."""
    if bracketed:
        try:
            address = ipaddress.IPv6Address(raw_host)
        except ValueError:
            return f"[{raw_host}] is not an IPv6 address"
        return f"[{raw_host}] has an IPv6 zone id; use a routable address" if address.scope_id else None
    if not set(raw_host) <= _HOST_CHARS:
        return f"host {raw_host!r} may only hold letters, digits, '-', '_' and '.' (IDNA-encoded)"
    name = raw_host.removesuffix(".")  # a trailing dot (fully qualified name) is fine
    labels = name.split(".")
    if len(name) > HOST_MAX or any(not 0 < len(label) <= LABEL_MAX for label in labels):
        return f"host {raw_host!r} is not a DNS name (at most {HOST_MAX} characters, labels of 1 to {LABEL_MAX})"
    for label in labels:
        if label.startswith("xn--"):
            try:
                httpx.URL(f"http://{label}/").host  # noqa: B018 - decodes the label; raises when it is not IDNA
            except Exception:  # idna's own errors: any failure means the label is not IDNA
                return f"host {raw_host!r} has a label ({label!r}) that is not valid IDNA"
    last = labels[-1]
    if last.isdigit() or last.startswith("0x"):  # resolvers read this as an IPv4 address in some form
        try:
            ipaddress.IPv4Address(name)
        except ValueError:
            return f"host {raw_host!r} looks numeric but is not a dotted-quad IPv4 address (like 203.0.113.7)"
    return None


def _sendable(url: str, field: str = "url") -> httpx.URL:
    """`url` parsed as httpx will send it, or InvalidArgument naming `field` and why it cannot be sent.

    The rules (also applied before every delivery, so a row edited in the database cannot be sent):
    at most URL_MAX characters; no control, format or whitespace character anywhere (nor a backslash or a
    #fragment); scheme http or https; a host; no user:password@; a port from 1 to 65535; a host that
    survives IDNA encoding and is a DNS name or an IP address; and httpx and urllib must read the same
    scheme, host, port, path and query out of it (a URL two parsers disagree on is refused).
    """
    if not url:
        raise InvalidArgument(f"{field} is required: the http(s) URL events are POSTed to")
    if len(url) > URL_MAX:
        raise InvalidArgument(f"{field} is {len(url)} characters; at most {URL_MAX}")
    if (bad := _bad_character(url)) is not None:
        raise InvalidArgument(f"{field}: {_shown(url)} {bad}")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on a bad port
        hostname = parts.hostname
    except ValueError as exc:
        raise InvalidArgument(f"{field}: {_shown(url)} is not a valid URL ({exc})") from None
    if parts.scheme not in DEFAULT_PORTS or not hostname:
        raise InvalidArgument(f"{field}: {_shown(url)} must be an http:// or https:// URL with a host")
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        raise InvalidArgument(
            f"{field}: {_shown(url)} must not carry credentials (user:password@); authenticate the request "
            "with the endpoint's signing secret"
        )
    if port == 0:
        raise InvalidArgument(f"{field}: {_shown(url)} is not a valid URL (port 0; ports are 1 to 65535)")
    try:
        sent = httpx.URL(url)
        host, raw_host = sent.host, sent.raw_host.decode("ascii")
    except Exception as exc:  # httpx.InvalidURL, idna errors, ...: httpx could not send it
        raise InvalidArgument(f"{field}: {_shown(url)} is not a valid URL ({exc})") from None
    if (bad := _bad_host(raw_host, parts.netloc.startswith("["))) is not None:
        raise InvalidArgument(f"{field}: {_shown(url)}: {bad}")
    # httpx lowercases the host and IDNA-encodes it (raw_host) or decodes an ACE one (host); urllib only lowercases.
    same_host = hostname in (host, raw_host)
    ours = (parts.scheme, port or DEFAULT_PORTS[parts.scheme], unquote(parts.path) or "/",
            unquote(parts.query))  # fmt: skip
    theirs = (sent.scheme, sent.port or DEFAULT_PORTS.get(sent.scheme, 0), sent.path,
              unquote(sent.query.decode("ascii")))  # fmt: skip
    if not same_host or ours != theirs or sent.userinfo:
        raise InvalidArgument(
            f"{field}: {_shown(url)} is ambiguous: URL parsers disagree on where it points; write it plainly"
        )
    return sent


def _host(url: httpx.URL) -> str:
    """The host httpx connects to (IDNA-encoded): the name resolved for the private-address check."""
    return url.raw_host.decode("ascii")


def check_url(url: str, field: str = "url", block_private: bool = False) -> str:
    """`url` when events can be POSTed to it, else InvalidArgument naming `field` (rules: `_sendable`)."""
    host = _host(_sendable(url, field))
    if block_private and (found := private_address(host)) is not None:
        raise InvalidArgument(
            f"{field}: {host!r} is a private or loopback address ({found}); this server only "
            "delivers to public hosts (TALLY_PLATFORM__WEBHOOK_BLOCK_PRIVATE)"
        )
    return url


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_hex(32)


def _endpoint(r: Any) -> Endpoint:
    return Endpoint(
        r.id, r.tenant_id, r.url, tuple(json.loads(r.types)), r.secret, bool(r.enabled),
        int(r.delivered_sequence), stored_utc(r.created_at),
    )  # fmt: skip


def create_endpoint(
    engine: Engine,
    tenant_id: int,
    url: str,
    types: Sequence[str],
    after_sequence: int,
    now: datetime,
    block_private: bool = False,
) -> Endpoint:
    """A new endpoint with a fresh secret; it gets events after `after_sequence` (0: only new ones)."""
    check_url(url, block_private=block_private)
    patterns = check_patterns(types)
    current = head(engine, tenant_id)
    if after_sequence < 0:
        raise InvalidArgument(f"after_sequence must be 0 (only new events) or a sequence, got {after_sequence}")
    if after_sequence > current:
        raise InvalidArgument(
            f"after_sequence {after_sequence} is past the latest event ({current}); use 0 for only new events"
        )
    start = after_sequence or current
    with begin_write(engine) as conn:
        values = {
            "tenant_id": tenant_id, "url": url, "types": json.dumps(patterns), "secret": new_secret(),
            "enabled": True, "delivered_sequence": start, "created_at": now.astimezone(UTC),
        }  # fmt: skip
        endpoint_id = conn.execute(
            insert(webhook_endpoints).values(**values).returning(webhook_endpoints.c.id)
        ).scalar_one()
    return get_endpoint(engine, tenant_id, endpoint_id)


def get_endpoint(engine: Engine | Connection, tenant_id: int, endpoint_id: int) -> Endpoint:
    query = select(webhook_endpoints).where(
        webhook_endpoints.c.tenant_id == tenant_id, webhook_endpoints.c.id == endpoint_id
    )
    if isinstance(engine, Connection):
        row = engine.execute(query).one_or_none()
    else:
        with engine.connect() as conn:
            row = conn.execute(query).one_or_none()
    if row is None:
        raise NotFound(f"no webhook endpoint {endpoint_id}; list them with `tally webhook list TENANT`")
    return _endpoint(row)


def list_endpoints(engine: Engine, tenant_id: int) -> list[Endpoint]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(webhook_endpoints).where(webhook_endpoints.c.tenant_id == tenant_id).order_by(webhook_endpoints.c.id)
        ).all()
    return [_endpoint(r) for r in rows]


def disable_endpoint(engine: Engine, tenant_id: int, endpoint_id: int) -> Endpoint:
    """Nothing more is sent to it (queued attempts stay in the log, unsent). Repeating is harmless."""
    with begin_write(engine) as conn:
        done = conn.execute(
            update(webhook_endpoints)
            .where(webhook_endpoints.c.tenant_id == tenant_id, webhook_endpoints.c.id == endpoint_id)
            .values(enabled=False)
        ).rowcount
    if not done:
        raise NotFound(f"no webhook endpoint {endpoint_id}; list them with `tally webhook list TENANT`")
    return get_endpoint(engine, tenant_id, endpoint_id)


# --- the delivery log ------------------------------------------------------------------------------------------
def _opt(value: datetime | None) -> datetime | None:
    return None if value is None else stored_utc(value)


def _delivery(r: Any) -> Delivery:
    return Delivery(
        r.id, r.endpoint_id, int(r.sequence), r.type, r.attempt, r.status, r.http_status, r.error, bool(r.replay),
        _opt(r.attempted_at), _opt(r.next_attempt_at),
    )  # fmt: skip


def list_deliveries(
    engine: Engine, tenant_id: int, endpoint_id: int, before_id: int | None = None, limit: int = 100
) -> tuple[list[Delivery], int | None]:
    """Attempts of one endpoint, newest first, and the id to pass as `before_id` for the next page."""
    get_endpoint(engine, tenant_id, endpoint_id)
    d = webhook_deliveries.c
    query = select(webhook_deliveries).where(d.tenant_id == tenant_id, d.endpoint_id == endpoint_id)
    if before_id is not None:
        query = query.where(d.id < before_id)
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(d.id.desc()).limit(limit + 1)).all()
    page = [_delivery(r) for r in rows[:limit]]
    return page, (page[-1].id if len(rows) > limit else None)


def replay(
    engine: Engine, tenant_id: int, endpoint_id: int, after_sequence: int, to_sequence: int, now: datetime
) -> int:
    """Queue the endpoint's events in (after_sequence, to_sequence] again (0 = up to the latest).

    The cursor does not move back: the replayed events are sent in order, marked `replay`, beside the
    normal flow. Returns how many events were queued (those matching the endpoint's types).
    """
    endpoint = get_endpoint(engine, tenant_id, endpoint_id)
    if not endpoint.enabled:
        raise FailedPrecondition(f"webhook endpoint {endpoint_id} is disabled; create a new endpoint to receive events")
    latest = head(engine, tenant_id)
    if after_sequence < 0:
        raise InvalidArgument(f"after_sequence must be 0 or more, got {after_sequence}")
    to = to_sequence or latest
    if to_sequence < 0 or to > latest:
        raise InvalidArgument(f"to_sequence must be 0 (the latest) or at most {latest}, got {to_sequence}")
    if to <= after_sequence:
        raise InvalidArgument(f"to_sequence ({to}) must be greater than after_sequence ({after_sequence})")
    if to - after_sequence > REPLAY_MAX:
        raise InvalidArgument(
            f"a replay covers at most {REPLAY_MAX} events; narrow after_sequence..to_sequence "
            f"({after_sequence}..{to}) and replay in parts"
        )
    o = outbox_events.c
    now = now.astimezone(UTC)
    with begin_write(engine) as conn:
        rows = conn.execute(
            select(o.sequence, o.type)
            .where(o.tenant_id == tenant_id, o.sequence > after_sequence, o.sequence <= to)
            .order_by(o.sequence)
        ).all()
        queued = [
            _pending(tenant_id, endpoint_id, int(r.sequence), r.type, 1, True, now)
            for r in rows
            if matches(r.type, endpoint.types)
        ]
        if queued:
            conn.execute(insert(webhook_deliveries), queued)
    return len(queued)


def _pending(
    tenant_id: int, endpoint_id: int, sequence: int, type_: str, attempt: int, replay: bool, due: datetime
) -> dict[str, Any]:
    return {
        "tenant_id": tenant_id, "endpoint_id": endpoint_id, "sequence": sequence, "type": type_,
        "attempt": attempt, "status": PENDING, "http_status": 0, "error": "", "replay": replay,
        "attempted_at": None, "next_attempt_at": due,
    }  # fmt: skip


# --- signing ---------------------------------------------------------------------------------------------------
def _unix(moment: datetime | float) -> int:
    return int(moment.timestamp()) if isinstance(moment, datetime) else int(moment)


def signature(secret: str, body: bytes, at: datetime | float) -> str:
    """The `Tally-Signature` header value for `body` sent at `at`."""
    t = _unix(at)
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def verify_signature(
    secret: str, header: str, body: bytes | str, now: datetime | float, tolerance_s: int = 300
) -> bool:
    """True when `header` (a `Tally-Signature` value) signs exactly `body` with `secret`, recently.

    `body` must be the raw request body, before any JSON parsing. The timestamp must be within
    `tolerance_s` of `now` (either way), so a captured request cannot be replayed later. Any `v1`
    in the header may match (several are sent while a secret is rotated).
    """
    raw = body.encode() if isinstance(body, str) else body
    t: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            t = int(value)
        elif key == "v1" and value:
            candidates.append(value)
    if t is None or not candidates or abs(_unix(now) - t) > tolerance_s:
        return False
    expected = hmac.new(secret.encode(), f"{t}.".encode() + raw, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, c) for c in candidates)


def payload(event: DomainEvent, tenant: str) -> bytes:
    """The POST body: canonical JSON, so the bytes signed are the bytes sent."""
    body = {
        "sequence": event.sequence,
        "type": event.type,
        "customer": event.customer,
        "occurred_at": event.occurred_at.astimezone(UTC).isoformat(),
        "data": event.data,
        "tenant": tenant,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


# --- the dispatcher --------------------------------------------------------------------------------------------
Clock = Callable[[], datetime]


@dataclass
class _Context:
    engine: Engine
    policy: RetryPolicy
    client: httpx.Client
    clock: Clock
    should_stop: Callable[[], bool]
    tenant_names: dict[int, str] = field(default_factory=dict)


def _writer(engine: Engine) -> Connection:
    """A connection whose transactions take SQLite's write lock at BEGIN (PostgreSQL: row locks)."""
    return engine.connect().execution_options(sqlite_begin="IMMEDIATE")


def _advance(ctx: _Context, endpoint_id: int) -> None:
    """Queue the endpoint's next matching event when its normal flow has nothing queued.

    The endpoint row is locked first (FOR UPDATE; SQLite's write lock), so two dispatchers never
    queue the same event twice; events that do not match the filter move the cursor past them.
    """
    e, d = webhook_endpoints.c, webhook_deliveries.c
    normal_queued = select(d.id).where(d.endpoint_id == endpoint_id, d.status == PENDING, d.replay.is_(False))
    with ctx.engine.connect() as conn:
        if conn.execute(normal_queued.limit(1)).first() is not None:
            return  # the common case while an attempt waits for its retry: no write lock taken
    with _writer(ctx.engine) as conn, conn.begin():
        row = conn.execute(
            select(e.tenant_id, e.types, e.enabled, e.delivered_sequence).where(e.id == endpoint_id).with_for_update()
        ).one()
        if not row.enabled:
            return
        if conn.execute(normal_queued.limit(1)).first() is not None:
            return
        types = json.loads(row.types)
        cursor = start = int(row.delivered_sequence)
        while True:
            events, last = read_events(conn, row.tenant_id, cursor, 500, types)
            if events:
                first = events[0]
                cursor = first.sequence - 1
                conn.execute(
                    insert(webhook_deliveries),
                    [_pending(row.tenant_id, endpoint_id, first.sequence, first.type, 1, False, ctx.clock())],
                )
                break
            if last == cursor:
                break
            cursor = last
        if cursor != start:
            conn.execute(update(webhook_endpoints).where(e.id == endpoint_id).values(delivered_sequence=cursor))


def _claim(ctx: _Context, endpoint_id: int) -> Delivery | None:
    """The endpoint's queue head if it is due, claimed for this dispatcher for one lease."""
    d, e = webhook_deliveries.c, webhook_endpoints.c
    now = ctx.clock()
    with ctx.engine.connect() as conn:
        row = conn.execute(
            select(webhook_deliveries)
            .where(d.endpoint_id == endpoint_id, d.status == PENDING)
            .order_by(d.sequence, d.id)
            .limit(1)
        ).first()
    if row is None or stored_utc(row.next_attempt_at) > now:
        return None
    with _writer(ctx.engine) as conn, conn.begin():
        claimed = conn.execute(
            update(webhook_deliveries)
            .where(
                d.id == row.id,
                d.status == PENDING,
                d.next_attempt_at <= now,
                exists().where(e.id == d.endpoint_id, e.enabled.is_(True)),
            )
            .values(attempted_at=now, next_attempt_at=now + ctx.policy.lease)
        ).rowcount
    return _delivery(row) if claimed else None


def _event(engine: Engine, tenant_id: int, sequence: int) -> DomainEvent:
    events, _ = read_events(engine, tenant_id, sequence - 1, 1)
    return events[0]


#: Longest error text kept in the delivery log.
ERROR_MAX = 500


def _failure(exc: BaseException) -> str:
    return (f"{type(exc).__name__}: {exc}"[:ERROR_MAX]).strip() or type(exc).__name__


def _post(ctx: _Context, endpoint: Endpoint, event: DomainEvent, url: httpx.URL) -> tuple[int, str]:
    """(HTTP status, error text): status 0 when no response came back."""
    body = payload(event, ctx.tenant_names.get(endpoint.tenant_id, ""))
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: signature(endpoint.secret, body, ctx.clock()),
        SEQUENCE_HEADER: str(event.sequence),
        "User-Agent": "Tally-Webhooks/1",
    }
    host = _host(url)
    if ctx.policy.block_private and (found := private_address(host)) is not None:
        # Checked again at delivery: a name can be re-pointed at an internal address after creation.
        return 0, f"refused: {host} resolves to a private or loopback address ({found})"
    try:
        response = ctx.client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return 0, _failure(exc)
    if 200 <= response.status_code < 300:
        return response.status_code, ""
    text = response.text[:200].strip()
    return response.status_code, f"HTTP {response.status_code}" + (f": {text}" if text else "")


def _attempt(ctx: _Context, endpoint: Endpoint, delivery: Delivery) -> tuple[int, str, bool]:
    """Make one delivery attempt: (HTTP status, error text, final). Never raises.

    `final` is True when no later attempt could succeed (the stored URL cannot be sent: a row from
    before the URL rules, or edited in the database): the delivery is dead at once. Anything else that
    goes wrong (reading the event, signing, any exception out of httpx) is a failed attempt, retried
    on the normal schedule.
    """
    try:
        url = _sendable(endpoint.url)
    except InvalidArgument as exc:
        return 0, f"refused: {exc}"[:ERROR_MAX], True
    try:
        return (*_post(ctx, endpoint, _event(ctx.engine, endpoint.tenant_id, delivery.sequence), url), False)
    except Exception as exc:  # one delivery's failure is recorded on it, never raised into the pass
        log.warning("webhook %s: attempt %s of event %s raised", endpoint.id, delivery.attempt, delivery.sequence,
                    exc_info=True)  # fmt: skip
        return 0, _failure(exc), False


def _record(
    ctx: _Context, endpoint: Endpoint, delivery: Delivery, http_status: int, error: str, final: bool = False
) -> str:
    """Write the attempt's outcome, queue the retry or move the cursor, in one transaction."""
    d, e = webhook_deliveries.c, webhook_endpoints.c
    now = ctx.clock()
    ok = 200 <= http_status < 300
    last = final or delivery.attempt >= ctx.policy.max_attempts
    status = SUCCEEDED if ok else (DEAD if last else FAILED)
    retry_at = now + ctx.policy.delay(delivery.attempt) if status == FAILED else None
    with _writer(ctx.engine) as conn, conn.begin():
        mine = conn.execute(
            update(webhook_deliveries)
            .where(d.id == delivery.id, d.status == PENDING)
            .values(status=status, http_status=http_status, error=error, attempted_at=now, next_attempt_at=retry_at)
        ).rowcount
        if not mine:  # another dispatcher took it over after our lease ran out; its outcome stands
            return status
        if retry_at is not None:
            retry = _pending(
                endpoint.tenant_id, endpoint.id, delivery.sequence, delivery.type, delivery.attempt + 1,
                delivery.replay, retry_at,
            )  # fmt: skip
            conn.execute(insert(webhook_deliveries), [retry])
        elif not delivery.replay:
            conn.execute(
                update(webhook_endpoints)
                .where(e.id == endpoint.id, e.delivered_sequence < delivery.sequence)
                .values(delivered_sequence=delivery.sequence)
            )
    if status == DEAD:
        log.warning("webhook %s: event %s is dead after %s attempts (%s)", endpoint.id, delivery.sequence,
                    delivery.attempt, error)  # fmt: skip
    return status


def _serve_endpoint(ctx: _Context, endpoint: Endpoint, budget: int, summary: PassSummary) -> None:
    """Send the endpoint's due attempts in queue order, until one is not due (or `budget` or the pass's
    time is spent: a slow endpoint must not hold the next pass back for the others). Counts into `summary`."""
    deadline = time.monotonic() + PASS_SECONDS_MAX
    while summary.attempts < budget and not ctx.should_stop() and time.monotonic() < deadline:
        _advance(ctx, endpoint.id)
        delivery = _claim(ctx, endpoint.id)
        if delivery is None:
            break
        http_status, error, final = _attempt(ctx, endpoint, delivery)
        status = _record(ctx, endpoint, delivery, http_status, error, final)
        summary.attempts += 1
        if status == SUCCEEDED:
            summary.succeeded += 1
        elif status == DEAD:
            summary.dead += 1
        else:
            summary.failed += 1
            break  # the rest of this endpoint waits for the retry: order is kept


def _serve_isolated(ctx: _Context, endpoint: Endpoint, budget: int) -> PassSummary:
    """`_serve_endpoint`, whose failure (the database, a bug) ends this endpoint's turn only, never the pass.

    An attempt claimed but not recorded stays pending and is sent again once its lease is over.
    """
    summary = PassSummary()
    try:
        _serve_endpoint(ctx, endpoint, budget, summary)
    except Exception:
        log.exception("webhook %s (tenant %s): serving the endpoint failed; the pass goes on", endpoint.id,
                      endpoint.tenant_id)  # fmt: skip
    return summary


def _candidates(engine: Engine, tenant_id: int | None) -> tuple[list[Endpoint], dict[int, str]]:
    """Enabled endpoints that may have work: events past their cursor, or queued attempts."""
    e, d, h = webhook_endpoints.c, webhook_deliveries.c, outbox_heads.c
    queued = exists().where(d.endpoint_id == e.id, d.status == PENDING)
    query = (
        select(webhook_endpoints, tenants.c.name.label("tenant_name"))
        .join(tenants, tenants.c.id == e.tenant_id)
        .outerjoin(outbox_heads, h.tenant_id == e.tenant_id)
        .where(e.enabled.is_(True), (func.coalesce(h.last_sequence, 0) > e.delivered_sequence) | queued)
        .order_by(e.id)
    )
    if tenant_id is not None:
        query = query.where(e.tenant_id == tenant_id)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    endpoints = []
    for r in rows:
        try:
            endpoints.append(_endpoint(r))
        except Exception:  # a row edited into nonsense must not hold back the other endpoints
            log.exception("webhook %s (tenant %s): unreadable endpoint row skipped", r.id, r.tenant_id)
    return endpoints, {r.tenant_id: r.tenant_name for r in rows}


def deliver_once(
    engine: Engine,
    now: datetime | None = None,
    *,
    policy: RetryPolicy | None = None,
    tenant_id: int | None = None,
    client: httpx.Client | None = None,
    budget_per_endpoint: int = 100,
    should_stop: Callable[[], bool] = lambda: False,
) -> PassSummary:
    """One dispatcher pass: every due attempt of every enabled endpoint (of one tenant, if given).

    `now` fixes the clock for the pass (tests, replays of a schedule); None uses the real clock.
    Endpoints are served in parallel (`policy.parallel`), each one's queue in order.
    """
    policy = policy or RetryPolicy()
    endpoints, names = _candidates(engine, tenant_id)
    summary = PassSummary()
    if not endpoints:
        return summary
    fixed = now.astimezone(UTC) if now is not None else None

    def clock() -> datetime:
        return fixed if fixed is not None else datetime.now(UTC)

    own = client is None
    http = client or httpx.Client(timeout=policy.timeout_s, follow_redirects=False)
    ctx = _Context(engine, policy, http, clock, should_stop, names)
    try:
        # `_serve_isolated` never raises: one endpoint's failure cannot end the pass for the others.
        if len(endpoints) == 1 or policy.parallel <= 1:
            for ep in endpoints:
                summary.add(_serve_isolated(ctx, ep, budget_per_endpoint))
        else:
            with ThreadPoolExecutor(min(policy.parallel, len(endpoints)), thread_name_prefix="webhook") as pool:
                for result in pool.map(lambda ep: _serve_isolated(ctx, ep, budget_per_endpoint), endpoints):
                    summary.add(result)
    finally:
        if own:
            http.close()
    return summary


class Dispatcher:
    """The background worker: a pass, then a pause of `interval_s` (or until `wake()`), until stopped."""

    def __init__(self, engine: Engine, policy: RetryPolicy, interval_s: float) -> None:
        self.engine = engine
        self.policy = policy
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="webhook-dispatcher", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.policy.timeout_s + 10)

    def _loop(self) -> None:
        with httpx.Client(timeout=self.policy.timeout_s, follow_redirects=False) as client:
            while not self._stop.is_set():
                self._wake.clear()
                try:
                    deliver_once(self.engine, policy=self.policy, client=client, should_stop=self._stop.is_set)
                except Exception:  # a database hiccup must not end the worker; the next pass retries
                    log.exception("webhook dispatcher pass failed")
                self._wake.wait(self.interval_s)


__all__ = [
    "DEAD",
    "FAILED",
    "PENDING",
    "SIGNATURE_HEADER",
    "SUCCEEDED",
    "Delivery",
    "Dispatcher",
    "Endpoint",
    "PassSummary",
    "RetryPolicy",
    "check_url",
    "create_endpoint",
    "deliver_once",
    "disable_endpoint",
    "get_endpoint",
    "list_deliveries",
    "list_endpoints",
    "payload",
    "replay",
    "signature",
    "verify_signature",
]
