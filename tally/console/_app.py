"""What every console and portal page shares: sessions, sign-in, CSRF, rendering, errors, formatting.

A page is an `async def page(ctx: Page) -> Response` registered with `Console.page(...)`. The wrapper
finds the signed-in session (a signed, HttpOnly, SameSite=Strict cookie naming a server-side session),
re-checks the API key the session was opened with (so a revoked key ends its sessions within the key
cache's 5 s), refuses a read key on an admin action, reads and checks the form of a POST (its CSRF token
must be the session's), and turns a domain error into a page with the status the one table
(`tally.errors.STATUS`) gives it: another tenant's invoice is simply not found, a 404.

Domain work runs through `Page.run`, which is `BillingServicer.run`: the same thread pool and request
budget the gRPC and HTTP API use, calling the same domain functions.

Sessions live in this process's memory (`SessionStore`): nothing secret is in the cookie (only a signed
random id), a sign-out or a restart ends them, and they expire after `idle_s` without a request or
`absolute_s` after sign-in. The portal (tally/console/portal) opens its own kind of session ("portal",
for one customer) in the same store, under its own cookie and path.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import jinja2
from itsdangerous import BadSignature, URLSafeTimedSerializer
from markupsafe import Markup
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from metering.errors import InvalidArgument, TallyError
from metering.tenant import Principal
from tally.errors import STATUS, outcome

log = logging.getLogger(__name__)

#: The console's URL prefix; the portal's is PORTAL.
PREFIX = "/console"
PORTAL = "/portal"
FINANCE_COOKIE = "tally_console"
PORTAL_COOKIE = "tally_portal"
#: A form larger than this is refused before it is parsed (bulk selections of a page's ids fit easily).
FORM_BYTES_MAX = 256 * 1024
FORM_FIELDS_MAX = 2000
#: Page sizes offered by list pages.
PAGE_SIZE = 50


# --- sessions ------------------------------------------------------------------------------------------------
@dataclass
class Session:
    """One signed-in browser. `authorization` (finance) is the key it signed in with, re-checked on each
    request and never sent back to the browser; `subject` is what the header shows (the tenant, or the
    portal's customer)."""

    sid: str
    kind: str  # "finance" | "portal"
    tenant_id: int
    scopes: frozenset[str]
    subject: str
    authorization: str | None
    csrf: str
    created: float
    seen: float
    absolute_s: float
    data: dict[str, Any] = field(default_factory=dict)
    flashes: list[tuple[str, str]] = field(default_factory=list)

    @property
    def can_write(self) -> bool:
        """An admin key: the only one that may change anything (a read key never sees an action button)."""
        return "admin" in self.scopes

    def flash(self, message: str, level: str = "success") -> None:
        """A message shown once, on the next page this session renders (level: success | error | info)."""
        self.flashes.append((level, message))

    def take_flashes(self) -> list[tuple[str, str]]:
        out, self.flashes = self.flashes, []
        return out


class SessionStore:
    """Sessions by id, in memory, bounded: the oldest are dropped past `max_sessions`."""

    def __init__(self, idle_s: float = 30 * 60, absolute_s: float = 8 * 3600, max_sessions: int = 10_000) -> None:
        self.idle_s = idle_s
        self.absolute_s = absolute_s
        self.max_sessions = max_sessions
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}

    def create(
        self,
        kind: str,
        tenant_id: int,
        scopes: Iterable[str],
        subject: str,
        authorization: str | None = None,
        *,
        absolute_s: float | None = None,
        data: dict[str, Any] | None = None,
    ) -> Session:
        now = time.monotonic()
        session = Session(
            sid=secrets.token_urlsafe(32),
            kind=kind,
            tenant_id=tenant_id,
            scopes=frozenset(scopes),
            subject=subject,
            authorization=authorization,
            csrf=secrets.token_urlsafe(32),
            created=now,
            seen=now,
            absolute_s=self.absolute_s if absolute_s is None else min(absolute_s, self.absolute_s),
            data=dict(data or {}),
        )
        with self._lock:
            self._prune(now)
            self._sessions[session.sid] = session
        return session

    def get(self, sid: str, kind: str) -> Session | None:
        now = time.monotonic()
        with self._lock:
            session = self._sessions.get(sid)
            if session is None or session.kind != kind:
                return None
            if now - session.seen > self.idle_s or now - session.created > session.absolute_s:
                del self._sessions[sid]
                return None
            session.seen = now
            return session

    def drop(self, sid: str) -> None:
        with self._lock:
            self._sessions.pop(sid, None)

    def __len__(self) -> int:
        return len(self._sessions)

    def _prune(self, now: float) -> None:
        stale = [s.sid for s in self._sessions.values() if now - s.seen > self.idle_s or now - s.created > s.absolute_s]
        for sid in stale:
            del self._sessions[sid]
        while len(self._sessions) >= self.max_sessions:
            del self._sessions[min(self._sessions.values(), key=lambda s: s.seen).sid]


