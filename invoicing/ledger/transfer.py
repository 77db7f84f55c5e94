"""Transfers: immutable movements between two accounts of one unit, applied in batches.

Semantics follow TigerBeetle:

- Every transfer carries a client id (unique per tenant, 1..128 bytes). Sending the same id with the
  same body again reports EXISTS and changes nothing; the same id with a different body reports
  EXISTS_WITH_DIFFERENT_FIELD and names the first field that differs.
- A batch returns one result per transfer. Transfers flagged LINKED chain to the next one; a chain
  is all-or-nothing: the first failure is reported on its transfer, every other member reports
  LINKED_EVENT_FAILED, and nothing of the chain is written. A chain whose last member is still
  LINKED reports LINKED_EVENT_CHAIN_OPEN. (Unlike TigerBeetle, an identical EXISTS does not fail a
  chain, so resending a committed chain reports EXISTS for every member.)
- Two-phase: PENDING reserves the amount (pending debits/credits count against the flags), then
  POST_PENDING posts all of it or less (the rest is released) or VOID_PENDING releases it. A
  pending transfer with a timeout can no longer be posted or voided once the timeout has passed;
  `expire_pending(now)` releases such reservations by writing a void transfer (code "expire").
- Amounts are exact positive int64 counts of the unit's smallest step; a result that would take
  any running total (or debits/credits posted + pending) past int64 is refused, never wrapped.

The batch path is built for throughput. A batch of new, valid plain or pending transfers with no
account on both sides (the common case: spends, holds, top-ups) takes the one-pass path
(`_simple_batch`): the batch is checked as columns, the touched accounts are read or locked once, the
rows go to the driver zipped from the columns (executemany on SQLite, binary COPY on PostgreSQL) under
a savepoint whose primary key answers idempotency, and each touched account is updated once. Anything
else (retries, posts and voids, a refusal anywhere) takes the general path: one SELECT for existing
ids, one locking SELECT for the touched accounts, every check in Python transfer by transfer, then the
same writes. Both give the same results and rows (tests/invoicing/ledger/test_one_pass.py).

Concurrency: on SQLite the transaction starts with BEGIN IMMEDIATE (the database's single writer
lock, taken up front, so no transaction can fail halfway through upgrading a read lock). On
PostgreSQL it runs in READ COMMITTED and takes `SELECT ... FOR UPDATE` on the touched account rows
in ascending id order (a global lock order, hence no deadlocks), and re-reads the open pending
state only after locking, so every balance check sees the latest committed totals. The per-tenant
sequence row is taken last, just before the inserts, which keeps history order equal to commit
order. A unique violation from a concurrent writer of the same id retries the whole batch.
"""

from __future__ import annotations

import json
import operator
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntFlag, StrEnum
from itertools import repeat
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, bindparam, select, update
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError

from invoicing.ledger.account import AccountFlags
from invoicing.ledger.errors import InvalidTransfer
from invoicing.ledger.tables import ledger_accounts, ledger_pending, ledger_sequences, ledger_transfers
from metering.transactions import begin_write
from rating.fixedpoint import INT64_MAX

T = TypeVar("T")

ID_BYTES_MAX = 128
#: Ids starting with this are written by the ledger itself (expiries, sweeps); clients may not use it.
SYSTEM_PREFIX = "~"
_CHUNK = 4000


class TransferFlags(IntFlag):
    NONE = 0
    LINKED = 1
    PENDING = 2
    POST_PENDING = 4
    VOID_PENDING = 8


# Plain-int twins of the flags for the hot loop: IntFlag arithmetic builds an enum member per operation,
# which measured as a third of a batch's time.
_LINKED, _PENDING, _POST, _VOID = 1, 2, 4, 8
_RESOLVE = _POST | _VOID
_PHASE = _PENDING | _POST | _VOID


class Result(StrEnum):
    CREATED = "created"
    EXISTS = "exists"
    EXISTS_WITH_DIFFERENT_FIELD = "exists_with_different_field"
    LINKED_EVENT_FAILED = "linked_event_failed"
    LINKED_EVENT_CHAIN_OPEN = "linked_event_chain_open"
    ID_INVALID = "id_invalid"
    ID_RESERVED = "id_reserved"
    FIELD_TOO_LONG = "field_too_long"
    FLAGS_ARE_MUTUALLY_EXCLUSIVE = "flags_are_mutually_exclusive"
    AMOUNT_INVALID = "amount_invalid"
    ACCOUNTS_MUST_BE_DIFFERENT = "accounts_must_be_different"
    DEBIT_ACCOUNT_NOT_FOUND = "debit_account_not_found"
    CREDIT_ACCOUNT_NOT_FOUND = "credit_account_not_found"
    ACCOUNTS_MUST_HAVE_THE_SAME_UNIT = "accounts_must_have_the_same_unit"
    PENDING_ID_REQUIRED = "pending_id_required"
    PENDING_ID_MUST_BE_EMPTY = "pending_id_must_be_empty"
    TIMEOUT_RESERVED_FOR_PENDING_TRANSFER = "timeout_reserved_for_pending_transfer"
    TIMEOUT_INVALID = "timeout_invalid"
    PENDING_TRANSFER_NOT_FOUND = "pending_transfer_not_found"
    PENDING_TRANSFER_NOT_PENDING = "pending_transfer_not_pending"
    PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT = "pending_transfer_has_different_debit_account"
    PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT = "pending_transfer_has_different_credit_account"
    PENDING_TRANSFER_ALREADY_POSTED = "pending_transfer_already_posted"
    PENDING_TRANSFER_ALREADY_VOIDED = "pending_transfer_already_voided"
    PENDING_TRANSFER_EXPIRED = "pending_transfer_expired"
    EXCEEDS_PENDING_TRANSFER_AMOUNT = "exceeds_pending_transfer_amount"
    EXCEEDS_CREDITS = "exceeds_credits"
    EXCEEDS_DEBITS = "exceeds_debits"
    OVERFLOWS_DEBITS = "overflows_debits"
    OVERFLOWS_CREDITS = "overflows_credits"


OK_RESULTS = frozenset({Result.CREATED, Result.EXISTS})


