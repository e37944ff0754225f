"""Money services: prices, business balances and top-ups, the per-query charge and
distribution, payout destinations.

Invariants:
- amounts are integers in micro-units; no float touches money;
- a query is charged at most once (its distribution is unique on the query and its
  ledger entry on ``query:<id>:charge``), in the caller's release transaction;
- gross = platform fee + share * pool size + remainder, to the unit: each share is
  floored, the remainder goes to the rounding account, the fee is floored too;
- a share never depends on anyone's records: it is the same for every member;
- a business balance never goes negative (checked under a row lock, backed by a CHECK);
- a query's price is HELD at submission (``query:<id>:hold``: business balance -> the
  currency's ``query_holds`` account, under the account row locks, in the submission
  transaction), so an accepted query can always be paid for. The hold ends exactly once:
  consumed by the charge (``query:<id>:charge`` moves the held money to fee, pool and
  rounding) or given back (``query:<id>:hold:released``) when the query is rejected or
  fails before its mechanism ran. Both are decided under the same account locks, and
  each checks the other's key, so a hold is never both charged and given back;
- every change is in the audit log in the same transaction.
"""

from __future__ import annotations

import uuid
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from audit.services import audit_record, audit_record_many
from cleanroom.accounts.models import Contributor, Organization
from cleanroom.errors import Conflict, InsufficientBalance, ValidationFailed
from payouts.crash import crash_point
from payouts.ledger import Line, account_get, accounts_lock, entry_post
from payouts.membership import ranges_encode, ranges_from_members, ranges_hash, ranges_size
from payouts.models import Account, Distribution, JournalEntry, PayoutDestination, PoolMembership
from payouts.money import MICRO, micro_format


def default_currency() -> str:
    return str(getattr(settings, "CLEANROOM_CURRENCY", "EUR"))


def _decimal(price: dict[str, Any], field: str) -> Decimal:
    try:
        value = Decimal(str(price.get(field, "0")))
    except (InvalidOperation, ValueError):
        raise ValidationFailed(f"price.{field} is not a decimal number.") from None
    if not value.is_finite() or value < 0:
        raise ValidationFailed(f"price.{field} must be a non-negative number.")
    return value


def query_price(*, price: dict[str, Any], epsilon: Any) -> int:
    """Price of a query in micro-units: per_query + per_epsilon * epsilon, rounded up."""
    per_query = _decimal(price, "per_query")
    per_epsilon = _decimal(price, "per_epsilon")
    total = (per_query + per_epsilon * Decimal(str(epsilon))) * MICRO
    return int(total.to_integral_value(rounding=ROUND_CEILING))


def platform_fee(*, price: dict[str, Any], gross: int) -> int:
    """The platform's cut of `gross`, floored (what is not a whole micro-unit goes to the pool)."""
    fraction = _decimal(price, "platform_fee")
    if fraction > 1:
        raise ValidationFailed("price.platform_fee is a fraction between 0 and 1.")
    return int((Decimal(gross) * fraction).to_integral_value(rounding=ROUND_FLOOR))


def business_account(*, organization: Organization, currency: str | None = None) -> Account:
    return account_get(
        kind=Account.Kind.BUSINESS,
        currency=currency or default_currency(),
        organization=organization,
    )


def balance_ensure(*, organization: Any, amount: int, currency: str | None = None) -> None:
    """Raise InsufficientBalance when the organization cannot pay `amount` micro-units."""
    currency = currency or default_currency()
    account = Account.objects.filter(
        kind=Account.Kind.BUSINESS, currency=currency, organization=organization
    ).first()
    balance = account.balance if account else 0
    if balance < amount:
        raise InsufficientBalance(
            f"This query costs {micro_format(amount)} {currency} and the balance is "
            f"{micro_format(balance)} {currency}: top up first."
        )


