"""The double-entry ledger: the only code that writes journal entries and postings.

Invariants (also guarded by the database on PostgreSQL, see migration 0002):
- the postings of an entry sum to zero per currency (checked here first for a clear
  ``UnbalancedEntry``; the deferred constraint trigger makes it impossible anyway);
- entries and postings are never updated or deleted: corrections are new entries;
- every entry is unique on its idempotency key: posting the same key twice returns the
  existing entry and changes nothing (a redelivered task is a no-op);
- an account marked non-negative never goes below zero: accounts are locked in pk order
  (no deadlocks), checked, then updated; a CHECK constraint backs the check;
- ``Account.balance`` equals the sum of the account's postings (``reconcile_ledger`` checks it).
"""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from django.db import IntegrityError, connection, transaction
from django.db.models import Sum
from django.utils import timezone

from cleanroom.accounts.models import Organization
from cleanroom.errors import Conflict, InsufficientBalance, UnbalancedEntry
from payouts.models import Account, JournalEntry, Posting
from payouts.money import micro_format

NON_NEGATIVE_KINDS = {
    Account.Kind.BUSINESS,
    Account.Kind.POOL_CLEARING,
    Account.Kind.CONTRIBUTOR_PAYABLE,
    Account.Kind.PAYOUTS_IN_TRANSIT,
    Account.Kind.QUERY_HOLDS,
}


@dataclass(frozen=True)
class Line:
    account: Account
    amount: int
    contributor_pk: int | None = None


def account_get(*, kind: str, currency: str, organization: Organization | None = None) -> Account:
    """The account of this kind and currency (created on first use)."""
    filters = {"kind": kind, "currency": currency, "organization": organization}
    account = Account.objects.filter(**filters).first()
    if account is not None:
        return account
    try:
        with transaction.atomic():
            return Account.objects.create(**filters, is_non_negative=kind in NON_NEGATIVE_KINDS)
    except IntegrityError:
        return Account.objects.get(**filters)


def _check_balanced(lines: Iterable[tuple[str, int]]) -> None:
    totals: dict[str, int] = defaultdict(int)
    for currency, amount in lines:
        totals[currency] += amount
    for currency, total in totals.items():
        if total != 0:
            raise UnbalancedEntry(f"Postings in {currency} sum to {micro_format(total)}, not zero.")


def accounts_lock(pks: Iterable[int]) -> dict[int, Account]:
    """Lock accounts in pk order (every writer does, so no deadlock) with fresh balances."""
    return {
        account.pk: account
        for account in Account.objects.select_for_update().filter(pk__in=list(pks)).order_by("pk")
    }


def _check(deltas: dict[int, int], accounts: dict[int, Account]) -> None:
    """Refuse a movement that would overdraw a non-negative account (accounts are locked)."""
    for pk in sorted(deltas):
        account = accounts[pk]
        if account.is_non_negative and account.balance + deltas[pk] < 0:
            if account.kind == Account.Kind.BUSINESS:
                raise InsufficientBalance(
                    f"The balance is {micro_format(account.balance)} {account.currency}; "
                    f"{micro_format(-deltas[pk])} {account.currency} is needed."
                )
            raise Conflict(f"Account {account} would go negative.")


def _apply(deltas: dict[int, int]) -> None:
    """Move the balances of locked, checked accounts in one statement."""
    moves = [(pk, delta) for pk, delta in sorted(deltas.items()) if delta]
    if not moves:
        return
    values = ", ".join(["(CAST(%s AS bigint), CAST(%s AS bigint))"] * len(moves))
    params: list[int] = [number for move in moves for number in move]
    with connection.cursor() as cursor:
        # A CTE of (id, delta): one statement on PostgreSQL and SQLite alike.
        cursor.execute(
            f"WITH moves (id, delta) AS (VALUES {values}) "  # noqa: S608 (placeholders only)
            "UPDATE payouts_account SET balance = balance + "
            "(SELECT moves.delta FROM moves WHERE moves.id = payouts_account.id) "
            "WHERE id IN (SELECT moves.id FROM moves)",
            params,
        )


