"""Celery tasks of payouts: a few lines around idempotent services (acks_late; a redelivered
task is a no-op for what it already did)."""

from __future__ import annotations

from functools import partial
from typing import Any

from celery import shared_task
from django.db import InterfaceError, OperationalError, transaction

from payouts.crash import crash_point
from payouts.disbursement import (
    payout_send,
    payouts_create,
    payouts_pending,
    payouts_refresh,
    providers_in_use,
    webhooks_pull,
)
from payouts.models import Distribution, Settlement
from payouts.providers.base import ProviderRetryable
from payouts.settlement import settlement_open, settlement_process

SEND_CHUNK = 100


def _queue_sends(payout_ids: list[int]) -> None:
    for start in range(0, len(payout_ids), SEND_CHUNK):
        chunk = payout_ids[start : start + SEND_CHUNK]
        transaction.on_commit(partial(payouts_send.delay, chunk))


# The database went away mid-run (a restart): run again soon rather than at the next beat;
# every step is idempotent (a redelivery is a no-op for what it already did).
@shared_task(
    acks_late=True,
    name="payouts.tasks.settlement_run",
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=8,
)
def settlement_run(requested_by: int | None = None) -> list[int]:
    """Open a settlement per currency with unsettled distributions, finish every open one,
    create its payouts and queue them (periodic via beat, or on demand)."""
    from cleanroom.accounts.models import User

    actor = User.objects.filter(pk=requested_by).first() if requested_by else None
    # Outcomes first: webhooks still waiting, payouts whose webhook never came.
    for provider in providers_in_use():
        webhooks_pull(provider=provider)
    payouts_refresh()
    currencies = (
        Distribution.objects.filter(settlement__isnull=True)
        .values_list("currency", flat=True)
        .distinct()
    )
    for currency in sorted(set(currencies)):
        settlement_open(currency=currency, actor=actor)
    done: list[int] = []
    for settlement_id in (
        Settlement.objects.filter(status=Settlement.Status.OPEN)
        .order_by("pk")
        .values_list("pk", flat=True)
    ):
        settlement_process(settlement_id=settlement_id)
        done.append(settlement_id)
    # Payouts are made from the latest completed settlement of each currency: that also
    # resumes a run that died between completing a settlement and paying it.
    completed = Settlement.objects.filter(status=Settlement.Status.COMPLETED)
    for currency in sorted(set(completed.values_list("currency", flat=True))):
        latest = completed.filter(currency=currency).order_by("-pk").first()
        if latest is not None:
            payouts_create(settlement=latest)
    with transaction.atomic():
        _queue_sends(payouts_pending())
    crash_point("settlement.after_commit_before_ack")
    return done


@shared_task(acks_late=True, bind=True, max_retries=20, name="payouts.tasks.payouts_send")
def payouts_send(self: Any, payout_ids: list[int]) -> dict[str, str]:
    """Send each payout through its provider, then take in the provider's webhooks."""
    outcomes: dict[str, str] = {}
    try:
        for payout_id in payout_ids:
            outcomes[str(payout_id)] = payout_send(payout_id=payout_id)
    except ProviderRetryable as error:
        raise self.retry(countdown=error.retry_after) from error
    for provider in providers_in_use():
        webhooks_pull(provider=provider)
    crash_point("payout.after_commit_before_ack")
    return outcomes


@shared_task(acks_late=True, name="payouts.tasks.webhooks_poll")
def webhooks_poll() -> int:
    """Take in webhook events of in-process providers (real ones POST to the API)."""
    return sum(webhooks_pull(provider=provider) for provider in providers_in_use())