@dataclass(frozen=True, slots=True)
class Transfer:
    """A movement to create. For post/void, accounts and amount may be left None to take the pending's."""

    id: str
    debit_account_id: int | None
    credit_account_id: int | None
    amount: int | None
    code: str = "transfer"
    reference: str = ""
    flags: TransferFlags = TransferFlags.NONE
    pending_id: str | None = None
    #: Pending only: seconds after the transfer's time at which the reservation lapses; 0 = never.
    timeout_s: int = 0
    #: The movement's time (µs since epoch); None = the batch's "now".
    at_us: int | None = None


@dataclass(frozen=True, slots=True)
class StoredTransfer:
    """A transfer as written: every field resolved (post/void carry the pending's accounts and unit)."""

    id: str
    seq: int
    debit_account_id: int
    credit_account_id: int
    amount: int
    unit: str
    code: str
    reference: str
    flags: TransferFlags
    pending_id: str | None
    timeout_us: int | None
    ts_us: int


@dataclass(frozen=True, slots=True)
class TransferResult:
    index: int
    id: str
    result: Result
    field: str | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.result in OK_RESULTS

    def message(self) -> str:
        text = f"transfer {self.id!r}: {self.result.value.replace('_', ' ')}"
        if self.field:
            text += f" ({self.field})"
        if self.detail:
            text += f": {self.detail}"
        return text


_TRANSFER_COLUMNS = (
    ledger_transfers.c.transfer_id,
    ledger_transfers.c.seq,
    ledger_transfers.c.debit_account_id,
    ledger_transfers.c.credit_account_id,
    ledger_transfers.c.amount,
    ledger_transfers.c.unit,
    ledger_transfers.c.code,
    ledger_transfers.c.reference,
    ledger_transfers.c.flags,
    ledger_transfers.c.pending_id,
    ledger_transfers.c.timeout_us,
    ledger_transfers.c.ts_us,
)


def stored_from_row(r: Any) -> StoredTransfer:
    return StoredTransfer(
        r.transfer_id,
        int(r.seq),
        int(r.debit_account_id),
        int(r.credit_account_id),
        int(r.amount),
        r.unit,
        r.code,
        r.reference,
        TransferFlags(int(r.flags)),
        r.pending_id,
        None if r.timeout_us is None else int(r.timeout_us),
        int(r.ts_us),
    )


def load_transfers(conn: Connection, tenant_id: int, ids: Iterable[str]) -> dict[str, StoredTransfer]:
    wanted = list(dict.fromkeys(ids))
    out: dict[str, StoredTransfer] = {}
    for i in range(0, len(wanted), _CHUNK):
        rows = conn.execute(
            select(*_TRANSFER_COLUMNS).where(
                ledger_transfers.c.tenant_id == tenant_id, ledger_transfers.c.transfer_id.in_(wanted[i : i + _CHUNK])
            )
        )
        for r in rows:
            out[r.transfer_id] = stored_from_row(r)
    return out


# --- static validation ------------------------------------------------------------------------------


def _static_check(t: Transfer, allow_system_ids: bool) -> tuple[Result, str] | None:
    if not isinstance(t.id, str) or not t.id or len(t.id.encode()) > ID_BYTES_MAX:
        return Result.ID_INVALID, f"ids are 1..{ID_BYTES_MAX} bytes"
    if t.id.startswith(SYSTEM_PREFIX) and not allow_system_ids:
        return Result.ID_RESERVED, f"ids starting with {SYSTEM_PREFIX!r} are written by the ledger itself"
    if len(t.code) > 32 or len(t.reference.encode()) > 256:
        return Result.FIELD_TOO_LONG, "code is at most 32 characters, reference at most 256 bytes"
    phase = int(t.flags) & _PHASE
    if phase not in (0, _PENDING, _POST, _VOID):
        return Result.FLAGS_ARE_MUTUALLY_EXCLUSIVE, "a transfer is at most one of pending, post, void"
    amount = t.amount
    if amount is not None and (isinstance(amount, bool) or not isinstance(amount, int)):
        return Result.AMOUNT_INVALID, "amounts are integers in the unit's smallest step"
    if t.timeout_s and not phase & _PENDING:
        return Result.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER, ""
    if isinstance(t.timeout_s, bool) or not isinstance(t.timeout_s, int) or not 0 <= t.timeout_s <= 10**10:
        return Result.TIMEOUT_INVALID, "timeout is whole seconds, 0..10^10"
    if phase & _RESOLVE:
        if not t.pending_id:
            return Result.PENDING_ID_REQUIRED, ""
        if amount is not None and not 0 < amount <= INT64_MAX:
            return Result.AMOUNT_INVALID, f"must be 1..{INT64_MAX} (or left out to take the pending amount)"
        return None
    if t.pending_id is not None:
        return Result.PENDING_ID_MUST_BE_EMPTY, ""
    if amount is None or not 0 < amount <= INT64_MAX:
        return Result.AMOUNT_INVALID, f"must be 1..{INT64_MAX}"
    if t.debit_account_id is None or t.credit_account_id is None:
        return Result.DEBIT_ACCOUNT_NOT_FOUND if t.debit_account_id is None else Result.CREDIT_ACCOUNT_NOT_FOUND, ""
    if t.debit_account_id == t.credit_account_id:
        return Result.ACCOUNTS_MUST_BE_DIFFERENT, ""
    return None


def _check_account_id_types(transfers: Sequence[Transfer]) -> None:
    """Refuse account ids that are not integers before they reach a lookup or a sort.

    A string id used to surface as a TypeError from sorting the touched accounts, and an integral float
    or a bool would have matched a real account by hash equality. Neither is a business refusal the
    batch can answer per transfer (no account could be "not found" by a value of the wrong type), so
    the whole call is refused, naming the field and the transfer."""
    for k, t in enumerate(transfers):
        for name in ("debit_account_id", "credit_account_id"):
            value = getattr(t, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise InvalidTransfer(
                    f"transfer {k} ({t.id!r}): {name} must be an integer account id, not {type(value).__name__}",
                    field=name,
                )


# --- the batch engine ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _Acct:
    tenant_id: int
    unit: str
    flags: int
    dp: int
    cp: int
    dpn: int
    cpn: int


@dataclass(slots=True)
class _Chain:
    """What a chain changed, so a failing link can put everything back."""

    accounts: dict[int, tuple[int, int, int, int]] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)
    pending: dict[str, tuple[str, int | None] | None] = field(default_factory=dict)