# --- formatting (one way for every figure) ---------------------------------------------------------------------
def money(value: Decimal | int | str | None, currency: str = "") -> str:
    """An exact amount with thousands separators at the currency's places, and its code: "1,234.50 USD".
    Same notation as the PDF (`invoicing.documents.format_decimal`); never rounded, zeros only added."""
    from invoicing.documents import format_decimal
    from rating.unit import currency as currency_unit

    if value is None or value == "":
        return ""
    places = 0
    if currency:
        try:
            places = currency_unit(currency).scale
        except Exception:  # a points unit: no fixed places
            places = 0
    text = format_decimal(Decimal(value), places)
    return f"{text} {currency}" if currency else text


def number(value: Decimal | int | str | None) -> str:
    """An exact quantity with thousands separators."""
    from invoicing.documents import format_decimal

    if value is None or value == "":
        return ""
    return format_decimal(Decimal(value))


def day(moment: datetime | None) -> str:
    """An instant's UTC calendar day, ISO (2026-03-01): sortable and unambiguous in every locale."""
    if moment is None:
        return ""
    return moment.astimezone(UTC).strftime("%Y-%m-%d")


def instant(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _dt_attr(moment: datetime | None) -> str:
    return "" if moment is None else moment.astimezone(UTC).isoformat()


# --- the page context ----------------------------------------------------------------------------------------
class Form:
    """A POST form (urlencoded), read once and bounded; `text` trims and bounds one field."""

    def __init__(self, data: FormData) -> None:
        self.data = data

    def get(self, name: str, default: str = "") -> str:
        value = self.data.get(name)
        return default if value is None else str(value)

    def text(self, name: str, max_chars: int = 500, *, required: bool = False, label: str = "") -> str:
        value = self.get(name).strip()
        if required and not value:
            raise InvalidArgument(f"{label or name} is required")
        if len(value) > max_chars:
            raise InvalidArgument(f"{label or name} is {len(value)} characters; at most {max_chars}")
        return value

    def getlist(self, name: str) -> list[str]:
        return [str(v) for v in self.data.getlist(name)]


async def read_form(request: Request) -> Form:
    """The urlencoded body as a Form (no multipart: console forms carry no files)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("application/x-www-form-urlencoded", ""):
        raise InvalidArgument("the form must be sent as application/x-www-form-urlencoded")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_BYTES_MAX:
            raise InvalidArgument(f"the form is larger than {FORM_BYTES_MAX:,} bytes")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=FORM_FIELDS_MAX)
    except (UnicodeDecodeError, ValueError):
        raise InvalidArgument("the form is not valid UTF-8 urlencoded text") from None
    fields: list[tuple[str, Any]] = list(pairs)
    return Form(FormData(fields))


@dataclass
class Page:
    """What a page handler gets: the request, its session, the key's principal and (POST) the checked form."""

    console: Console
    request: Request
    session: Session
    principal: Principal | None
    form: Form | None = None

    @property
    def tenant_id(self) -> int:
        return self.session.tenant_id

    @property
    def engine(self) -> Any:
        return self.console.billing.engine

    async def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Domain work on the API's pool under the API's request budget (`BillingServicer.run`)."""
        if kwargs:
            import functools

            fn = functools.partial(fn, **kwargs)
        return await self.console.billing.run(fn, *args)

    def render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        return self.console.render(self.request, template, session=self.session, status=status, **context)

    def redirect(self, path: str, message: str | None = None, level: str = "success") -> RedirectResponse:
        """After a POST: see-other to `path` (same origin only), with a message for the next page."""
        if message:
            self.session.flash(message, level)
        return RedirectResponse(safe_path(path, self.console.home), status_code=303)

    def query(self, name: str, default: str = "", max_chars: int = 200) -> str:
        value = self.request.query_params.get(name, default).strip()
        if len(value) > max_chars:
            raise InvalidArgument(f"{name}: at most {max_chars} characters")
        return value

    def back(self, fallback: str) -> str:
        """Where an action's form said to return (a same-origin path), or `fallback`."""
        target = self.form.get("back") if self.form is not None else ""
        return safe_path(target, fallback)


def _referring_path(request: Request) -> str:
    """The page a form was posted from (same site only), else the console's home: where a refused action
    returns when its form named no `back`."""
    referer = urlsplit(request.headers.get("referer", ""))
    if referer.netloc and referer.netloc != request.url.netloc:
        return PREFIX + "/"
    path = referer.path + (f"?{referer.query}" if referer.query else "")
    return safe_path(path, PREFIX + "/")


def safe_path(target: str, fallback: str) -> str:
    """`target` when it is a path on this site (no scheme, no host, no `//`), else `fallback`: a redirect
    target from a form or query never sends the browser elsewhere."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return fallback
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return fallback
    return target


Handler = Callable[[Page], Awaitable[Response]]


@dataclass(frozen=True)
class NavItem:
    label: str
    path: str
    #: Pages under this prefix mark the item current (aria-current="page").
    prefix: str


class Console:
    """The console's shared state: the billing servicer (engine, keys, pool), templates, sessions, signing.

    One per server; `tally.console.console_routes` builds it and the routes of the finance pages and the
    portal around it."""

    def __init__(
        self,
        billing: Any,
        *,
        secret: bytes | None = None,
        sessions: SessionStore | None = None,
        secure_cookies: bool = False,
    ) -> None:
        self.billing = billing
        self.secret = secret or _secret()
        self.sessions = sessions or SessionStore()
        self.secure_cookies = secure_cookies
        self.home = f"{PREFIX}/"
        self.nav: list[NavItem] = []
        self.templates = jinja2.Environment(
            loader=jinja2.PackageLoader("tally.console", "templates"),
            autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,
        )
        self.templates.filters.update(money=money, number=number, day=day, instant=instant, dt_attr=_dt_attr)
        self.templates.globals.update(PREFIX=PREFIX, PORTAL=PORTAL, qs=query_string)

    # --- signing ---------------------------------------------------------------------------------------
    def serializer(self, salt: str) -> URLSafeTimedSerializer:
        """A signer for `salt`'s purpose (cookies, the sign-in form, portal links): a token signed for one
        purpose is refused by every other."""
        return URLSafeTimedSerializer(self.secret, salt=salt)

    def add_nav(self, label: str, path: str, prefix: str | None = None) -> None:
        """A link in the finance console's navigation (the portal adds its finance-side queue here)."""
        self.nav.append(NavItem(label, path, prefix or path))

    # --- cookies ---------------------------------------------------------------------------------------
    def set_cookie(self, response: Response, name: str, session: Session, path: str) -> None:
        value = self.serializer(f"cookie:{name}").dumps(session.sid)
        response.set_cookie(
            name,
            value,
            max_age=int(session.absolute_s),
            path=path,
            httponly=True,
            samesite="strict",
            secure=self.secure_cookies,
        )

    def clear_cookie(self, response: Response, name: str, path: str) -> None:
        response.delete_cookie(name, path=path, httponly=True, samesite="strict", secure=self.secure_cookies)

    def session_of(self, request: Request, name: str, kind: str) -> Session | None:
        raw = request.cookies.get(name)
        if not raw:
            return None
        try:
            sid = self.serializer(f"cookie:{name}").loads(raw, max_age=int(self.sessions.absolute_s))
        except BadSignature:
            return None
        if not isinstance(sid, str):
            return None
        return self.sessions.get(sid, kind)

    # --- rendering -------------------------------------------------------------------------------------
    def render(
        self, request: Request, template: str, *, session: Session | None = None, status: int = 200, **context: Any
    ) -> HTMLResponse:
        path = request.url.path
        body = self.templates.get_template(template).render(
            request=request,
            path=path,
            session=session,
            nav=self.nav,
            csrf=session.csrf if session is not None else "",
            flashes=session.take_flashes() if session is not None else [],
            **context,
        )
        return HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)

    def error_page(self, request: Request, exc: BaseException, session: Session | None) -> HTMLResponse:
        """A domain error as a page: its status from the one table, its message (never internals)."""
        code, message = outcome(exc)
        if code == "internal":
            log.error("internal error on %s", request.url.path, exc_info=exc)
        status = STATUS[code].http
        titles = {404: "Not found", 403: "Not allowed", 409: "Not possible now", 400: "Check the request"}
        return self.render(
            request,
            "error.html",
            session=session,
            status=status,
            title=titles.get(status, "Something went wrong"),
            message=message,
            code=code,
        )

    # --- pages -----------------------------------------------------------------------------------------
    def page(self, handler: Handler, *, admin: bool = False) -> Callable[[Request], Awaitable[Response]]:
        """A finance page or action: signed in (else to the sign-in page), the key still valid, an admin key
        for `admin` actions, and for POST a form whose CSRF token is the session's."""
        return self._guarded(handler, FINANCE_COOKIE, "finance", admin=admin)

    def portal_page(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """A portal page or action: a portal session (opened from a signed portal link by the portal's own
        entry route), and for POST a form whose CSRF token is the session's. `Page.principal` is None:
        the session itself (tenant and customer) is the authority."""
        return self._guarded(handler, PORTAL_COOKIE, "portal")

    def _guarded(
        self, handler: Handler, cookie: str, kind: str, *, admin: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            session = self.session_of(request, cookie, kind)
            if session is None:
                if kind == "finance" and request.method == "GET":
                    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                    return RedirectResponse(f"{PREFIX}/sign-in?next={quote(target)}", status_code=303)
                message = (
                    "Your session has ended; sign in again and repeat the action."
                    if kind == "finance"
                    else "This portal session has ended or the link is not valid; open a new portal link."
                )
                return self.render(
                    request, "error.html", status=401, title="Signed out", message=message, code="unauthenticated"
                )
            principal = None
            if session.authorization is not None:
                try:
                    principal = self.billing.keys.authenticate(session.authorization)
                except TallyError:
                    self.sessions.drop(session.sid)
                    response = RedirectResponse(f"{PREFIX}/sign-in?ended=1", status_code=303)
                    self.clear_cookie(response, cookie, PREFIX if kind == "finance" else PORTAL)
                    return response
                session.scopes = principal.scopes
            ctx = Page(self, request, session, principal)
            try:
                if request.method == "POST":
                    ctx.form = await read_form(request)
                    if not hmac.compare_digest(ctx.form.get("csrf_token"), session.csrf):
                        return self.render(
                            request,
                            "error.html",
                            session=session,
                            status=403,
                            title="Form expired",
                            message="The form's security token does not match this session; reload the page and "
                            "try again.",
                            code="permission_denied",
                        )
                if admin and not session.can_write:
                    return self.render(
                        request,
                        "error.html",
                        session=session,
                        status=403,
                        title="Not allowed",
                        message="This action needs an admin key; you signed in with a read key.",
                        code="permission_denied",
                    )
                return await handler(ctx)
            except Exception as exc:
                if request.method == "POST" and isinstance(exc, TallyError) and exc.code in _SHOWN_ON_PAGE:
                    # A refused action goes back to the page it came from, with the reason on top.
                    return ctx.redirect(ctx.back(_referring_path(request)), str(exc), "error")
                return self.error_page(request, exc, session)

        endpoint.__name__ = getattr(handler, "__name__", "page")
        return endpoint


#: Errors of an action a user can act on: shown on the page the form was on rather than an error page.
_SHOWN_ON_PAGE = ("invalid_argument", "failed_precondition", "already_exists")

#: Every page: no framing by other sites, no sniffing, no referrer leaking ids, nothing loaded from elsewhere.
SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
}


def query_string(request: Request, **changes: Any) -> str:
    """The current query string with `changes` applied (None removes a key): links for pages and filters."""
    params = dict(request.query_params)
    for k, v in changes.items():
        if v is None or v == "":
            params.pop(k, None)
        else:
            params[k] = str(v)
    if not params:
        return ""
    return "?" + "&".join(f"{quote(k)}={quote(v)}" for k, v in params.items())


def _secret() -> bytes:
    """TALLY_CONSOLE_SECRET when set (signed links and cookies then survive a restart and agree across
    processes), else a random secret for this process."""
    configured = os.environ.get("TALLY_CONSOLE_SECRET")
    if configured:
        if len(configured) < 32:
            raise InvalidArgument("TALLY_CONSOLE_SECRET: at least 32 characters of random text")
        return configured.encode()
    return secrets.token_bytes(32)


def markup(html: str) -> Markup:
    """Trusted HTML built by this package (charts), passed to templates unescaped."""
    return Markup(html)


__all__ = [
    "FINANCE_COOKIE",
    "PAGE_SIZE",
    "PORTAL",
    "PORTAL_COOKIE",
    "PREFIX",
    "SECURITY_HEADERS",
    "Console",
    "Form",
    "NavItem",
    "Page",
    "Session",
    "SessionStore",
    "day",
    "instant",
    "markup",
    "money",
    "number",
    "query_string",
    "read_form",
    "safe_path",
]
