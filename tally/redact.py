"""No API key reaches a log, whoever logs it.

gRPC's own Cython layer logs a metadata value it cannot decode as UTF-8 in full ("Invalid encoding on
b'Bearer tly_...'"), so a client sending a malformed authorization header would put its key in the
server's log, where keys must never be. A filter on one logger would miss the next library that does
this, so the redaction sits in the log record factory: every record of every logger is checked once,
when it is made, before any handler or formatter sees it. A record that mentions no key costs one
substring test.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from metering.tenant import KEY_PREFIX

#: A key (the prefix and what follows it) or anything after a Bearer scheme, in text or in a bytes repr.
_SECRET = re.compile(rf"{re.escape(KEY_PREFIX)}[^\s'\"]*|(?i:bearer)\s+[^\s'\"]+")
REDACTED = "[redacted]"
_installed = False


def redact(text: str) -> str:
    """`text` with every key and bearer credential replaced by [redacted]."""
    if KEY_PREFIX not in text and "earer" not in text and "EARER" not in text:
        return text
    return _SECRET.sub(lambda m: ("Bearer " if m.group().lower().startswith("bearer") else "") + REDACTED, text)


def install() -> None:
    """Redact every log record made from now on in this process (idempotent)."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string is the logger's problem; never lose the record over it
            return record
        cleaned = redact(message)
        if cleaned is not message:
            record.msg, record.args = cleaned, None
        return record

    logging.setLogRecordFactory(factory)
    _installed = True


__all__ = ["REDACTED", "install", "redact"]
