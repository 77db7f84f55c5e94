"""Validation problems in the words of the people who made them, never in a library's.

Definitions (prices, plans, customers, settings) are validated with pydantic, whose messages quote its own
phrasing ("Value error, ...", "Input should be ...") or a regular expression ("String should match pattern
'^[a-z0-9][a-z0-9_.\\-]{0,63}$'"). Every edge (the gRPC API, the HTTP API, the CLI) reports problems as
`field.path: what is wrong and what to write instead`; this module turns one pydantic error, as
`ValidationError.errors()` gives it, into that sentence. It reads plain dicts, so it imports no pydantic.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

#: The patterns the models use, said in words (a pattern not listed here gets a generic sentence).
PATTERN_WORDS: dict[str, str] = {
    r"^[a-z0-9][a-z0-9_.\-]{0,63}$": "lowercase letters, digits, `_`, `.` and `-`, starting with a letter or "
    "digit, at most 64 characters",
    r"^[a-z][a-z0-9_]{0,31}$": "lowercase letters, digits and `_`, starting with a letter, at most 32 characters",
    r"^[A-Za-z0-9_.\-]{1,64}$": "letters, digits, `_`, `.` and `-`, at most 64 characters",
    r"^[A-Za-z0-9_.:@\-]{1,256}$": "letters, digits, `_`, `.`, `:`, `@` and `-`, at most 256 characters",
    r"^([A-Z]{2})?$": "a two-letter ISO 3166 country code in capitals, like FR",
    r"^$|^[^@\s]+@[^@\s]+$": "an email address like billing@example.com",
    r"^-?[0-9]+(\.[0-9]+)?$": "a decimal in plain notation, like 12.50",
}

#: pydantic error types whose message quotes pydantic's phrasing, in ours. `{shown}` is the value given.
_WORDS: dict[str, str] = {
    "missing": "is required",
    "extra_forbidden": "is not a known field (check its spelling)",
    "string_too_long": "is too long: at most {max_length} characters",
    "string_too_short": "is too short: at least {min_length} characters",
    "too_long": "has too many entries: at most {max_length}",
    "too_short": "has too few entries: at least {min_length}",
    "greater_than": "must be greater than {gt}",
    "greater_than_equal": "must be at least {ge}",
    "less_than": "must be less than {lt}",
    "less_than_equal": "must be at most {le}",
    "int_parsing": "{shown} is not a whole number",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "decimal_parsing": "{shown} is not a decimal in plain notation (like 12.50)",
    "decimal_type": 'must be a decimal written as a string, like "12.50"',
    "string_type": "must be text",
    "bool_parsing": "{shown} is not true or false",
    "bool_type": "must be true or false",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "list_type": "must be a list",
    "datetime_parsing": "{shown} is not an ISO 8601 instant, like 2026-02-01T00:00:00Z",
    "datetime_from_date_parsing": "{shown} is not an ISO 8601 instant, like 2026-02-01T00:00:00Z",
    "datetime_type": "must be an ISO 8601 instant, like 2026-02-01T00:00:00Z",
    "timezone_aware": "needs a time zone: add Z or an offset like +01:00",
    "url_parsing": "{shown} is not a URL",
    "json_invalid": "is not valid JSON",
}


def field_path(loc: Sequence[Any]) -> str:
    """pydantic's location as the path a user sees: `('charges', 1, 'price')` → `charges[1].price`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part):
            out += f".{part}" if out else str(part)
    return out


def problem_message(error: Mapping[str, Any]) -> str:
    """One pydantic error (an item of `ValidationError.errors()`) as the sentence a user reads, without
    its field path."""
    kind = str(error.get("type", ""))
    ctx = dict(error.get("ctx") or {})
    value = error.get("input")
    shown = repr(value) if isinstance(value, str | int) and len(repr(value)) <= 60 else "the value"
    if kind in ("value_error", "assertion_error"):  # a validator's own sentence, without pydantic's prefix
        cause = ctx.get("error")
        return str(cause) if cause is not None else _without_prefix(str(error.get("msg", "")))
    if kind == "string_pattern_mismatch":
        words = PATTERN_WORDS.get(str(ctx.get("pattern", "")))
        return f"{shown} is not allowed here: " + (words or "it holds characters this field does not take")
    if kind in ("literal_error", "enum"):
        expected = re.sub(r"'([^']*)'", r"\1", str(ctx.get("expected", "")))
        return f"{shown} is not one of: {expected.replace(' or ', ', ')}"
    if kind in _WORDS:
        try:
            return _WORDS[kind].format(shown=shown, **ctx)
        except (KeyError, IndexError, ValueError):
            pass
    return _without_prefix(str(error.get("msg") or "is not valid"))


def problems_text(errors: Sequence[Mapping[str, Any]]) -> str:
    """Every error as `path: sentence`, joined by `; ` (what a one-line message holds)."""
    parts = []
    for error in errors:
        where = field_path(error.get("loc", ()))
        message = problem_message(error)
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def _without_prefix(message: str) -> str:
    message = re.sub(r"^(Value error|Assertion failed), ", "", message)
    if message[:1].isupper() and not message[1:2].isupper():
        message = message[:1].lower() + message[1:]
    return message


__all__ = ["PATTERN_WORDS", "field_path", "problem_message", "problems_text"]
