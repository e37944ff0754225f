"""Reconciliation: recompute every money invariant from the raw rows and report breaches.

Read-only. ``manage.py reconcile_ledger`` prints the report and fails on any problem;
tests and the bench call ``ledger_reconcile()`` after every scenario.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import connection, transaction
from django.db.models import Count, F, Sum

from payouts.models import (
    Account,
    Distribution,
    FakeBankTransfer,
    JournalEntry,
    Payout,
    Posting,
    Settlement,
)
from payouts.money import micro_format


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    balances: list[dict[str, str]] = field(default_factory=list)
    figures: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def _scalar(sql: str) -> list[tuple[object, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return list(cursor.fetchall())


def _open_holds(currency: str) -> int:
    """Sum of the prices held for queries whose hold was neither charged nor given back."""
    closed = set(
        JournalEntry.objects.filter(
            kind__in=[JournalEntry.Kind.QUERY_CHARGE, JournalEntry.Kind.QUERY_HOLD_RELEASE]
        ).values_list("key", flat=True)
    )
    total = 0
    for key, amount in Posting.objects.filter(
        entry__kind=JournalEntry.Kind.QUERY_HOLD,
        account__kind=Account.Kind.QUERY_HOLDS,
        currency=currency,
    ).values_list("entry__key", "amount"):
        query = key.removesuffix(":hold")
        if f"{query}:charge" not in closed and f"{key}:released" not in closed:
            total += int(amount)
    return total


def ledger_reconcile() -> Report:
    """Check the books in one consistent snapshot (REPEATABLE READ on PostgreSQL when not
    already in a transaction), so a payout or settlement committing meanwhile cannot make
    two of its figures disagree."""
    if connection.in_atomic_block or connection.vendor != "postgresql":
        with transaction.atomic():
            return _reconcile()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        return _reconcile()


def _reconcile() -> Report:
    report = Report()
    problems = report.problems
    for entry_id, currency, total in _scalar(
        "SELECT entry_id, currency, SUM(amount) FROM payouts_posting "
        "GROUP BY entry_id, currency HAVING SUM(amount) <> 0 LIMIT 20"
    ):
        problems.append(f"entry {entry_id} is unbalanced in {currency}: {total}")
    for currency, total in _scalar(
        "SELECT currency, SUM(amount) FROM payouts_posting GROUP BY currency HAVING SUM(amount) <> 0"
    ):
        problems.append(f"the ledger does not sum to zero in {currency}: {total}")
    sums = {
        row["account_id"]: int(row["total"])
        for row in Posting.objects.values("account_id").annotate(total=Sum("amount"))
    }
    for account in Account.objects.select_related("organization").order_by("pk"):
        posted = sums.get(account.pk, 0)
        if posted != account.balance:
            problems.append(
                f"account {account} holds {account.balance} but its postings sum to {posted}"
            )
        if account.is_non_negative and account.balance < 0:
            problems.append(f"non-negative account {account} is at {account.balance}")
        report.balances.append(
            {
                "account": account.kind,
                "currency": account.currency,
                "organization": account.organization.name if account.organization else "",
                "balance": micro_format(account.balance),
            }
        )
    payable_ids = list(
        Account.objects.filter(kind=Account.Kind.CONTRIBUTOR_PAYABLE).values_list("pk", flat=True)
    )
    negative = (
        Posting.objects.filter(account_id__in=payable_ids)
        .values("contributor_pk", "currency")
        .annotate(total=Sum("amount"))
        .filter(total__lt=0)[:20]
    )
    for row in negative:
        problems.append(
            f"contributor {row['contributor_pk']} owes {row['total']} {row['currency']}"
        )
    for distribution in Distribution.objects.exclude(
        gross=F("fee") + F("share") * F("pool_size") + F("remainder")
    )[:20]:
        problems.append(f"{distribution} does not conserve money")
    charged = {
        row["entry_id"]: -int(row["total"])
        for row in Posting.objects.filter(
            entry__kind=JournalEntry.Kind.QUERY_CHARGE,
            # Charged from the held price (queries submitted with a hold) or the balance.
            account__kind__in=[Account.Kind.BUSINESS, Account.Kind.QUERY_HOLDS],
        )
        .values("entry_id")
        .annotate(total=Sum("amount"))
    }
    for pk, entry_id, gross in Distribution.objects.values_list("pk", "entry_id", "gross"):
        if charged.get(entry_id, 0) != gross:
            problems.append(f"distribution {pk} charged {charged.get(entry_id, 0)}, priced {gross}")
    for settlement in Settlement.objects.filter(status=Settlement.Status.COMPLETED):
        lines = Posting.objects.filter(
            entry__settlement=settlement,
            entry__kind=JournalEntry.Kind.SETTLEMENT,
            contributor_pk__isnull=False,
        ).aggregate(total=Sum("amount"), n=Count("id"))
        owed = Distribution.objects.filter(settlement=settlement).aggregate(
            total=Sum(F("share") * F("pool_size"))
        )["total"]
        if int(lines["total"] or 0) != int(owed or 0) or int(owed or 0) != settlement.total_amount:
            problems.append(
                f"{settlement}: lines {lines['total']}, distributions {owed}, recorded {settlement.total_amount}"
            )
        if lines["n"] != settlement.contributor_count:
            problems.append(
                f"{settlement}: {lines['n']} lines for {settlement.contributor_count} contributors"
            )
    for currency in Account.objects.values_list("currency", flat=True).distinct():
        in_transit = (
            Account.objects.filter(
                kind=Account.Kind.PAYOUTS_IN_TRANSIT, currency=currency
            ).aggregate(total=Sum("balance"))["total"]
            or 0
        )
        open_payouts = (
            Payout.objects.filter(
                currency=currency, status__in=[Payout.Status.PENDING, Payout.Status.SENT]
            ).aggregate(total=Sum("amount"))["total"]
            or 0
        )
        if in_transit != open_payouts:
            problems.append(
                f"{currency} in transit {in_transit} but open payouts sum to {open_payouts}"
            )
        paid_out = (
            Account.objects.filter(kind=Account.Kind.EXTERNAL_PAYOUTS, currency=currency).aggregate(
                total=Sum("balance")
            )["total"]
            or 0
        )
        paid = (
            Payout.objects.filter(currency=currency, status=Payout.Status.PAID).aggregate(
                total=Sum("amount")
            )["total"]
            or 0
        )
        if paid_out != paid:
            problems.append(f"{currency} paid out {paid_out} but paid payouts sum to {paid}")
        # Held prices: what the holds account carries is exactly the open holds (a hold
        # with neither its charge nor its give-back).
        held = (
            Account.objects.filter(kind=Account.Kind.QUERY_HOLDS, currency=currency).aggregate(
                total=Sum("balance")
            )["total"]
            or 0
        )
        open_holds = _open_holds(currency)
        if held != open_holds:
            problems.append(f"{currency} held {held} but open query holds sum to {open_holds}")
    known = set(Payout.objects.values_list("idempotency_key", flat=True))
    for key in FakeBankTransfer.objects.exclude(idempotency_key__in=known).values_list(
        "idempotency_key", flat=True
    )[:20]:
        problems.append(f"the bank holds a transfer {key} that no payout asked for")
    report.figures = {
        "entries": str(JournalEntry.objects.count()),
        "postings": str(Posting.objects.count()),
        "distributions": str(Distribution.objects.count()),
        "settlements": str(Settlement.objects.count()),
        "payouts": str(Payout.objects.count()),
    }
    return report