def _resolved_body(t: Transfer, pending: StoredTransfer | None, ts_us: int) -> dict[str, object]:
    """The fields a retry is compared on, resolved the way they were when first written."""
    is_resolution = bool(t.flags & (TransferFlags.POST_PENDING | TransferFlags.VOID_PENDING))
    body: dict[str, object] = {"flags": int(t.flags)}
    if is_resolution and pending is not None:
        body["debit_account_id"] = t.debit_account_id or pending.debit_account_id
        body["credit_account_id"] = t.credit_account_id or pending.credit_account_id
        if t.flags & TransferFlags.VOID_PENDING:
            body["amount"] = pending.amount
        else:
            body["amount"] = t.amount if t.amount is not None else pending.amount
        body["code"] = t.code or pending.code
    else:
        body["debit_account_id"] = t.debit_account_id
        body["credit_account_id"] = t.credit_account_id
        body["amount"] = t.amount
        body["code"] = t.code
    body["reference"] = t.reference
    body["pending_id"] = t.pending_id
    body["timeout_s"] = t.timeout_s
    if t.at_us is not None:
        body["ts_us"] = t.at_us
    return body


def _stored_body(s: StoredTransfer) -> dict[str, object]:
    return {
        "flags": int(s.flags),
        "debit_account_id": s.debit_account_id,
        "credit_account_id": s.credit_account_id,
        "amount": s.amount,
        "code": s.code,
        "reference": s.reference,
        "pending_id": s.pending_id,
        "timeout_s": 0 if s.timeout_us is None else (s.timeout_us - s.ts_us) // 1_000_000,
        "ts_us": s.ts_us,
    }


def _first_difference(t: Transfer, stored: StoredTransfer, pending: StoredTransfer | None) -> str | None:
    new = _resolved_body(t, pending, stored.ts_us)
    old = _stored_body(stored)
    for name, value in new.items():
        if old[name] != value:
            return name
    return None


def apply_batch(
    conn: Connection,
    tenant_id: int,
    transfers: Sequence[Transfer],
    now_us: int,
    allow_system_ids: bool = False,
) -> list[TransferResult]:
    """Check and apply a batch inside the caller's write transaction; one result per transfer."""
    fast = _simple_batch(conn, tenant_id, transfers, now_us, allow_system_ids)
    if fast is not None:
        return fast
    _check_account_id_types(transfers)
    n = len(transfers)
    results: list[TransferResult | None] = [None] * n
    static: list[tuple[Result, str] | None] = [_static_check(t, allow_system_ids) for t in transfers]

    valid_ids = [t.id for t, s in zip(transfers, static, strict=True) if s is None]
    pending_ids = {t.pending_id for t, s in zip(transfers, static, strict=True) if s is None and t.pending_id}
    existing = load_transfers(conn, tenant_id, [*valid_ids, *pending_ids])

    account_ids: set[int] = set()
    for t, s in zip(transfers, static, strict=True):
        if s is None:
            if t.debit_account_id:
                account_ids.add(t.debit_account_id)
            if t.credit_account_id:
                account_ids.add(t.credit_account_id)
    for pid in pending_ids:
        p = existing.get(pid)
        if p is not None:
            account_ids.update((p.debit_account_id, p.credit_account_id))
    accounts = _lock_accounts(conn, tenant_id, sorted(account_ids))
    # After the locks: the open/closed state of every pending this batch may resolve.
    pend_state = _load_pending_state(conn, tenant_id, [pid for pid in pending_ids if pid in existing])

    created: dict[str, StoredTransfer] = {}
    order: list[str] = []
    touched: set[int] = set()
    pend_changes: dict[str, tuple[str, int | None]] = {}
    new_pending: set[str] = set()

    def lookup(tid: str) -> StoredTransfer | None:
        return created.get(tid) or existing.get(tid)

    def apply_one(t: Transfer, chain: _Chain) -> tuple[Result, str | None, str]:
        ts = t.at_us if t.at_us is not None else now_us
        prior = lookup(t.id)
        if prior is not None:
            pend = lookup(t.pending_id) if t.pending_id else None
            diff = _first_difference(t, prior, pend)
            if diff is None:
                return Result.EXISTS, None, ""
            return Result.EXISTS_WITH_DIFFERENT_FIELD, diff, f"id already used with a different {diff}"

        def save(aid: int, a: _Acct) -> None:
            if aid not in chain.accounts:
                chain.accounts[aid] = (a.dp, a.cp, a.dpn, a.cpn)

        if int(t.flags) & _RESOLVE:
            assert t.pending_id is not None
            p = lookup(t.pending_id)
            if p is None:
                return Result.PENDING_TRANSFER_NOT_FOUND, None, ""
            if not int(p.flags) & _PENDING:
                return Result.PENDING_TRANSFER_NOT_PENDING, None, ""
            if t.debit_account_id and t.debit_account_id != p.debit_account_id:
                return Result.PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT, None, ""
            if t.credit_account_id and t.credit_account_id != p.credit_account_id:
                return Result.PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT, None, ""
            state, timeout = pend_changes.get(p.id) or pend_state.get(p.id, ("pending", p.timeout_us))
            if state == "posted":
                return Result.PENDING_TRANSFER_ALREADY_POSTED, None, ""
            if state == "voided":
                return Result.PENDING_TRANSFER_ALREADY_VOIDED, None, ""
            if state == "expired" or (timeout is not None and timeout <= ts and not allow_system_ids):
                return Result.PENDING_TRANSFER_EXPIRED, None, ""
            post = bool(int(t.flags) & _POST)
            amount = p.amount if (t.amount is None or not post) else t.amount
            if not post and t.amount is not None and t.amount != p.amount:
                return Result.AMOUNT_INVALID, None, "a void releases the whole pending amount"
            if amount > p.amount:
                return Result.EXCEEDS_PENDING_TRANSFER_AMOUNT, None, f"pending amount is {p.amount}"
            dr = accounts[p.debit_account_id]
            cr = accounts[p.credit_account_id]
            save(p.debit_account_id, dr)
            save(p.credit_account_id, cr)
            dr.dpn -= p.amount
            cr.cpn -= p.amount
            if post:
                dr.dp += amount
                cr.cp += amount
            problem = _check(dr, cr)
            if problem is not None:
                return problem, None, ""
            chain.pending.setdefault(p.id, pend_changes.get(p.id))
            pend_changes[p.id] = ("posted" if post else "voided", timeout)
            stored = StoredTransfer(
                t.id, 0, p.debit_account_id, p.credit_account_id, amount, p.unit, t.code or p.code,
                t.reference, t.flags, p.id, None, ts,
            )  # fmt: skip
        else:
            assert t.debit_account_id is not None and t.credit_account_id is not None and t.amount is not None
            dr_or_none = accounts.get(t.debit_account_id)
            if dr_or_none is None:
                return Result.DEBIT_ACCOUNT_NOT_FOUND, None, ""
            cr_or_none = accounts.get(t.credit_account_id)
            if cr_or_none is None:
                return Result.CREDIT_ACCOUNT_NOT_FOUND, None, ""
            dr, cr = dr_or_none, cr_or_none
            if dr.unit != cr.unit:
                return Result.ACCOUNTS_MUST_HAVE_THE_SAME_UNIT, None, f"{dr.unit} vs {cr.unit}; convert first"
            amount = t.amount
            save(t.debit_account_id, dr)
            save(t.credit_account_id, cr)
            pending = bool(int(t.flags) & _PENDING)
            if pending:
                dr.dpn += amount
                cr.cpn += amount
            else:
                dr.dp += amount
                cr.cp += amount
            problem = _check(dr, cr)
            if problem is not None:
                return problem, None, ""
            timeout_us = ts + t.timeout_s * 1_000_000 if pending and t.timeout_s else None
            if pending:
                chain.pending.setdefault(t.id, None)
                pend_changes[t.id] = ("pending", timeout_us)
            stored = StoredTransfer(
                t.id, 0, t.debit_account_id, t.credit_account_id, amount, dr.unit, t.code, t.reference,
                t.flags, None, timeout_us, ts,
            )  # fmt: skip
        created[t.id] = stored
        chain.created.append(t.id)
        return Result.CREATED, None, ""

    def rollback(chain: _Chain) -> None:
        for aid, (dp, cp, dpn, cpn) in chain.accounts.items():
            a = accounts[aid]
            a.dp, a.cp, a.dpn, a.cpn = dp, cp, dpn, cpn
        for tid in chain.created:
            del created[tid]
        for pid, before in chain.pending.items():
            if before is None:
                pend_changes.pop(pid, None)
            else:
                pend_changes[pid] = before

    i = 0
    while i < n:
        j = i
        while j < n and int(transfers[j].flags) & _LINKED:
            j += 1
        end = min(j, n - 1)  # the chain is transfers[i..end]
        if j == n:  # last member still LINKED
            for k in range(i, n):
                r = Result.LINKED_EVENT_CHAIN_OPEN if k == n - 1 else Result.LINKED_EVENT_FAILED
                results[k] = TransferResult(k, transfers[k].id, r)
            break
        chain = _Chain()
        failed_at = -1
        for k in range(i, end + 1):
            s = static[k]
            if s is not None:
                results[k] = TransferResult(k, transfers[k].id, s[0], None, s[1])
                failed_at = k
                break
            res, fld, detail = apply_one(transfers[k], chain)
            results[k] = TransferResult(k, transfers[k].id, res, fld, detail)
            if res not in OK_RESULTS:
                failed_at = k
                break
        if failed_at >= 0:
            rollback(chain)
            for k in range(i, end + 1):
                if k != failed_at:
                    results[k] = TransferResult(k, transfers[k].id, Result.LINKED_EVENT_FAILED)
        else:
            touched.update(chain.accounts)
            order.extend(chain.created)
            new_pending.update(pid for pid, before in chain.pending.items() if before is None and pid in created)
        i = end + 1

    _write(conn, tenant_id, [created[tid] for tid in order], accounts, touched, pend_changes, new_pending)
    final = [r for r in results if r is not None]
    assert len(final) == n
    return final


