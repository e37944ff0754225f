"""Demo data of payouts for `manage.py seed_demo` (idempotent).

Runs after the queries demo: gives the demo business (``acme``) a prepaid balance, gives
demo contributors a payout destination, then settles whatever the released demo queries
distributed and pays who is due, in-process (no worker needed for the seed).
"""

from __future__ import annotations

from typing import Any

from cleanroom.accounts.demo import POPULATION_PREFIX
from cleanroom.accounts.models import Contributor, User
from cleanroom.errors import DomainError
from payouts.disbursement import payout_send, payouts_create, webhooks_pull
from payouts.models import Distribution, PayoutDestination
from payouts.money import micro_format
from payouts.providers.base import ProviderError
from payouts.services import business_account, payout_destination_set, topup_record
from payouts.settlement import settlement_open, settlement_process

DEMO_BUSINESS = "acme"
DEMO_PREPAID = 500_000_000  # 500.00 in the default currency
DEMO_IBAN = "DE89 3704 0044 0532 0130 00"  # the textbook example IBAN
DEMO_PAID_POPULATION = 100
# A pool of 10,000 earns a fraction of a cent per query each: the demo pays from 0.001
# (the service's threshold, ``CLEANROOM_PAYOUT_THRESHOLD_MICRO``, is 1.00).
DEMO_PAYOUT_THRESHOLD = 1_000


def seed(*, stdout: Any = None) -> list[str]:
    lines: list[str] = []
    business = User.objects.filter(username=DEMO_BUSINESS, role="business").first()
    if business is not None and business.organization is not None:
        topup_record(
            organization=business.organization,
            amount=DEMO_PREPAID,
            actor=None,
            reference="payouts-demo-prepaid",
        )
        account = business_account(organization=business.organization)
        lines.append(
            f"Billing: {business.organization.name} prepaid balance "
            f"{micro_format(account.balance)} {account.currency} (portal /billing/)"
        )
    # Most of the synthetic population never gave a payout destination: their earnings stay
    # on their balance (the settlement pages flag them). The wallet-verified demo
    # contributors and the first DEMO_PAID_POPULATION synthetic ones are paid.
    if not PayoutDestination.objects.exists():
        everyone = Contributor.objects.order_by("pk")
        synthetic = everyone.filter(user__username__startswith=f"{POPULATION_PREFIX}-")
        chosen = list(synthetic[:DEMO_PAID_POPULATION]) + list(
            everyone.exclude(user__username__startswith=f"{POPULATION_PREFIX}-")
        )
        for contributor in chosen:
            payout_destination_set(
                contributor=contributor, holder_name="Demo contributor", iban=DEMO_IBAN
            )
    currencies = sorted(
        set(Distribution.objects.filter(settlement__isnull=True).values_list("currency", flat=True))
    )
    for currency in currencies:
        settlement = settlement_open(currency=currency)
        if settlement is None:
            continue
        settlement = settlement_process(settlement_id=settlement.pk)
        paid = 0
        for payout_id in payouts_create(settlement=settlement, threshold=DEMO_PAYOUT_THRESHOLD):
            try:
                paid += payout_send(payout_id=payout_id) in ("sent", "paid")
            except (ProviderError, DomainError) as error:
                lines.append(f"Payouts: payout {payout_id} not sent yet: {error}")
        webhooks_pull(provider="fake_bank")
        lines.append(
            f"Settlement {settlement.pk}: {settlement.distribution_count} queries, "
            f"{settlement.contributor_count} contributors, {micro_format(settlement.total_amount)} "
            f"{currency}, {paid} payouts sent (portal /money/settlements/)"
        )
    if not currencies:
        lines.append(
            "Payouts: no released query to settle yet (settlement runs hourly or on demand)."
        )
    return lines