@transaction.atomic
def topup_record(
    *,
    organization: Organization,
    amount: int,
    actor: Any,
    currency: str | None = None,
    reference: str = "",
) -> JournalEntry:
    """Credit a business balance from outside the system, once per `reference`.

    A reference already recorded for the same amount and currency is that top-up (nothing
    is credited again); for another amount or currency it is refused, never ignored.
    """
    currency = (currency or default_currency()).upper()
    if amount <= 0:
        raise ValidationFailed("amount must be greater than zero.")
    key = f"topup:{organization.pk}:{reference or uuid.uuid4().hex}"
    account = business_account(organization=organization, currency=currency)
    entry, created = entry_post(
        key=key,
        kind=JournalEntry.Kind.TOP_UP,
        memo=f"top-up of organization {organization.pk}",
        lines=[
            Line(account_get(kind=Account.Kind.EXTERNAL_FUNDING, currency=currency), -amount),
            Line(account, amount),
        ],
    )
    if not created and not entry.postings.filter(account=account, amount=amount).exists():
        raise Conflict(
            f"The reference {reference!r} was already used for another top-up of this "
            "organization (a different amount or currency); nothing was credited."
        )
    if created:
        audit_record(
            action="payouts.topup.recorded",
            actor=actor,
            subject=f"organization:{organization.pk}",
            payload={"amount": micro_format(amount), "currency": currency, "entry": entry.pk},
        )
    return entry


def membership_store(*, ranges: np.ndarray) -> PoolMembership:
    """The content-addressed membership row for these ranges (shared by equal pools).

    The returned instance does not carry the (possibly large) ranges blob back.
    """
    digest = ranges_hash(ranges)
    fields = {
        "size": ranges_size(ranges),
        "range_count": len(ranges),
        "first_pk": int(ranges[0, 0]) if len(ranges) else None,
        "last_pk": int(ranges[-1, 1]) - 1 if len(ranges) else None,
    }
    existing = PoolMembership.objects.filter(hash=digest).values_list("pk", flat=True).first()
    if existing is None:
        with connection.cursor() as cursor:
            # ON CONFLICT: a concurrent twin may store the same pool first; no savepoint needed.
            cursor.execute(
                "INSERT INTO payouts_poolmembership "
                "(hash, ranges, size, range_count, first_pk, last_pk, created_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (hash) DO NOTHING RETURNING id",
                [
                    digest,
                    ranges_encode(ranges),
                    fields["size"],
                    fields["range_count"],
                    fields["first_pk"],
                    fields["last_pk"],
                    timezone.now(),
                ],
            )
            row = cursor.fetchone()
        existing = (
            row[0] if row else PoolMembership.objects.values_list("pk", flat=True).get(hash=digest)
        )
    return PoolMembership(pk=existing, hash=digest, **fields)


def _currency_of(query: Any) -> str:
    price = query.dataset.price or {}
    return str(
        getattr(query, "currency", "") or price.get("currency") or default_currency()
    ).upper()


def _hold_key(query: Any) -> str:
    return f"query:{query.pk}:hold"


def query_hold(*, query: Any) -> JournalEntry | None:
    """Hold the query's price: business balance -> ``query_holds`` (idempotent on the query).

    Called in the submission transaction; raises InsufficientBalance (under the business
    account's row lock, backed by its CHECK) when the balance cannot cover it.
    """
    amount = int(query.price or 0)
    if amount <= 0:
        return None
    currency = _currency_of(query)
    entry, created = entry_post(
        key=_hold_key(query),
        kind=JournalEntry.Kind.QUERY_HOLD,
        memo=f"price of query {query.pk} held",
        lines=[
            Line(business_account(organization=query.organization, currency=currency), -amount),
            Line(account_get(kind=Account.Kind.QUERY_HOLDS, currency=currency), amount),
        ],
    )
    if created:
        audit_record(
            action="payouts.query.held",
            actor=getattr(query, "requester", None),
            subject=f"query:{query.pk}",
            dataset=query.dataset.slug,
            payload={"amount": micro_format(amount), "currency": currency, "entry": entry.pk},
        )
    return entry


