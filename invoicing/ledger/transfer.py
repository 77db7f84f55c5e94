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

The batch path is built for throughput: one SELECT for existing ids, one locking SELECT for the
touched accounts, all checks in Python on those rows, then one executemany INSERT for the
transfers and one executemany UPDATE with each touched account's final totals.

Concurrency: on SQLite the transaction starts with BEGIN IMMEDIATE (the database's single writer
lock, taken up front, so no transaction can fail halfway through upgrading a read lock). On
PostgreSQL it runs in READ COMMITTED and takes `SELECT ... FOR UPDATE` on the touched account rows
in ascending id order (a global lock order, hence no deadlocks), and re-reads the open pending
state only after locking, so every balance check sees the latest committed totals. The per-tenant
sequence row is taken last, just before the inserts, which keeps history order equal to commit
order. A unique violation from a concurrent writer of the same id retries the whole batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntFlag, StrEnum
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, bindparam, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from invoicing.ledger.account import AccountFlags
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
    fast = _simple_batch(transfers, static, existing, accounts, now_us)
    if fast is not None:
        new, touched_fast = fast
        _write(conn, tenant_id, new, accounts, touched_fast, {}, set())
        return [TransferResult(k, t.id, Result.CREATED) for k, t in enumerate(transfers)]
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


def _simple_batch(
    transfers: Sequence[Transfer],
    static: list[tuple[Result, str] | None],
    existing: dict[str, StoredTransfer],
    accounts: dict[int, _Acct],
    now_us: int,
) -> tuple[list[StoredTransfer], set[int]] | None:
    """The bulk case in one pass, or None to take the transfer-by-transfer path.

    Applies when every transfer is new, valid, unflagged (no link, no two-phase) and no account is
    both debited and credited in the batch. Then each account's totals only grow in one direction,
    so if the batch's final totals pass every flag and overflow check, every prefix passed too, and
    the outcome (all created, the same totals) is exactly what the one-by-one path would produce.
    """
    if existing or any(s is not None for s in static):
        return None
    debits: dict[int, int] = {}
    credits: dict[int, int] = {}
    seen: set[str] = set()
    for t in transfers:
        if int(t.flags) or t.id in seen:
            return None
        seen.add(t.id)
        dr, cr, amount = t.debit_account_id, t.credit_account_id, t.amount
        assert dr is not None and cr is not None and amount is not None
        a, b = accounts.get(dr), accounts.get(cr)
        if a is None or b is None or a.unit != b.unit:
            return None
        debits[dr] = debits.get(dr, 0) + amount
        credits[cr] = credits.get(cr, 0) + amount
    if not debits.keys().isdisjoint(credits):
        return None
    for aid, total in debits.items():
        a = accounts[aid]
        dp = a.dp + total
        if dp + a.dpn > INT64_MAX or (a.flags & _DEBITS_CAPPED and dp + a.dpn > a.cp):
            return None
    for aid, total in credits.items():
        a = accounts[aid]
        cp = a.cp + total
        if cp + a.cpn > INT64_MAX or (a.flags & _CREDITS_CAPPED and cp + a.cpn > a.dp):
            return None
    for aid, total in debits.items():
        accounts[aid].dp += total
    for aid, total in credits.items():
        accounts[aid].cp += total
    new = [
        StoredTransfer(
            t.id, 0, t.debit_account_id, t.credit_account_id, t.amount, accounts[t.debit_account_id].unit,  # type: ignore[arg-type,index]
            t.code, t.reference, t.flags, None, None, now_us if t.at_us is None else t.at_us,
        )
        for t in transfers
    ]  # fmt: skip
    return new, set(debits) | set(credits)


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


_COPY_TYPES = ("int4", "text", "int8", "int4", "int4", "int8", "text", "text", "text", "int2", "text", "int8", "int8")


def _copy_transfers(conn: Connection, rows: list[tuple[Any, ...]]) -> None:
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
