"""Payouts: pay contributors whose balance is over the threshold, through a PayoutProvider.

Invariants:
- at most one payout per (settlement, contributor), unique on its idempotency key; its
  amount is moved from the contributor's payable line to "in transit" in the same
  transaction that creates it (so it cannot be paid twice from one balance: destinations
  are locked while balances are read);
- the provider is called outside any transaction with the payout's idempotency key and
  the request frozen at creation, so a retry after a timeout or a crash replays it;
- states only move forward (pending -> sent -> paid | failed; pending -> paid | failed)
  by conditional updates: duplicated, late or out-of-order webhooks change nothing;
- paid: in transit -> external payouts; failed: in transit -> back to the contributor;
- every sent, paid and failed payout is in the audit log.
"""

from __future__ import annotations

from django.conf import settings
from django.db import IntegrityError, transaction

from audit.services import audit_record
from payouts.crash import crash_point
from payouts.ledger import Line, account_get, entry_post, subledger_balances
from payouts.models import (
    Account,
    JournalEntry,
    Payout,
    PayoutDestination,
    ProviderEvent,
    Settlement,
)
from payouts.money import micro_format
from payouts.providers import provider_get
from payouts.providers.base import ProviderRejected, TransferRequest, WebhookEvent

OPEN_STATES = (Payout.Status.PENDING, Payout.Status.SENT)


def payout_threshold() -> int:
    """Minimum balance (micro-units) that is paid out; smaller balances wait."""
    return int(getattr(settings, "CLEANROOM_PAYOUT_THRESHOLD_MICRO", 1_000_000))


