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
from django.db.models import F, Sum

from cleanroom.accounts.models import Organization
from cleanroom.errors import Conflict, InsufficientBalance, UnbalancedEntry
from payouts.models import Account, JournalEntry, Posting
from payouts.money import micro_format

NON_NEGATIVE_KINDS = {
    Account.Kind.BUSINESS,
    Account.Kind.POOL_CLEARING,
    Account.Kind.CONTRIBUTOR_PAYABLE,
    Account.Kind.PAYOUTS_IN_TRANSIT,
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


def _apply(deltas: dict[int, int]) -> None:
    """Lock the accounts in pk order, refuse overdrafts, then move their balances."""
    accounts = {
        account.pk: account
        for account in Account.objects.select_for_update().filter(pk__in=deltas).order_by("pk")
    }
    for pk in sorted(deltas):
        account = accounts[pk]
        if account.is_non_negative and account.balance + deltas[pk] < 0:
            if account.kind == Account.Kind.BUSINESS:
                raise InsufficientBalance(
                    f"The balance is {micro_format(account.balance)} {account.currency}; "
                    f"{micro_format(-deltas[pk])} {account.currency} is needed."
                )
            raise Conflict(f"Account {account} would go negative.")
    for pk in sorted(deltas):
        if deltas[pk]:
            Account.objects.filter(pk=pk).update(balance=F("balance") + deltas[pk])


def entry_post(
    *,
    key: str,
    kind: str,
    lines: list[Line],
    memo: str = "",
    settlement_id: int | None = None,
) -> tuple[JournalEntry, bool]:
    """Post a balanced entry once per key: returns (entry, created)."""
    if any(line.amount == 0 for line in lines):
        raise UnbalancedEntry("A posting of zero is not a movement of money.")
    _check_balanced((line.account.currency, line.amount) for line in lines)
    with transaction.atomic():
        existing = JournalEntry.objects.filter(key=key).first()
        if existing is not None:
            return existing, False
        try:
            with transaction.atomic():
                entry = JournalEntry.objects.create(
                    key=key, kind=kind, memo=memo[:300], settlement_id=settlement_id
                )
        except IntegrityError:
            # A concurrent twin committed the same key first: theirs stands.
            return JournalEntry.objects.get(key=key), False
        deltas: dict[int, int] = defaultdict(int)
        for line in lines:
            deltas[line.account.pk] += line.amount
        _apply(deltas)
        Posting.objects.bulk_create(
            Posting(
                entry=entry,
                account=line.account,
                contributor_pk=line.contributor_pk,
                currency=line.account.currency,
                amount=line.amount,
            )
            for line in lines
        )
        return entry, True


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
    with transaction.atomic():
        existing = JournalEntry.objects.filter(key=key).first()
        if existing is not None:
            return existing, False
        try:
            with transaction.atomic():
                entry = JournalEntry.objects.create(
                    key=key, kind=kind, memo=memo[:300], settlement_id=settlement_id
                )
        except IntegrityError:
            return JournalEntry.objects.get(key=key), False
        _apply({counter.pk: -total, subledger.pk: total})
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