# The one-pass path reads the batch as columns and checks them with C-level passes (map, set, min/max),
# so little Python runs per transfer: summing amounts per account, and the row tuples zip builds in C.
_FIELDS = operator.attrgetter(
    "id", "debit_account_id", "credit_account_id", "amount", "code", "reference", "flags", "pending_id",
    "timeout_s", "at_us",
)  # fmt: skip
_ONE_PASS_FLAGS = frozenset({0, _LINKED, _PENDING, _LINKED | _PENDING})
_TIMEOUT_S_MAX = 10**10


class _Refused(Exception):
    """The batch is not all-new-and-valid after all: roll the savepoint back, take the general path."""


@dataclass(slots=True)
class _Plain:
    """A batch of new plain/pending transfers as columns, with its per-account sums."""

    ids: tuple[str, ...]
    drs: tuple[int, ...]
    crs: tuple[int, ...]
    amounts: tuple[int, ...]
    codes: tuple[str, ...]
    refs: tuple[str, ...]
    flags: list[int] | None  # None: all plain
    timeouts: tuple[int, ...]
    ats: tuple[int | None, ...] | None  # None: all at the batch's time
    #: account id -> amount the batch adds to its debits posted (accounts debited here are never credited).
    d_posted: dict[int, int] = field(default_factory=dict)
    d_pending: dict[int, int] = field(default_factory=dict)
    c_posted: dict[int, int] = field(default_factory=dict)
    c_pending: dict[int, int] = field(default_factory=dict)

    def debited(self) -> set[int]:
        return self.d_posted.keys() | self.d_pending.keys()

    def credited(self) -> set[int]:
        return self.c_posted.keys() | self.c_pending.keys()


def _simple_batch(
    conn: Connection, tenant_id: int, transfers: Sequence[Transfer], now_us: int, allow_system_ids: bool
) -> list[TransferResult] | None:
    """The bulk case in one pass over columns, or None (nothing written) to take the transfer-by-transfer path.

    Applies when every transfer is new, valid and not a post or void, no chain is left open, and no
    account is both debited and credited in the batch. Then each account's totals only grow on one side
    (debits posted/pending, or credits posted/pending), so if the batch's final totals pass every flag
    and overflow check, every prefix passed too, and the outcome (all created, the same totals, the same
    rows) is exactly what the one-by-one path produces; test_bulk_path checks that.

    Newness is not looked up: the rows are inserted under a savepoint and the primary key
    `(tenant_id, transfer_id)` answers. A duplicate (a retry, or an id sent twice) rolls the savepoint
    back and the general path reports EXISTS / EXISTS_WITH_DIFFERENT_FIELD per transfer. So the common
    case costs one account lock, the inserts and one update per touched account: the probe's recipe in
    shared/CEILINGS.md.
    """
    if not transfers:
        return None
    try:
        batch = _plain_columns(transfers, allow_system_ids)
    except (TypeError, ValueError):  # an odd type somewhere: the general path names it
        return None
    if batch is None:
        return None
    try:
        if conn.dialect.name == "sqlite":
            _apply_plain_sqlite(conn, tenant_id, batch, now_us)
        else:
            _apply_plain_postgres(conn, tenant_id, batch, now_us)
    except _Refused:
        return None
    return _created(batch.ids)


