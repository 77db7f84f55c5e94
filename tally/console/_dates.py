"""Days and months typed into console forms, as UTC instants (the console shows and takes UTC dates)."""

from __future__ import annotations

from datetime import UTC, datetime

from metering.errors import InvalidArgument


def parse_day(text: str, label: str) -> datetime:
    """ "2026-03-01" as 2026-03-01T00:00Z; anything else is refused naming the field."""
    return _parse(text, "%Y-%m-%d", "YYYY-MM-DD", label)


def parse_month(text: str, label: str) -> datetime:
    """ "2026-03" as the first instant of that month, UTC."""
    return _parse(text, "%Y-%m", "YYYY-MM", label)


def _parse(text: str, pattern: str, spelled: str, label: str) -> datetime:
    kind = "date" if pattern.endswith("%d") else "month"
    try:
        moment = datetime.strptime(text.strip(), pattern)
    except ValueError:
        raise InvalidArgument(f"{label}: a {kind} as {spelled}, got {text!r}") from None
    if not 1900 <= moment.year < 2200:
        raise InvalidArgument(f"{label}: a year from 1900 to 2199, got {moment.year}")
    return moment.replace(tzinfo=UTC)


def month_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def add_months(moment: datetime, n: int) -> datetime:
    """The first instant of the month `n` months after `moment`'s month (n may be negative)."""
    index = moment.year * 12 + moment.month - 1 + n
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


__all__ = ["add_months", "month_start", "parse_day", "parse_month"]