def _entry_insert(*, key: str, kind: str, memo: str, settlement_id: int | None) -> int | None:
    """Insert the entry unless its key exists (then None): one round trip, no savepoint."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO payouts_journalentry (key, kind, memo, settlement_id, created_at) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (key) DO NOTHING RETURNING id",
            [key, kind, memo[:300], settlement_id, timezone.now()],
        )
        row = cursor.fetchone()
    return int(row[0]) if row else None


def entry_post(
    *,
    key: str,
    kind: str,
    lines: list[Line],
    memo: str = "",
    settlement_id: int | None = None,
    locked: dict[int, Account] | None = None,
) -> tuple[JournalEntry, bool]:
    """Post a balanced entry once per key: returns (entry, created).

    Runs in the caller's transaction (no savepoint of its own: callers that want to
    survive a refusal wrap it in theirs). `locked`: accounts the caller already locked.
    """
    if any(line.amount == 0 for line in lines):
        raise UnbalancedEntry("A posting of zero is not a movement of money.")
    _check_balanced((line.account.currency, line.amount) for line in lines)
    deltas: dict[int, int] = defaultdict(int)
    for line in lines:
        deltas[line.account.pk] += line.amount
    with transaction.atomic(savepoint=False):
        # The key first: a twin that already posted it (or is posting it: the insert waits
        # for its commit) wins, and its effect on balances is not checked a second time.
        # A refusal below raises through this block: nothing written stays.
        entry_pk = _entry_insert(key=key, kind=kind, memo=memo, settlement_id=settlement_id)
        if entry_pk is None:
            return JournalEntry.objects.get(key=key), False
        locked = locked if locked is not None else accounts_lock(deltas)
        _check(deltas, locked)
        _apply(deltas)
        Posting.objects.bulk_create(
            Posting(
                entry_id=entry_pk,
                account=line.account,
                contributor_pk=line.contributor_pk,
                currency=line.account.currency,
                amount=line.amount,
            )
            for line in lines
        )
        return JournalEntry(
            pk=entry_pk, key=key, kind=kind, memo=memo[:300], settlement_id=settlement_id
        ), True


def entry_post_subledger(
    *,
    key: str,
    kind: str,
    counter: Account,
    subledger: Account,
    contributor_pks: np.ndarray,
    amounts: np.ndarray,
    memo: str = "",
    settlement_id: int | None = None,
) -> tuple[JournalEntry, bool]:
    """A large entry: one line per contributor on `subledger`, balanced by one line on `counter`.

    Written with COPY on PostgreSQL (a million lines in a few seconds); bulk_create elsewhere.
    """
    if counter.currency != subledger.currency:
        raise UnbalancedEntry("A sub-ledger entry is in one currency.")
    contributor_pks = np.asarray(contributor_pks, dtype=np.int64)
    amounts = np.asarray(amounts, dtype=np.int64)
    if contributor_pks.shape != amounts.shape or not amounts.size:
        raise UnbalancedEntry("One amount per contributor, at least one line.")
    if int(amounts.min()) <= 0:
        raise UnbalancedEntry("Sub-ledger lines of this entry must be positive.")
    total = int(amounts.sum())
    currency = counter.currency
    deltas = {counter.pk: -total, subledger.pk: total}
    with transaction.atomic(savepoint=False):
        entry_pk = _entry_insert(key=key, kind=kind, memo=memo, settlement_id=settlement_id)
        if entry_pk is None:
            return JournalEntry.objects.get(key=key), False
        _check(deltas, accounts_lock(deltas))
        _apply(deltas)
        entry = JournalEntry(
            pk=entry_pk, key=key, kind=kind, memo=memo[:300], settlement_id=settlement_id
        )
        Posting.objects.create(entry=entry, account=counter, currency=currency, amount=-total)
        if connection.vendor == "postgresql":
            _copy_lines(entry.pk, subledger.pk, currency, contributor_pks, amounts)
        else:
            for start in range(0, amounts.size, 5000):
                Posting.objects.bulk_create(
                    Posting(
                        entry=entry,
                        account=subledger,
                        contributor_pk=int(pk),
                        currency=currency,
                        amount=int(amount),
                    )
                    for pk, amount in zip(
                        contributor_pks[start : start + 5000],
                        amounts[start : start + 5000],
                        strict=True,
                    )
                )
        return entry, True


def _copy_lines(
    entry_pk: int, account_pk: int, currency: str, pks: np.ndarray, amounts: np.ndarray
) -> None:
    prefix = f"{entry_pk}\t{account_pk}\t{currency}\t"
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg 3 cursor
        with raw.copy(
            "COPY payouts_posting (entry_id, account_id, currency, contributor_pk, amount) FROM STDIN"
        ) as copy:
            step = 100_000
            for start in range(0, pks.size, step):
                buffer = io.StringIO()
                for pk, amount in zip(
                    pks[start : start + step].tolist(),
                    amounts[start : start + step].tolist(),
                    strict=True,
                ):
                    buffer.write(f"{prefix}{pk}\t{amount}\n")
                copy.write(buffer.getvalue())


def subledger_balances(*, account: Account, contributor_pks: Iterable[int]) -> dict[int, int]:
    """Sum of each contributor's lines on a sub-ledger account."""
    rows = (
        Posting.objects.filter(account=account, contributor_pk__in=list(contributor_pks))
        .values("contributor_pk")
        .annotate(total=Sum("amount"))
    )
    return {int(row["contributor_pk"] or 0): int(row["total"]) for row in rows}