def _held_amount(query: Any) -> int:
    """What is held for the query and not yet consumed or given back (accounts locked)."""
    hold = JournalEntry.objects.filter(key=_hold_key(query)).first()
    if hold is None:
        return 0
    done = JournalEntry.objects.filter(
        key__in=[f"query:{query.pk}:charge", f"{_hold_key(query)}:released"]
    ).exists()
    if done:
        return 0
    return int(
        hold.postings.filter(account__kind=Account.Kind.QUERY_HOLDS).values_list(
            "amount", flat=True
        )[0]
    )


@transaction.atomic
def query_hold_release(*, query: Any) -> JournalEntry | None:
    """Give a held price back to the business (the query never ran); idempotent, and a
    no-op when nothing is held or the hold was already charged."""
    currency = _currency_of(query)
    business = business_account(organization=query.organization, currency=currency)
    holds = account_get(kind=Account.Kind.QUERY_HOLDS, currency=currency)
    locked = accounts_lock([business.pk, holds.pk])  # serializes with query_charge
    amount = _held_amount(query)
    if amount <= 0:
        return None
    entry, created = entry_post(
        key=f"{_hold_key(query)}:released",
        kind=JournalEntry.Kind.QUERY_HOLD_RELEASE,
        memo=f"price of query {query.pk} given back",
        lines=[Line(holds, -amount), Line(business, amount)],
        locked=locked,
    )
    if created:
        audit_record(
            action="payouts.query.hold_released",
            actor=None,
            subject=f"query:{query.pk}",
            dataset=query.dataset.slug,
            payload={"amount": micro_format(amount), "currency": currency, "entry": entry.pk},
        )
    return entry


def _pk(value: Any) -> Any:
    return getattr(value, "pk", value)


def _charge_accounts(*, organization: Any, currency: str) -> dict[str, Account]:
    """The five accounts a charge may move, locked in pk order, in one round trip."""
    system = [
        Account.Kind.PLATFORM_REVENUE,
        Account.Kind.POOL_CLEARING,
        Account.Kind.ROUNDING,
        Account.Kind.QUERY_HOLDS,
    ]
    for _ in range(2):
        rows = list(
            Account.objects.select_for_update()
            .filter(
                Q(kind__in=system, currency=currency, organization__isnull=True)
                | Q(
                    kind=Account.Kind.BUSINESS, currency=currency, organization_id=_pk(organization)
                )
            )
            .order_by("pk")
        )
        found = {row.kind: row for row in rows}
        if len(found) == 5:
            return found
        for kind in system:  # first charge in this currency: create what is missing
            account_get(kind=kind, currency=currency)
        business_account(organization=organization, currency=currency)
    raise AssertionError("charge accounts could not be created")