def payouts_create(
    *, settlement: Settlement, chunk: int = 500, threshold: int | None = None
) -> list[int]:
    """Create the payouts of a completed settlement (idempotent); returns pending payout ids.

    ``threshold`` overrides ``payout_threshold()`` (the demo pays its small shares).
    """
    if settlement.status != Settlement.Status.COMPLETED:
        return []
    currency = settlement.currency
    payable = account_get(kind=Account.Kind.CONTRIBUTOR_PAYABLE, currency=currency)
    in_transit = account_get(kind=Account.Kind.PAYOUTS_IN_TRANSIT, currency=currency)
    threshold = payout_threshold() if threshold is None else threshold
    contributor_ids = list(
        PayoutDestination.objects.order_by("contributor_id").values_list(
            "contributor_id", flat=True
        )
    )
    for start in range(0, len(contributor_ids), chunk):
        ids = contributor_ids[start : start + chunk]
        with transaction.atomic():
            destinations = list(
                PayoutDestination.objects.select_for_update()
                .filter(contributor_id__in=ids)
                .order_by("pk")
            )
            balances = subledger_balances(account=payable, contributor_pks=ids)
            made = set(
                Payout.objects.filter(settlement=settlement, contributor_id__in=ids).values_list(
                    "contributor_id", flat=True
                )
            )
            new = [
                Payout(
                    settlement=settlement,
                    contributor_id=destination.contributor_id,
                    amount=balances[destination.contributor_id],
                    currency=currency,
                    provider=destination.provider,
                    holder_name=destination.holder_name,
                    iban=destination.iban,
                    idempotency_key=f"settlement:{settlement.pk}:contributor:{destination.contributor_id}",
                )
                for destination in destinations
                if balances.get(destination.contributor_id, 0) >= threshold
                and destination.contributor_id not in made
            ]
            if not new:
                continue
            created = Payout.objects.bulk_create(new)
            # One entry per batch, a line per payout: the payouts and the money moving into
            # transit commit together or not at all.
            first = min(p.pk for p in created) if all(p.pk for p in created) else None
            if first is None:  # backends that do not return ids from bulk inserts
                first = Payout.objects.get(idempotency_key=new[0].idempotency_key).pk
            total = sum(p.amount for p in new)
            entry_post(
                key=f"payouts:settlement:{settlement.pk}:from:{first}",
                kind=JournalEntry.Kind.PAYOUT_INITIATED,
                memo=f"{len(new)} payouts of settlement {settlement.pk}",
                lines=[Line(payable, -p.amount, p.contributor_id) for p in new]
                + [Line(in_transit, total)],
            )
    return list(
        Payout.objects.filter(settlement=settlement, status=Payout.Status.PENDING)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def payout_send(*, payout_id: int) -> str:
    """Ask the provider to pay (idempotent); ProviderRetryable propagates for a later retry."""
    payout = Payout.objects.get(pk=payout_id)
    if payout.status != Payout.Status.PENDING:
        return str(payout.status)
    provider = provider_get(payout.provider)
    request = TransferRequest(
        idempotency_key=payout.idempotency_key,
        amount=payout.amount,
        currency=payout.currency,
        destination={"iban": payout.iban, "holder_name": payout.holder_name},
    )
    try:
        result = provider.transfer_create(request)
    except ProviderRejected as error:
        payout_fail(payout_id=payout.pk, reason=str(error))
        return str(Payout.Status.FAILED)
    crash_point("payout.after_provider_call")
    payout_accepted(payout_id=payout.pk, reference=result.reference)
    return str(Payout.objects.values_list("status", flat=True).get(pk=payout.pk))


@transaction.atomic
def payout_accepted(*, payout_id: int, reference: str) -> bool:
    """pending -> sent: the provider accepted the transfer."""
    updated = Payout.objects.filter(pk=payout_id, status=Payout.Status.PENDING).update(
        status=Payout.Status.SENT, provider_reference=reference
    )
    if updated:
        payout = Payout.objects.get(pk=payout_id)
        audit_record(
            action="payouts.payout.sent",
            actor=None,
            subject=f"payout:{payout.pk}",
            payload={
                "contributor": payout.contributor_id,
                "amount": micro_format(payout.amount),
                "currency": payout.currency,
                "provider": payout.provider,
                "reference": reference,
                "settlement": payout.settlement_id,
            },
        )
    return bool(updated)


@transaction.atomic
def payout_paid(*, payout_id: int, reference: str = "") -> bool:
    """pending|sent -> paid: the money left through the provider."""
    payout = Payout.objects.select_for_update().get(pk=payout_id)
    if payout.status not in OPEN_STATES:
        return False
    Payout.objects.filter(pk=payout.pk).update(
        status=Payout.Status.PAID, provider_reference=reference or payout.provider_reference
    )
    currency = payout.currency
    entry_post(
        key=f"payout:{payout.pk}:paid",
        kind=JournalEntry.Kind.PAYOUT_PAID,
        memo=f"payout {payout.pk} paid",
        lines=[
            Line(
                account_get(kind=Account.Kind.PAYOUTS_IN_TRANSIT, currency=currency), -payout.amount
            ),
            Line(account_get(kind=Account.Kind.EXTERNAL_PAYOUTS, currency=currency), payout.amount),
        ],
    )
    audit_record(
        action="payouts.payout.paid",
        actor=None,
        subject=f"payout:{payout.pk}",
        payload={
            "amount": micro_format(payout.amount),
            "currency": currency,
            "reference": reference,
        },
    )
    return True


@transaction.atomic
def payout_fail(*, payout_id: int, reason: str) -> bool:
    """pending|sent -> failed: the money goes back onto the contributor's balance."""
    payout = Payout.objects.select_for_update().get(pk=payout_id)
    if payout.status not in OPEN_STATES:
        return False
    Payout.objects.filter(pk=payout.pk).update(status=Payout.Status.FAILED, last_error=reason[:300])
    currency = payout.currency
    entry_post(
        key=f"payout:{payout.pk}:returned",
        kind=JournalEntry.Kind.PAYOUT_RETURNED,
        memo=f"payout {payout.pk} failed",
        lines=[
            Line(
                account_get(kind=Account.Kind.PAYOUTS_IN_TRANSIT, currency=currency), -payout.amount
            ),
            Line(
                account_get(kind=Account.Kind.CONTRIBUTOR_PAYABLE, currency=currency),
                payout.amount,
                payout.contributor_id,
            ),
        ],
    )
    audit_record(
        action="payouts.payout.failed",
        actor=None,
        subject=f"payout:{payout.pk}",
        payload={
            "amount": micro_format(payout.amount),
            "currency": currency,
            "reason": reason[:200],
        },
    )
    return True


def webhook_apply(*, provider: str, event: WebhookEvent) -> str:
    """Apply one provider event once; returns what it did (duplicates: 'duplicate')."""
    with transaction.atomic():
        try:
            with transaction.atomic():
                record = ProviderEvent.objects.create(
                    provider=provider,
                    event_id=event.event_id,
                    type=event.type,
                    payload=event.as_dict(),
                )
        except IntegrityError:
            return "duplicate"
        payout = (
            Payout.objects.select_for_update()
            .filter(provider=provider, idempotency_key=event.idempotency_key)
            .first()
        )
        if payout is None:
            outcome = "unknown_transfer"
        elif event.type == "transfer.processing":
            outcome = (
                "sent"
                if payout_accepted(payout_id=payout.pk, reference=event.reference)
                else "stale"
            )
        elif event.type == "transfer.paid":
            outcome = (
                "paid"
                if payout_paid(payout_id=payout.pk, reference=event.reference)
                else (
                    "already_paid"
                    if payout.status == Payout.Status.PAID
                    else "ignored_after_failure"
                )
            )
        elif event.type == "transfer.failed":
            outcome = (
                "failed"
                if payout_fail(payout_id=payout.pk, reason=event.reason or "failed")
                else (
                    "already_failed"
                    if payout.status == Payout.Status.FAILED
                    else "ignored_after_paid"
                )
            )
        else:
            outcome = "ignored_type"
        ProviderEvent.objects.filter(pk=record.pk).update(outcome=outcome)
        return outcome


def webhooks_pull(*, provider: str) -> int:
    """Deliver the provider's pending webhook events to `webhook_apply` (in-process providers)."""
    implementation = provider_get(provider)
    return implementation.webhooks_deliver(
        lambda event: webhook_apply(provider=provider, event=event)
    )


def payouts_refresh(*, older_than_seconds: int = 600) -> dict[str, int]:
    """Ask the provider about payouts still open after a while (a webhook may have been lost)."""
    from datetime import timedelta

    from django.utils import timezone

    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    counts = {"paid": 0, "failed": 0}
    for payout in Payout.objects.filter(status=Payout.Status.SENT, updated_at__lt=cutoff).order_by(
        "pk"
    )[:1000]:
        known = provider_get(payout.provider).transfer_get(idempotency_key=payout.idempotency_key)
        if known is None:
            continue
        if known.status == "paid" and payout_paid(payout_id=payout.pk, reference=known.reference):
            counts["paid"] += 1
        elif known.status == "failed" and payout_fail(
            payout_id=payout.pk, reason="the provider reports the transfer failed"
        ):
            counts["failed"] += 1
    return counts


def payouts_pending(*, settlement: Settlement | None = None) -> list[int]:
    queryset = Payout.objects.filter(status=Payout.Status.PENDING)
    if settlement is not None:
        queryset = queryset.filter(settlement=settlement)
    return list(queryset.order_by("pk").values_list("pk", flat=True))


def providers_in_use() -> list[str]:
    return sorted(set(Payout.objects.values_list("provider", flat=True).distinct()))