def _plain_columns(transfers: Sequence[Transfer], allow_system_ids: bool) -> _Plain | None:
    """The batch as columns if every transfer passes `_static_check` as a new plain or pending transfer,
    the last closes its chain and no account is on both sides; else None. Each check is one C-level
    pass over a column."""
    n = len(transfers)
    ids, drs, crs, amounts, codes, refs, flags, pendings, timeouts, ats = zip(*map(_FIELDS, transfers), strict=True)
    distinct = set(ids)
    if len(distinct) != n or "" in distinct or set(map(type, ids)) != {str}:
        return None
    # A character is at most 4 bytes in UTF-8, so only longer ids need encoding to measure.
    if max(map(len, ids)) > ID_BYTES_MAX // 4 and max(map(len, map(str.encode, ids))) > ID_BYTES_MAX:
        return None
    # Only when some id sorts at or after the prefix can one start with it.
    if not allow_system_ids and max(ids) >= SYSTEM_PREFIX and any(map(str.startswith, ids, repeat(SYSTEM_PREFIX))):
        return None
    if set(map(type, codes)) != {str} or max(map(len, codes)) > 32:
        return None
    if set(map(type, refs)) != {str}:
        return None
    if max(map(len, refs)) > 256 // 4 and max(map(len, map(str.encode, refs))) > 256:
        return None
    flag_set = set(map(int, set(flags)))
    if not flag_set <= _ONE_PASS_FLAGS or int(flags[-1]) & _LINKED:
        return None
    if set(pendings) != {None}:
        return None
    if set(map(type, amounts)) != {int} or min(amounts) <= 0 or max(amounts) > INT64_MAX:
        return None
    if set(map(type, drs)) != {int} or set(map(type, crs)) != {int} or any(map(operator.eq, drs, crs)):
        return None
    if not set(drs).isdisjoint(crs):
        return None
    if set(map(type, timeouts)) != {int} or min(timeouts) < 0 or max(timeouts) > _TIMEOUT_S_MAX:
        return None
    any_pending = any(f & _PENDING for f in flag_set)
    int_flags = None if flag_set == {0} else list(map(int, flags))
    if any_pending:
        assert int_flags is not None
        if any(s and not f & _PENDING for s, f in zip(timeouts, int_flags, strict=True)):
            return None
    elif max(timeouts):
        return None
    batch = _Plain(ids, drs, crs, amounts, codes, refs, int_flags, timeouts, None if set(ats) == {None} else ats)
    if any_pending:
        assert int_flags is not None
        for dr, cr, amount, f in zip(drs, crs, amounts, int_flags, strict=True):
            d, c = (batch.d_pending, batch.c_pending) if f & _PENDING else (batch.d_posted, batch.c_posted)
            d[dr] = d.get(dr, 0) + amount
            c[cr] = c.get(cr, 0) + amount
    else:
        d_sum, c_sum = batch.d_posted, batch.c_posted
        get = d_sum.get
        for dr, amount in zip(drs, amounts, strict=True):
            d_sum[dr] = get(dr, 0) + amount
        get = c_sum.get
        for cr, amount in zip(crs, amounts, strict=True):
            c_sum[cr] = get(cr, 0) + amount
    return batch


def _history_rows(tenant_id: int, batch: _Plain, first_seq: int, units: Iterable[str], now_us: int) -> Any:
    """The transfer rows, zipped in C from the columns (no Python code per row)."""
    n = len(batch.ids)
    ts: Iterable[int] = repeat(now_us, n) if batch.ats is None else [now_us if a is None else a for a in batch.ats]
    timeout_us: Iterable[int | None] = repeat(None, n)
    flags: Iterable[int] = repeat(0, n) if batch.flags is None else batch.flags
    if batch.flags is not None and any(batch.timeouts):
        ts = list(ts)
        timeout_us = [
            t + s * 1_000_000 if f & _PENDING and s else None
            for t, s, f in zip(ts, batch.timeouts, batch.flags, strict=True)
        ]  # fmt: skip
    rows = zip(
        repeat(tenant_id, n), batch.ids, range(first_seq, first_seq + n), batch.drs, batch.crs, batch.amounts, units,
        batch.codes, batch.refs, flags, repeat(None, n), timeout_us, ts, strict=True,
    )  # fmt: skip
    return rows


def _pending_rows(tenant_id: int, batch: _Plain, now_us: int) -> list[tuple[int, str, str, int | None]]:
    if batch.flags is None:
        return []
    ats = repeat(None, len(batch.ids)) if batch.ats is None else batch.ats
    return [
        (tenant_id, tid, "pending", ((now_us if at is None else at) + s * 1_000_000) if s else None)
        for tid, f, s, at in zip(batch.ids, batch.flags, batch.timeouts, ats, strict=True)
        if f & _PENDING
    ]  # fmt: skip


def _apply_plain_sqlite(conn: Connection, tenant_id: int, batch: _Plain, now_us: int) -> None:
    """SQLite already holds its one write lock (BEGIN IMMEDIATE): read the touched accounts, check their
    final totals in Python (SQLite arithmetic would turn an int64 overflow into a float), write."""
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        _apply_plain_sqlite_cursor(conn, cursor, tenant_id, batch, now_us)
    except sqlite3.Error as exc:  # the driver's error, as SQLAlchemy would have raised it (tally/errors maps it)
        raise DBAPIError.instance(None, None, exc, sqlite3.Error) from exc
    finally:
        cursor.close()


