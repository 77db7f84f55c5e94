"""The one table from a domain error to what each edge says: gRPC status, HTTP status, CLI exit code.

Domain errors (`metering.errors`, and `rating.errors` for invalid prices and quantities) carry a code
and a message and know nothing of transports. Every edge asks `outcome(exc)` what to answer, so a new
edge (HTTP) or a new error class cannot drift from the others: the table below is the whole mapping.
Anything that is not a domain error is internal: its text never reaches a client (it may hold
internals); the server logs it with its traceback.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import grpc

from metering.errors import ResourceExhausted, TallyError, contended, interrupted
from rating.errors import RatingError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Status:
    grpc: grpc.StatusCode
    http: int
    exit: int  # CLI exit code: 1 for what the user can fix, 70 (EX_SOFTWARE) for a bug


#: code -> what each edge answers. The only place a transport status is chosen.
STATUS: dict[str, Status] = {
    "invalid_argument": Status(grpc.StatusCode.INVALID_ARGUMENT, 400, 1),
    "not_found": Status(grpc.StatusCode.NOT_FOUND, 404, 1),
    "already_exists": Status(grpc.StatusCode.ALREADY_EXISTS, 409, 1),
    "failed_precondition": Status(grpc.StatusCode.FAILED_PRECONDITION, 409, 1),
    "unauthenticated": Status(grpc.StatusCode.UNAUTHENTICATED, 401, 1),
    "permission_denied": Status(grpc.StatusCode.PERMISSION_DENIED, 403, 1),
    "resource_exhausted": Status(grpc.StatusCode.RESOURCE_EXHAUSTED, 429, 1),
    "deadline_exceeded": Status(grpc.StatusCode.DEADLINE_EXCEEDED, 504, 1),
    "cancelled": Status(grpc.StatusCode.CANCELLED, 499, 1),
    "unavailable": Status(grpc.StatusCode.UNAVAILABLE, 503, 1),
    "internal": Status(grpc.StatusCode.INTERNAL, 500, 70),
}

BUSY = "the database was busy and the change was rolled back: retry the request"
STOPPED = (
    "the request ran out of its time budget and its query was stopped; narrow it (a shorter range, fewer "
    "items) or allow a longer deadline"
)


def outcome(exc: BaseException) -> tuple[str, str]:
    """(code, message a client may see) for any exception."""
    if isinstance(exc, TallyError):
        return exc.code, str(exc)
    if isinstance(exc, RatingError):
        return "invalid_argument", str(exc)
    if contended(exc):
        return "unavailable", BUSY
    if interrupted(exc):
        return "deadline_exceeded", STOPPED
    return "internal", f"internal error ({type(exc).__name__}); the server log has details"


def grpc_status(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    code, message = outcome(exc)
    return STATUS[code].grpc, message


async def abort(context: grpc.aio.ServicerContext[Any, Any], exc: BaseException, service: str) -> None:
    """End an RPC with `exc`'s status (and a retry hint when the server is saturated); every servicer's
    one way out. Internal errors are logged with their traceback; the client sees only their type."""
    code, message = outcome(exc)
    if code == "internal":
        log.error("internal error in %s", service, exc_info=exc)
    if isinstance(exc, ResourceExhausted):
        context.set_trailing_metadata((("retry-after-ms", str(exc.retry_after_ms)),))
    if not isinstance(exc, TallyError) and isinstance(exc, grpc.aio.AbortError):
        raise exc
    await context.abort(STATUS[code].grpc, message)


__all__ = ["BUSY", "STATUS", "STOPPED", "Status", "abort", "grpc_status", "outcome"]
