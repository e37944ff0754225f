"""The ledger's promises: balanced per entry and per currency, immutable, idempotent on its
key, non-negative accounts never overdrawn (also under concurrency), enforced by PostgreSQL."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction

from cleanroom.errors import InsufficientBalance, UnbalancedEntry
from payouts.ledger import Line, account_get, entry_post
from payouts.models import Account, JournalEntry, Posting
from payouts.reconcile import ledger_reconcile


def _accounts() -> tuple[Account, Account]:
    return (
        account_get(kind=Account.Kind.EXTERNAL_FUNDING, currency="EUR"),
        account_get(kind=Account.Kind.PLATFORM_REVENUE, currency="EUR"),
    )


def test_balanced_entry_is_posted_and_moves_balances(db: Any) -> None:
    external, revenue = _accounts()
    entry, created = entry_post(
        key="t:1", kind="correction", lines=[Line(external, -500), Line(revenue, 500)]
    )
    assert created is True
    assert sorted(entry.postings.values_list("amount", flat=True)) == [-500, 500]
    external.refresh_from_db()
    revenue.refresh_from_db()
    assert (external.balance, revenue.balance) == (-500, 500)


def test_unbalanced_entry_is_refused_and_nothing_written(db: Any) -> None:
    external, revenue = _accounts()
    with pytest.raises(UnbalancedEntry):
        entry_post(key="t:2", kind="correction", lines=[Line(external, -500), Line(revenue, 499)])
    assert JournalEntry.objects.count() == 0
    assert Posting.objects.count() == 0


def test_entry_balanced_in_total_but_not_per_currency_is_refused(db: Any) -> None:
    eur = account_get(kind=Account.Kind.PLATFORM_REVENUE, currency="EUR")
    usd = account_get(kind=Account.Kind.PLATFORM_REVENUE, currency="USD")
    with pytest.raises(UnbalancedEntry):
        entry_post(key="t:3", kind="correction", lines=[Line(eur, -7), Line(usd, 7)])
    assert JournalEntry.objects.count() == 0


def test_same_key_twice_posts_once(db: Any) -> None:
    external, revenue = _accounts()
    lines = [Line(external, -100), Line(revenue, 100)]
    first, created_first = entry_post(key="t:4", kind="correction", lines=lines)
    second, created_second = entry_post(key="t:4", kind="correction", lines=lines)
    assert (created_first, created_second) == (True, False)
    assert first.pk == second.pk
    revenue.refresh_from_db()
    assert revenue.balance == 100
    assert Posting.objects.count() == 2


def test_non_negative_account_is_never_overdrawn(db: Any, business_user: Any) -> None:
    from payouts.services import business_account

    business = business_account(organization=business_user.organization)
    _, revenue = _accounts()
    with pytest.raises(InsufficientBalance), transaction.atomic():
        entry_post(key="t:5", kind="correction", lines=[Line(business, -1), Line(revenue, 1)])
    business.refresh_from_db()
    assert business.balance == 0
    assert JournalEntry.objects.count() == 0


@pytest.mark.skipif(connection.vendor != "postgresql", reason="database guards are PostgreSQL's")
def test_database_refuses_an_unbalanced_entry_written_behind_the_service(db: Any) -> None:
    external, _ = _accounts()
    with pytest.raises(IntegrityError, match="unbalanced"), transaction.atomic():
        entry = JournalEntry.objects.create(key="raw:1", kind="correction")
        Posting.objects.create(entry=entry, account=external, currency="EUR", amount=5)
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    assert not JournalEntry.objects.filter(key="raw:1").exists()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="database guards are PostgreSQL's")
def test_database_refuses_a_line_added_later_to_a_balanced_entry(db: Any) -> None:
    external, revenue = _accounts()
    entry, _ = entry_post(
        key="t:late", kind="correction", lines=[Line(external, -3), Line(revenue, 3)]
    )
    with (
        pytest.raises(IntegrityError, match="unbalanced"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        Posting.objects.create(entry=entry, account=revenue, currency="EUR", amount=1)
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    assert Posting.objects.filter(entry=entry).count() == 2


@pytest.mark.skipif(connection.vendor != "postgresql", reason="database guards are PostgreSQL's")
def test_database_refuses_a_cross_currency_entry_behind_the_service(db: Any) -> None:
    eur = account_get(kind=Account.Kind.PLATFORM_REVENUE, currency="EUR")
    usd = account_get(kind=Account.Kind.PLATFORM_REVENUE, currency="USD")
    with pytest.raises(IntegrityError, match="unbalanced"), transaction.atomic():
        entry = JournalEntry.objects.create(key="raw:2", kind="correction")
        Posting.objects.create(entry=entry, account=eur, currency="EUR", amount=5)
        Posting.objects.create(entry=entry, account=usd, currency="USD", amount=-5)
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


@pytest.mark.skipif(connection.vendor != "postgresql", reason="database guards are PostgreSQL's")
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE payouts_posting SET amount = 1 WHERE entry_id = %s",
        "DELETE FROM payouts_posting WHERE entry_id = %s",
        "UPDATE payouts_journalentry SET memo = 'edited' WHERE id = %s",
        "DELETE FROM payouts_journalentry WHERE id = %s",
    ],
)
def test_entries_and_postings_are_immutable(db: Any, statement: str) -> None:
    external, revenue = _accounts()
    entry, _ = entry_post(
        key="t:6", kind="correction", lines=[Line(external, -9), Line(revenue, 9)]
    )
    with (
        pytest.raises(IntegrityError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(statement, [entry.pk])
    assert sorted(Posting.objects.values_list("amount", flat=True)) == [-9, 9]
    assert JournalEntry.objects.get(pk=entry.pk).memo == ""


@pytest.mark.skipif(connection.vendor != "postgresql", reason="CHECK under row locks")
def test_database_check_refuses_overdraft_written_behind_the_service(
    db: Any, business_user: Any
) -> None:
    from payouts.services import business_account

    business = business_account(organization=business_user.organization)
    with pytest.raises(IntegrityError), transaction.atomic():
        Account.objects.filter(pk=business.pk).update(balance=-1)


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="SQLite (the one-user default) has no row locks"
)
@pytest.mark.django_db(transaction=True)
def test_concurrent_spends_never_overdraw(business_user: Any) -> None:
    """Ten threads each try to spend 30 of a 100 balance: exactly three succeed."""
    from payouts.services import business_account, topup_record

    organization = business_user.organization
    topup_record(organization=organization, amount=100, actor=None)
    business = business_account(organization=organization)
    revenue = account_get(kind=Account.Kind.PLATFORM_REVENUE, currency="EUR")
    outcomes: list[str] = []
    barrier = threading.Barrier(10)

    def spend(index: int) -> None:
        barrier.wait()
        try:
            entry_post(
                key=f"spend:{index}",
                kind="correction",
                lines=[Line(business, -30), Line(revenue, 30)],
            )
            outcomes.append("ok")
        except InsufficientBalance:
            outcomes.append("refused")
        except Exception as error:  # anything else fails the test below
            outcomes.append(repr(error))
        finally:
            connection.close()

    threads = [threading.Thread(target=spend, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    business.refresh_from_db()
    assert sorted(outcomes) == ["ok"] * 3 + ["refused"] * 7
    assert business.balance == 10
    assert ledger_reconcile().ok