def _apply_plain_sqlite_cursor(conn: Connection, cursor: Any, tenant_id: int, batch: _Plain, now_us: int) -> None:
    debited = batch.debited()
    touched = [*debited, *batch.credited()]
    # `+tenant_id`: without the plus SQLite walks the tenant's index (every account of the tenant) and
    # filters by id; with it, one primary-key probe per touched account.
    rows = cursor.execute(
        "SELECT id, unit, flags, debits_posted, credits_posted, debits_pending, credits_pending"
        " FROM ledger_accounts WHERE id IN (SELECT value FROM json_each(?)) AND +tenant_id = ?",
        (json.dumps(touched), tenant_id),
    ).fetchall()
    if len(rows) != len(touched):  # missing, or another tenant's: the general path says which
        raise _Refused
    totals: list[tuple[int, int, int, int, int]] = []
    unit_of: dict[int, str] = {}
    for aid, unit, fl, dp, cp, dpn, cpn in rows:
        unit_of[aid] = unit
        if aid in debited:
            dp += batch.d_posted.get(aid, 0)
            dpn += batch.d_pending.get(aid, 0)
            if dp + dpn > INT64_MAX or (fl & _DEBITS_CAPPED and dp + dpn > cp):  # both >= 0: covers each
                raise _Refused
        else:
            cp += batch.c_posted.get(aid, 0)
            cpn += batch.c_pending.get(aid, 0)
            if cp + cpn > INT64_MAX or (fl & _CREDITS_CAPPED and cp + cpn > dp):
                raise _Refused
        totals.append((dp, cp, dpn, cpn, aid))
    units = _units(batch, unit_of)
    pending = _pending_rows(tenant_id, batch, now_us)
    cursor.execute("SAVEPOINT ledger_one_pass")
    try:
        first = _take_seq(conn, tenant_id, len(batch.ids), cursor)
        cursor.executemany(_SQLITE_INSERT, _history_rows(tenant_id, batch, first, units, now_us))
        if pending:
            cursor.executemany(_SQLITE_INSERT_PENDING, pending)
    except sqlite3.IntegrityError:  # an id already taken, or sent twice: the general path answers per transfer
        cursor.execute("ROLLBACK TO ledger_one_pass")
        cursor.execute("RELEASE ledger_one_pass")
        raise _Refused from None
    cursor.execute("RELEASE ledger_one_pass")
    cursor.executemany(
        "UPDATE ledger_accounts SET debits_posted = ?, credits_posted = ?, debits_pending = ?,"
        " credits_pending = ? WHERE id = ?",
        totals,
    )


def _units(batch: _Plain, unit_of: dict[int, str]) -> Iterable[str]:
    """Each transfer's unit (its debit account's), after checking both sides of every transfer agree."""
    if len(set(unit_of.values())) == 1:
        return repeat(next(iter(unit_of.values())), len(batch.ids))
    dr_units = list(map(unit_of.__getitem__, batch.drs))
    if any(map(operator.ne, dr_units, map(unit_of.__getitem__, batch.crs))):
        raise _Refused
    return dr_units


# The one-pass path's whole read-check-write of the accounts and the sequence, in one statement (one round
# trip, one parse), under the caller's savepoint:
# - `locked` takes the touched rows' locks in ascending id order (one global order: no deadlocks). The
#   UPDATE only writes rows `locked` has returned, so every lock this statement takes is still taken in id
#   order whatever plan the planner picks for the join. A row changed by a writer that committed while we
#   waited is re-read by the UPDATE (READ COMMITTED's re-check), so the increments land on the latest totals.
# - `u` adds the increments and returns the new totals; bigint arithmetic raises on overflow (22003) rather
#   than wrapping, so `dp + dpn` fails exactly where the Python check says OVERFLOWS_*. Side 1 = debited,
#   2 = credited; `broken` counts the accounts that would break their flag.
# - `s` bumps the tenant's sequence only once `u` has run in full (its filter reads u), so the sequence row
#   is still locked last, after the accounts: history order stays commit order.
# The arrays travel as text literals of Python ints: psycopg's array dumper runs in Python per element, and
# measured as most of the batch's client CPU at 1,000 transfers.
_PG_APPLY_TOTALS = """
WITH v AS (
    SELECT * FROM unnest(%s::int4[], %s::int8[], %s::int8[], %s::int2[]) AS v(id, posted, pending, side)
), locked AS MATERIALIZED (
    SELECT id FROM ledger_accounts WHERE id = ANY(%s::int4[]) AND tenant_id = %s ORDER BY id FOR UPDATE
), u AS (
    UPDATE ledger_accounts AS a SET
        debits_posted = a.debits_posted + CASE WHEN v.side = 1 THEN v.posted ELSE 0 END,
        debits_pending = a.debits_pending + CASE WHEN v.side = 1 THEN v.pending ELSE 0 END,
        credits_posted = a.credits_posted + CASE WHEN v.side = 2 THEN v.posted ELSE 0 END,
        credits_pending = a.credits_pending + CASE WHEN v.side = 2 THEN v.pending ELSE 0 END
    FROM v JOIN locked ON locked.id = v.id WHERE a.id = v.id
    RETURNING v.side, a.unit, a.flags, a.debits_posted, a.credits_posted, a.debits_pending, a.credits_pending
), s AS (
    UPDATE ledger_sequences SET last_seq = last_seq + %s
    WHERE tenant_id = %s AND (SELECT count(*) FROM u) = %s
    RETURNING last_seq
)
SELECT count(*), count(*) FILTER (WHERE CASE WHEN side = 1
    THEN debits_posted + debits_pending > CASE WHEN flags & 1 <> 0 THEN credits_posted ELSE 9223372036854775807 END
    ELSE credits_posted + credits_pending > CASE WHEN flags & 2 <> 0 THEN debits_posted ELSE 9223372036854775807 END
END), count(DISTINCT unit), min(unit), (SELECT last_seq FROM s) FROM u
"""


def _pg_array(values: Iterable[int]) -> str:
    """A PostgreSQL array literal of Python ints (str of an int is digits and a sign: nothing to quote)."""
    return "{" + ",".join(map(str, values)) + "}"


