"""Domain errors shared by every Tally package. They carry a code and a message, never a transport.

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
at the edge that catches them and chained with ``from exc``. Each class names its
`code`; `tally.errors.STATUS` is the one table that turns a code into a gRPC status,
an HTTP status and a CLI exit code. Errors in rating's tree (`rating.errors`) are
invalid arguments there too.
"""

from __future__ import annotations

from typing import ClassVar


class TallyError(Exception):
    """Base of every domain error; `str(err)` is a message a user can act on."""

    code: ClassVar[str] = "internal"


class InvalidArgument(TallyError):
    code = "invalid_argument"


class BatchTooLarge(InvalidArgument):
    pass


class NotFound(TallyError):
    code = "not_found"


class AlreadyExists(TallyError):
    code = "already_exists"


class FailedPrecondition(TallyError):
    code = "failed_precondition"


class Unauthenticated(TallyError):
    code = "unauthenticated"


class PermissionDenied(TallyError):
    code = "permission_denied"


class ResourceExhausted(TallyError):
    code = "resource_exhausted"

    def __init__(self, message: str, retry_after_ms: int = 1000) -> None:
        super().__init__(message)
        self.retry_after_ms = retry_after_ms


class DeadlineExceeded(TallyError):
    code = "deadline_exceeded"


class Cancelled(TallyError):
    code = "cancelled"


class Unavailable(TallyError):
    code = "unavailable"


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


def interrupted(exc: BaseException) -> bool:
    """A statement the database stopped because the request's budget ran out: SQLite's progress
    handler ("interrupted") or PostgreSQL's statement_timeout (57014, query_canceled)."""
    orig = getattr(exc, "orig", None) or exc
    if getattr(orig, "sqlstate", None) == "57014":
        return True
    return type(orig).__name__ == "OperationalError" and str(orig).strip().lower() == "interrupted"
