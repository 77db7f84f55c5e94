"""Domain errors shared by every Tally service, and their one mapping to gRPC status codes.

The tree (each leaf names when it is raised)::

    TallyError                      base; never raised itself
    ├── InvalidArgument             input is malformed or breaks a documented limit
    │   └── BatchTooLarge           a batch exceeds events_per_batch_max
    ├── NotFound                    a named tenant, key or meter does not exist
    ├── AlreadyExists               creating something whose name is taken
    ├── FailedPrecondition          the request is valid but the current state forbids it
    ├── Unauthenticated             missing, malformed, unknown or revoked API key
    ├── PermissionDenied            the key is valid but lacks the scope for the call
    ├── ResourceExhausted           a queue, stream or per-key limit is full; retry later
    ├── DeadlineExceeded            the request's work outran its deadline and was stopped
    ├── Cancelled                   the caller went away; its work was stopped
    └── Unavailable                 storage failed or the server is draining; resend

Lower-layer exceptions (SQLAlchemy, sqlite3, psycopg) are translated into these
at the edge that catches them and chained with ``from exc``; `grpc_status` is the
single place that turns a TallyError into a status code. Errors in rating's
tree (`rating.errors`), when they reach an RPC, are invalid arguments.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc

from rating.errors import RatingError


class TallyError(Exception):
    """Base of every domain error; `str(err)` is a message a user can act on."""

    status: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidArgument(TallyError):
    status = grpc.StatusCode.INVALID_ARGUMENT


class BatchTooLarge(InvalidArgument):
    pass


class NotFound(TallyError):
    status = grpc.StatusCode.NOT_FOUND


class AlreadyExists(TallyError):
    status = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(TallyError):
    status = grpc.StatusCode.FAILED_PRECONDITION


class Unauthenticated(TallyError):
    status = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(TallyError):
    status = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(TallyError):
    status = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, retry_after_ms: int = 1000) -> None:
        super().__init__(message)
        self.retry_after_ms = retry_after_ms


class DeadlineExceeded(TallyError):
    status = grpc.StatusCode.DEADLINE_EXCEEDED


class Cancelled(TallyError):
    status = grpc.StatusCode.CANCELLED


class Unavailable(TallyError):
    status = grpc.StatusCode.UNAVAILABLE


#: SQLSTATEs of contention, not of a fault: serialization failure, deadlock, lock not available.
_CONTENTION_SQLSTATES = frozenset({"40001", "40P01", "55P03"})


def contended(exc: BaseException) -> bool:
    """A transaction lost to a concurrent one (SQLite's busy lock, PostgreSQL's serialization failure or
    deadlock): it was rolled back whole, so the client may simply retry, and the answer is UNAVAILABLE."""
    orig = getattr(exc, "orig", None) or exc
    if getattr(orig, "sqlstate", None) in _CONTENTION_SQLSTATES:
        return True
    if type(orig).__name__ != "OperationalError":
        return False
    text = str(orig).lower()
    return "database is locked" in text or "database is busy" in text


def grpc_status(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The one mapping from an exception to (status code, message) used by every servicer.

    Anything that is not a domain error is an INTERNAL error: its text is not
    shown to the client (it may hold internals), only its type.
    """
    if isinstance(exc, TallyError):
        return exc.status, str(exc)
    if isinstance(exc, RatingError):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    if contended(exc):
        return grpc.StatusCode.UNAVAILABLE, "the database was busy and the change was rolled back: retry the request"
    return grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}); the server log has details"


async def abort(context: grpc.aio.ServicerContext[Any, Any], exc: BaseException, service: str) -> None:
    """End an RPC with `exc`'s status (and a retry hint when the server is saturated); every servicer's
    one way out. Internal errors are logged with their traceback; the client sees only their type."""
    code, message = grpc_status(exc)
    if code == grpc.StatusCode.INTERNAL:
        logging.getLogger(__name__).error("internal error in %s", service, exc_info=exc)
    if isinstance(exc, ResourceExhausted):
        context.set_trailing_metadata((("retry-after-ms", str(exc.retry_after_ms)),))
    if not isinstance(exc, TallyError) and isinstance(exc, grpc.aio.AbortError):
        raise exc
    await context.abort(code, message)