def _apply_plain_postgres(conn: Connection, tenant_id: int, batch: _Plain, now_us: int) -> None:
    """PostgreSQL, all under a savepoint that a missing account, a failed check, an overflow or a taken id
    rolls back (locks included) before the general path answers: lock, add, check and number in one
    statement (`_PG_APPLY_TOTALS`), then COPY the rows."""
    import psycopg

    debited, credited = sorted(batch.debited()), sorted(batch.credited())
    ids = debited + credited
    posted = [batch.d_posted.get(a, 0) for a in debited] + [batch.c_posted.get(a, 0) for a in credited]
    pend = [batch.d_pending.get(a, 0) for a in debited] + [batch.c_pending.get(a, 0) for a in credited]
    sides = [1] * len(debited) + [2] * len(credited)
    n = len(batch.ids)
    id_array = _pg_array(ids)
    params = (
        id_array, _pg_array(posted), _pg_array(pend), _pg_array(sides), id_array, tenant_id,
        n, tenant_id, len(ids),
    )  # fmt: skip
    pending = _pending_rows(tenant_id, batch, now_us)
    try:
        with conn.begin_nested():
            updated, broken, n_units, unit, last = conn.exec_driver_sql(_PG_APPLY_TOTALS, params).one()
            if updated != len(ids) or broken:  # missing, another tenant's, or a flag: the general path says which
                raise _Refused
            if last is None:  # the tenant's first transfers: no sequence row yet
                conn.exec_driver_sql(_SEQ_INSERT, (tenant_id, n))
                last = n
            if n_units == 1:
                units: Iterable[str] = repeat(unit, n)
            else:
                rows = conn.exec_driver_sql(
                    "SELECT id, unit FROM ledger_accounts WHERE id = ANY(%s::int4[])", (id_array,)
                )
                units = _units(batch, {int(r[0]): str(r[1]) for r in rows})
            _copy_transfers(conn, _history_rows(tenant_id, batch, int(last) - n + 1, units, now_us))
            if pending:
                conn.exec_driver_sql(
                    "INSERT INTO ledger_pending (tenant_id, transfer_id, state, timeout_us) VALUES (%s, %s, %s, %s)",
                    pending,
                )
    except (IntegrityError, DataError) as exc:  # a taken id, or int64 overflow: the general path answers
        if isinstance(exc, DataError) and not isinstance(exc.orig, psycopg.errors.NumericValueOutOfRange):
            raise
        raise _Refused from None


_SEQ_UPDATE = "UPDATE ledger_sequences SET last_seq = last_seq + %s WHERE tenant_id = %s RETURNING last_seq"
_SEQ_INSERT = "INSERT INTO ledger_sequences (tenant_id, last_seq) VALUES (%s, %s)"


def _take_seq(conn: Connection, tenant_id: int, count: int, sqlite_cursor: Any = None) -> int:
    """The first of `count` new sequence numbers of the tenant (the row is locked until commit)."""
    if sqlite_cursor is not None:
        row = sqlite_cursor.execute(_SEQ_UPDATE.replace("%s", "?"), (count, tenant_id)).fetchone()
        if row is None:
            sqlite_cursor.execute(_SEQ_INSERT.replace("%s", "?"), (tenant_id, count))
        return (count if row is None else int(row[0])) - count + 1
    last = conn.exec_driver_sql(_SEQ_UPDATE, (count, tenant_id)).scalar()
    if last is None:
        conn.exec_driver_sql(_SEQ_INSERT, (tenant_id, count))
        last = count
    return int(last) - count + 1


_new_result = object.__new__
_SET_RESULT = tuple(getattr(TransferResult, f).__set__ for f in ("index", "id", "result", "field", "detail"))


def _created(ids: Sequence[str]) -> list[TransferResult]:
    """CREATED for every id. A frozen dataclass's __init__ pays object.__setattr__ per field; setting the
    slots directly halves the cost, which at 100k transfers/s is a tenth of the budget."""
    set_index, set_id, set_result, set_field, set_detail = _SET_RESULT
    created = Result.CREATED
    out: list[TransferResult] = []
    append = out.append
    for k, tid in enumerate(ids):
        r = _new_result(TransferResult)
        set_index(r, k)
        set_id(r, tid)
        set_result(r, created)
        set_field(r, None)
        set_detail(r, "")
        append(r)
    return out


_DEBITS_CAPPED = int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
_CREDITS_CAPPED = int(AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS)


def _check(dr: _Acct, cr: _Acct) -> Result | None:
    if dr.dp > INT64_MAX or dr.dpn > INT64_MAX or dr.dp + dr.dpn > INT64_MAX:
        return Result.OVERFLOWS_DEBITS
    if cr.cp > INT64_MAX or cr.cpn > INT64_MAX or cr.cp + cr.cpn > INT64_MAX:
        return Result.OVERFLOWS_CREDITS
    if dr.flags & _DEBITS_CAPPED and dr.dp + dr.dpn > dr.cp:
        return Result.EXCEEDS_CREDITS
    if cr.flags & _CREDITS_CAPPED and cr.cp + cr.cpn > cr.dp:
        return Result.EXCEEDS_DEBITS
    return None


def _lock_accounts(conn: Connection, tenant_id: int, ids: list[int]) -> dict[int, _Acct]:
    a = ledger_accounts.c
    out: dict[int, _Acct] = {}
    for i in range(0, len(ids), _CHUNK):
        stmt = (
            select(a.id, a.unit, a.flags, a.debits_posted, a.credits_posted, a.debits_pending, a.credits_pending)
            .where(a.id.in_(ids[i : i + _CHUNK]), a.tenant_id == tenant_id)
            .order_by(a.id)
            .with_for_update()
        )
        for r in conn.execute(stmt):
            out[int(r.id)] = _Acct(
                tenant_id, r.unit, int(r.flags), int(r.debits_posted), int(r.credits_posted),
                int(r.debits_pending), int(r.credits_pending),
            )  # fmt: skip
    return out


def _load_pending_state(conn: Connection, tenant_id: int, ids: list[str]) -> dict[str, tuple[str, int | None]]:
    p = ledger_pending.c
    out: dict[str, tuple[str, int | None]] = {}
    for i in range(0, len(ids), _CHUNK):
        for r in conn.execute(
            select(p.transfer_id, p.state, p.timeout_us).where(
                p.tenant_id == tenant_id, p.transfer_id.in_(ids[i : i + _CHUNK])
            )
        ):
            out[r.transfer_id] = (r.state, None if r.timeout_us is None else int(r.timeout_us))
    return out


_INSERT_COLUMNS = (
    "tenant_id", "transfer_id", "seq", "debit_account_id", "credit_account_id", "amount", "unit", "code",
    "reference", "flags", "pending_id", "timeout_us", "ts_us",
)  # fmt: skip


_SQLITE_INSERT = f"INSERT INTO ledger_transfers ({', '.join(_INSERT_COLUMNS)}) VALUES ({', '.join('?' * 13)})"

_SQLITE_INSERT_PENDING = "INSERT INTO ledger_pending (tenant_id, transfer_id, state, timeout_us) VALUES (?, ?, ?, ?)"

_COPY_TYPES = ("int4", "text", "int8", "int4", "int4", "int8", "text", "text", "text", "int2", "text", "int8", "int8")


