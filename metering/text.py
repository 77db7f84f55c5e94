"""The one rule for text, at every edge: no NUL, no other C0 control character but tab, line feed and
carriage return, no DEL, no lone surrogate (protobuf strings cannot carry one, but JSON inside a request
can spell one as an escape, and no database can store it).

PostgreSQL cannot store NUL in text at all (an insert fails), so a NUL that slipped through validation
failed storage instead: in a group commit that once failed other tenants' batches with it. Other control
characters are never meant in an id, a name or a URL and break logs, CSV exports and HTTP headers. The
gRPC interceptor applies the rule to every string field of every request; ingest applies it per event so
one bad event does not refuse its batch.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: Characters no text may carry.
CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def control_problem(value: str, field: str) -> str | None:
    """Why `value` is refused as text of `field`, or None."""
    found = CONTROL_RE.search(value)
    if found is None:
        return None
    return (
        f"{field}: contains the control character U+{ord(found.group()):04X} at position {found.start()}; "
        "text may not hold NUL, other control characters or lone surrogates"
    )


def any_control(values: Iterable[str]) -> bool:
    """True when some value holds a refused character: one C-speed scan over the joined column."""
    return CONTROL_RE.search("".join(values)) is not None


__all__ = ["CONTROL_RE", "any_control", "control_problem"]