@transaction.atomic
def query_charge(*, query: Any, members: Any) -> Distribution:
    """Charge the business the query's price and record its distribution (idempotent on query).

    Called inside the queries code's release transaction with the pool's sorted member pks.
    A refusal (InsufficientBalance) rolls back only this function's savepoint.
    """
    dataset = query.dataset
    price = dataset.price or {}
    currency = str(price.get("currency") or default_currency()).upper()
    gross = getattr(query, "price", None)
    if gross is None:
        gross = query_price(price=price, epsilon=query.epsilon)
    gross = int(gross)
    fee = platform_fee(price=price, gross=gross)
    ranges = ranges_from_members(np.asarray(members, dtype=np.int64))
    size = ranges_size(ranges)
    pool_amount = gross - fee
    share, remainder = divmod(pool_amount, size) if size else (0, pool_amount)
    organization = query.organization
    accounts = _charge_accounts(organization=organization, currency=currency)
    # Paid from the price held at submission when there is one (then it cannot fail for
    # lack of balance); from the balance otherwise (queries recorded before holds).
    held = JournalEntry.objects.filter(key=_hold_key(query)).exists()
    payer = accounts[Account.Kind.QUERY_HOLDS if held else Account.Kind.BUSINESS]
    if held and JournalEntry.objects.filter(key=f"{_hold_key(query)}:released").exists():
        raise Conflict(f"The price of query {query.pk} was given back; it cannot be charged.")
    lines = [Line(payer, -gross)]
    for kind, amount in (
        (Account.Kind.PLATFORM_REVENUE, fee),
        (Account.Kind.POOL_CLEARING, share * size),
        (Account.Kind.ROUNDING, remainder),
    ):
        if amount:
            lines.append(Line(accounts[kind], amount))
    if gross == 0:
        lines = []
    entry, created = entry_post(
        key=f"query:{query.pk}:charge",
        kind=JournalEntry.Kind.QUERY_CHARGE,
        memo=f"query {query.pk} on {dataset.slug}",
        lines=lines,
        locked={account.pk: account for account in accounts.values()},
    )
    if not created:
        return Distribution.objects.get(query_id=query.pk)
    membership = membership_store(ranges=ranges)
    distribution = Distribution.objects.create(
        query_id=query.pk,
        dataset=dataset,
        organization_id=_pk(organization),
        currency=currency,
        epsilon=Decimal(str(query.epsilon)),
        gross=gross,
        fee=fee,
        pool_size=size,
        share=share,
        remainder=remainder,
        membership_id=membership.pk,  # loaded on access: the blob is not carried around
        membership_hash=membership.hash,
        entry=entry,
    )
    actor = getattr(query, "requester", None)
    audit_record_many(
        events=[
            {
                "action": "payouts.query.charged",
                "actor": actor,
                "subject": f"query:{query.pk}",
                "dataset": dataset.slug,
                "payload": {"amount": micro_format(gross), "currency": currency, "entry": entry.pk},
            },
            {
                "action": "payouts.distribution.recorded",
                "actor": actor,
                "subject": f"query:{query.pk}",
                "dataset": dataset.slug,
                "payload": {
                    "gross": micro_format(gross),
                    "fee": micro_format(fee),
                    "pool_size": size,
                    "share": micro_format(share),
                    "remainder": micro_format(remainder),
                    "currency": currency,
                    "membership_hash": membership.hash,
                },
            },
        ]
    )
    crash_point("query_charge.before_commit")
    return distribution


def _iban_valid(iban: str) -> bool:
    if not (15 <= len(iban) <= 34) or not iban[:2].isalpha() or not iban[2:4].isdigit():
        return False
    if not iban.isalnum():
        return False
    rearranged = iban[4:] + iban[:4]
    digits = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(digits) % 97 == 1


@transaction.atomic
def payout_destination_set(
    *, contributor: Contributor, holder_name: str, iban: str, provider: str = "fake_bank"
) -> PayoutDestination:
    """Set where a contributor is paid (a bank account checked by its IBAN checksum)."""
    from payouts.providers import provider_get

    provider_get(provider)  # NotFound-like refusal for an unknown provider
    iban = "".join(iban.split()).upper()
    holder_name = holder_name.strip()
    errors = []
    if not holder_name or len(holder_name) > 140:
        errors.append({"field": "holder_name", "message": "Give the account holder's name."})
    if not _iban_valid(iban):
        errors.append({"field": "iban", "message": "Not a valid IBAN (checksum failed)."})
    if errors:
        raise ValidationFailed("; ".join(e["message"] for e in errors), errors=errors)
    destination, _ = PayoutDestination.objects.update_or_create(
        contributor=contributor,
        defaults={"holder_name": holder_name, "iban": iban, "provider": provider},
    )
    audit_record(
        action="payouts.destination.set",
        actor=contributor.user,
        subject=f"contributor:{contributor.pk}",
        payload={"provider": provider},
    )
    return destination