def _copy_transfers(conn: Connection, rows: Iterable[tuple[Any, ...]]) -> None:
    """PostgreSQL: binary COPY, several times faster than executemany; a duplicate id still surfaces
    as IntegrityError, so write_transaction's retry-and-see-the-winner logic holds."""
    import psycopg

    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        with cursor.copy(f"COPY ledger_transfers ({', '.join(_INSERT_COLUMNS)}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(_COPY_TYPES)
            for row in rows:
                copy.write_row(row)
    except psycopg.errors.UniqueViolation as exc:
        raise IntegrityError("COPY ledger_transfers", None, exc) from exc
    finally:
        cursor.close()


def _write(
    conn: Connection,
    tenant_id: int,
    new: list[StoredTransfer],
    accounts: dict[int, _Acct],
    touched: set[int],
    pend_changes: dict[str, tuple[str, int | None]],
    new_pending: set[str],
) -> None:
    if not new:
        return
    last = conn.execute(
        update(ledger_sequences)
        .where(ledger_sequences.c.tenant_id == tenant_id)
        .values(last_seq=ledger_sequences.c.last_seq + len(new))
        .returning(ledger_sequences.c.last_seq)
    ).scalar()
    if last is None:
        conn.execute(ledger_sequences.insert().values(tenant_id=tenant_id, last_seq=len(new)))
        last = len(new)
    first = int(last) - len(new) + 1
    rows = [
        (tenant_id, s.id, first + k, s.debit_account_id, s.credit_account_id, s.amount, s.unit, s.code,
         s.reference, int(s.flags), s.pending_id, s.timeout_us, s.ts_us)
        for k, s in enumerate(new)
    ]  # fmt: skip
    # Driver-level executemany of tuples: SQLAlchemy's per-row parameter processing for a list of dicts
    # cost more than the insert itself.
    if conn.dialect.name == "postgresql":
        _copy_transfers(conn, rows)
    else:
        ph = ", ".join(["?"] * len(_INSERT_COLUMNS))
        conn.exec_driver_sql(f"INSERT INTO ledger_transfers ({', '.join(_INSERT_COLUMNS)}) VALUES ({ph})", rows)
    if new_pending:
        conn.execute(
            ledger_pending.insert(),
            [
                {
                    "tenant_id": tenant_id,
                    "transfer_id": pid,
                    "state": pend_changes[pid][0],
                    "timeout_us": pend_changes[pid][1],
                }
                for pid in sorted(new_pending)
            ],
        )
    resolved = [pid for pid in pend_changes if pid not in new_pending]
    if resolved:
        p = ledger_pending.c
        conn.execute(
            update(ledger_pending)
            .where(p.tenant_id == tenant_id, p.transfer_id == bindparam("b_id"))
            .values(state=bindparam("b_state")),
            [{"b_id": pid, "b_state": pend_changes[pid][0]} for pid in sorted(resolved)],
        )
    mark = "?" if conn.dialect.name == "sqlite" else "%s"
    conn.exec_driver_sql(
        f"UPDATE ledger_accounts SET debits_posted = {mark}, credits_posted = {mark}, debits_pending = {mark},"
        f" credits_pending = {mark} WHERE id = {mark}",
        [(accounts[aid].dp, accounts[aid].cp, accounts[aid].dpn, accounts[aid].cpn, aid) for aid in sorted(touched)],
    )


# --- transactions ----------------------------------------------------------------------------------------


def write_transaction(engine: Engine, fn: Callable[[Connection], T], attempts: int = 5) -> T:
    """Run fn in one write transaction (see the module docstring for the locking per database).

    On PostgreSQL a unique violation means a concurrent writer created the same transfer id, account
    or sequence row first; rerunning sees its committed row, so the retry is the idempotent answer.
    """
    sqlite = engine.dialect.name == "sqlite"
    for attempt in range(attempts):
        try:
            with begin_write(engine) as conn:
                return fn(conn)
        except (IntegrityError, OperationalError) as exc:
            retryable = not sqlite and (isinstance(exc, IntegrityError) or "deadlock" in str(exc).lower())
            if not retryable or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def create_transfers(
    engine: Engine, tenant_id: int, transfers: Sequence[Transfer], now_us: int, allow_system_ids: bool = False
) -> list[TransferResult]:
    def run(conn: Connection) -> list[TransferResult]:
        return apply_batch(conn, tenant_id, transfers, now_us, allow_system_ids)

    return write_transaction(engine, run)


def open_pending_due(conn: Connection, tenant_id: int, now_us: int, limit: int = 10_000) -> list[str]:
    p = ledger_pending.c
    rows = conn.execute(
        select(p.transfer_id)
        .where(p.tenant_id == tenant_id, p.state == "pending", p.timeout_us.is_not(None), p.timeout_us <= now_us)
        .order_by(p.timeout_us, p.transfer_id)
        .limit(limit)
    )
    return [r.transfer_id for r in rows]


def expiry_id(pending_id: str) -> str:
    """Deterministic id of the void that expires a pending transfer, so a repeated sweep is a no-op."""
    import hashlib

    return f"{SYSTEM_PREFIX}expire:{hashlib.sha256(pending_id.encode()).hexdigest()[:40]}"


def expire_pending(engine: Engine, tenant_id: int, now_us: int) -> list[str]:
    """Release every open reservation whose timeout is at or before `now_us`; returns their ids.

    Each release is an immutable VOID_PENDING transfer with code "expire" and time = the timeout,
    written through the normal batch path (so it takes the same locks as a racing post: whichever
    commits first wins, the other sees the pending closed).
    """

    def run(conn: Connection) -> list[str]:
        due = open_pending_due(conn, tenant_id, now_us)
        if not due:
            return []
        pend = load_transfers(conn, tenant_id, due)
        batch = [
            Transfer(expiry_id(pid), None, None, None, "expire", "", TransferFlags.VOID_PENDING, pid, 0,
                     pend[pid].timeout_us)
            for pid in due
        ]  # fmt: skip
        results = apply_batch(conn, tenant_id, batch, now_us, allow_system_ids=True)
        done = [pid for pid, r in zip(due, results, strict=True) if r.result is Result.CREATED]
        if done:
            p = ledger_pending.c
            conn.execute(
                update(ledger_pending)
                .where(p.tenant_id == tenant_id, p.transfer_id == bindparam("b_id"))
                .values(state="expired"),
                [{"b_id": pid} for pid in done],
            )
        return done

    return write_transaction(engine, run)
