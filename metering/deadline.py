"""Bounded work: every request carries a budget (its deadline and its cancellation), and the loops that
do a request's work call `checkpoint()` so that work stops when nobody waits for it any more.

gRPC cancels the handler's coroutine when a client goes away or its deadline passes, but the domain code
runs on a worker thread that no coroutine can interrupt: without checkpoints a query over centuries
would keep burning a core long after its caller gave up. The budget travels in a context variable so
domain functions need no extra parameter, and code run outside a request (the CLI, tests, workers) has
no budget and is never interrupted.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from metering.errors import Cancelled, DeadlineExceeded, interrupted


class Budget:
    """A request's deadline (monotonic seconds, or None) and whether its caller has gone away."""

    __slots__ = ("_cancelled", "deadline", "seconds")

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.deadline = None if seconds is None else time.monotonic() + seconds
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    @property
    def spent(self) -> bool:
        """Cancelled, or past the deadline: the work should stop."""
        return self._cancelled.is_set() or (self.deadline is not None and time.monotonic() > self.deadline)

    def check(self) -> None:
        if self.spent:
            raise self.stopped()

    def stopped(self) -> Cancelled | DeadlineExceeded:
        """The error for work this budget stopped, whether a checkpoint or the database noticed first."""
        if self._cancelled.is_set():
            return Cancelled("the caller cancelled the request; its work was stopped")
        return DeadlineExceeded(
            f"the request ran out of its {self.seconds:.1f} s budget and was stopped; "
            "narrow it (a shorter range, fewer items) or allow a longer deadline"
        )


_current: contextvars.ContextVar[Budget | None] = contextvars.ContextVar("tally_budget", default=None)


def current() -> Budget | None:
    return _current.get()


def checkpoint() -> None:
    """Raise DeadlineExceeded or Cancelled when the current request should stop; free outside requests."""
    budget = _current.get()
    if budget is not None:
        budget.check()


def activate(budget: Budget | None) -> None:
    """Make `budget` the current one in this context (call it inside `contextvars.Context.run`)."""
    _current.set(budget)


@contextmanager
def bounded(budget: Budget | None) -> Iterator[Budget | None]:
    """Run a block under `budget` (for code that is not started through `run_bounded`)."""
    token = _current.set(budget)
    try:
        yield budget
    except Exception as exc:
        # A single long statement may be stopped by the database (statement_timeout, SQLite's progress
        # handler) before any checkpoint runs: it is the same stop, so it gets the same error.
        if budget is not None and interrupted(exc):
            raise budget.stopped() from exc
        raise
    finally:
        _current.reset(token)


__all__ = ["Budget", "activate", "bounded", "checkpoint", "current"]
