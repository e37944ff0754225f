"""Money: accounts, an immutable double-entry journal, per-query distributions, settlements,
payouts to contributors, and the state of the in-process fake bank.

Design (see services modules for the invariants each one keeps):

- ``Account``: one per (kind, currency[, organization]). ``balance`` is the running sum
  of its postings, kept by the ledger service under a row lock; a CHECK constraint
  makes a non-negative account impossible to overdraw, whatever the concurrency.
- ``JournalEntry`` + ``Posting``: postings of one entry sum to zero per currency,
  enforced on PostgreSQL by a deferred constraint trigger; entries and postings are
  immutable (a trigger refuses UPDATE/DELETE; corrections are new entries); every
  entry is unique on its idempotency key (``query:<id>:charge``, ``settlement:<id>:batch:<k>``,
  ``payout:<key>:initiated``...).
- Contributors' money owed is ONE account per currency (``contributor_payable``) with a
  sub-ledger column ``contributor_pk``: a settlement writes one posting per contributor
  who is due instead of creating a million accounts.
- ``Distribution``: one row per released query (gross, fee, pool size, share, remainder,
  and the pool membership as a content-addressed ``PoolMembership``), never one row
  per contributor per query.
"""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q

from cleanroom.accounts.models import Contributor, Organization
from cleanroom.datasets.models import Dataset
from payouts.fields import EncryptedTextField


class Account(models.Model):
    class Kind(models.TextChoices):
        BUSINESS = "business", "Business prepaid balance"
        PLATFORM_REVENUE = "platform_revenue", "Platform revenue (fees)"
        POOL_CLEARING = "pool_clearing", "Distributed to pools, not yet settled"
        CONTRIBUTOR_PAYABLE = "contributor_payable", "Owed to contributors (per contributor)"
        ROUNDING = "rounding", "Rounding remainders"
        EXTERNAL_FUNDING = "external_funding", "External funding (top-ups)"
        PAYOUTS_IN_TRANSIT = "payouts_in_transit", "Payouts in transit"
        EXTERNAL_PAYOUTS = "external_payouts", "Paid out to contributors' banks"
        # Prices of submitted queries not yet released or given back (one per currency).
        QUERY_HOLDS = "query_holds", "Held for submitted queries"

    kind = models.CharField(max_length=30, choices=Kind.choices)
    currency = models.CharField(max_length=3)
    organization = models.ForeignKey(
        Organization, null=True, blank=True, on_delete=models.PROTECT, related_name="accounts"
    )
    is_non_negative = models.BooleanField(default=False)
    balance = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.CheckConstraint(
                condition=Q(is_non_negative=False) | Q(balance__gte=0),
                name="payouts_account_non_negative",
            ),
            models.UniqueConstraint(
                fields=["kind", "currency"],
                condition=Q(organization__isnull=True),
                name="payouts_one_system_account_per_kind_currency",
            ),
            models.UniqueConstraint(
                fields=["kind", "currency", "organization"],
                condition=Q(organization__isnull=False),
                name="payouts_one_account_per_organization_currency",
            ),
        ]

    def __str__(self) -> str:
        owner = f" of organization {self.organization_id}" if self.organization_id else ""
        return f"{self.kind} {self.currency}{owner}"


class JournalEntry(models.Model):
    class Kind(models.TextChoices):
        TOP_UP = "top_up"
        QUERY_CHARGE = "query_charge"
        QUERY_HOLD = "query_hold"
        QUERY_HOLD_RELEASE = "query_hold_release"
        SETTLEMENT = "settlement"
        PAYOUT_INITIATED = "payout_initiated"
        PAYOUT_PAID = "payout_paid"
        PAYOUT_RETURNED = "payout_returned"
        CORRECTION = "correction"

    key = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=30, choices=Kind.choices)
    memo = models.CharField(max_length=300, blank=True)
    settlement = models.ForeignKey(
        "Settlement", null=True, blank=True, on_delete=models.PROTECT, related_name="entries"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]
        verbose_name_plural = "journal entries"

    def __str__(self) -> str:
        return self.key


class Posting(models.Model):
    entry = models.ForeignKey(JournalEntry, on_delete=models.PROTECT, related_name="postings")
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="postings")
    # Sub-ledger of the contributor_payable account: the contributor the line belongs to.
    # A plain integer (the opaque pk) so a settlement can COPY a million lines without
    # a million foreign-key probes; financial records outlive an account's erasure.
    contributor_pk = models.BigIntegerField(null=True, blank=True)
    currency = models.CharField(max_length=3)
    amount = models.BigIntegerField()

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.CheckConstraint(condition=~Q(amount=0), name="payouts_posting_not_zero"),
            models.UniqueConstraint(
                fields=["entry", "account", "contributor_pk"],
                name="payouts_posting_one_line_per_contributor_per_entry",
            ),
        ]
        indexes = [
            models.Index(fields=["account", "contributor_pk"], name="payouts_posting_subledger"),
        ]

    def __str__(self) -> str:
        return f"{self.amount} {self.currency} on account {self.account_id}"


class PoolMembership(models.Model):
    """A pool's member pks as ranges, content-addressed: queries on the same pool share it."""

    hash = models.CharField(max_length=64, unique=True)
    ranges = models.BinaryField()
    size = models.BigIntegerField()
    range_count = models.BigIntegerField()
    first_pk = models.BigIntegerField(null=True)
    last_pk = models.BigIntegerField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"pool {self.hash[:12]} ({self.size} members)"


class Settlement(models.Model):
    class Status(models.TextChoices):
        OPEN = "open"
        COMPLETED = "completed"

    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    distribution_count = models.PositiveIntegerField(default=0)
    contributor_count = models.PositiveIntegerField(default=0)
    total_amount = models.BigIntegerField(default=0)
    batch_size = models.PositiveIntegerField(default=250_000)
    batch_count = models.PositiveIntegerField(default=0)
    merkle_root = models.CharField(max_length=64, blank=True)
    # Merkle roots of consecutive chunks of lines (by contributor pk) and each chunk's
    # first contributor pk: a proof re-reads one chunk only.
    chunk_roots = models.JSONField(default=list)
    chunk_first_pks = models.JSONField(default=list)
    requested_by = models.ForeignKey(
        "accounts.User", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-pk"]

    def __str__(self) -> str:
        return f"settlement {self.pk} ({self.currency}, {self.status})"


class Distribution(models.Model):
    """One released query's money split: gross = fee + share * pool_size + remainder."""

    query_id = models.BigIntegerField(unique=True)
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="distributions")
    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="distributions"
    )
    currency = models.CharField(max_length=3)
    epsilon = models.DecimalField(max_digits=24, decimal_places=12)
    gross = models.BigIntegerField()
    fee = models.BigIntegerField()
    pool_size = models.BigIntegerField()
    share = models.BigIntegerField()
    remainder = models.BigIntegerField()
    membership = models.ForeignKey(
        PoolMembership, on_delete=models.PROTECT, related_name="distributions"
    )
    membership_hash = models.CharField(max_length=64)
    entry = models.OneToOneField(
        JournalEntry, on_delete=models.PROTECT, related_name="distribution"
    )
    settlement = models.ForeignKey(
        Settlement, null=True, blank=True, on_delete=models.PROTECT, related_name="distributions"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-pk"]
        constraints = [
            models.CheckConstraint(
                condition=Q(gross=F("fee") + F("share") * F("pool_size") + F("remainder")),
                name="payouts_distribution_conserves_money",
            ),
            models.CheckConstraint(
                condition=Q(fee__gte=0)
                & Q(share__gte=0)
                & Q(remainder__gte=0)
                & Q(pool_size__gte=0)
                & Q(gross__gte=0),
                name="payouts_distribution_non_negative",
            ),
            models.CheckConstraint(
                condition=Q(pool_size=0) | Q(remainder__lt=F("pool_size")),
                name="payouts_distribution_remainder_below_pool",
            ),
        ]
        indexes = [
            models.Index(fields=["currency", "settlement"], name="payouts_distribution_unsettled"),
            models.Index(fields=["organization", "-created_at"], name="payouts_distribution_org"),
        ]

    def __str__(self) -> str:
        return f"distribution of query {self.query_id}"


class PayoutDestination(models.Model):
    """Where a contributor is paid: a bank account (IBAN) at a provider."""

    contributor = models.OneToOneField(
        Contributor, on_delete=models.PROTECT, related_name="payout_destination"
    )
    provider = models.CharField(max_length=40, default="fake_bank")
    # Encrypted at rest (payouts.fields): plain str on the model, ciphertext in the database.
    holder_name = EncryptedTextField()
    iban = EncryptedTextField()
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"payout destination of contributor {self.contributor_id}"


class Payout(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"  # booked in transit, not yet accepted by the provider
        SENT = "sent"  # accepted by the provider
        PAID = "paid"  # the provider confirmed the money arrived
        FAILED = "failed"  # refused or returned; the money is back on the contributor's balance

    settlement = models.ForeignKey(Settlement, on_delete=models.PROTECT, related_name="payouts")
    contributor = models.ForeignKey(Contributor, on_delete=models.PROTECT, related_name="payouts")
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    provider = models.CharField(max_length=40)
    # The destination as it was when the payout was made: a retry sends the same request.
    holder_name = EncryptedTextField()
    iban = EncryptedTextField()
    idempotency_key = models.CharField(max_length=120, unique=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    provider_reference = models.CharField(max_length=120, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["settlement", "contributor"], name="payouts_one_payout_per_settlement"
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="payouts_payout_positive"),
        ]

    def __str__(self) -> str:
        return f"payout {self.pk} ({self.status})"


class ProviderEvent(models.Model):
    """A webhook event received from a provider, kept once: duplicates are no-ops."""

    provider = models.CharField(max_length=40)
    event_id = models.CharField(max_length=120)
    type = models.CharField(max_length=60)
    payload = models.JSONField(default=dict)
    outcome = models.CharField(max_length=60, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "event_id"], name="payouts_provider_event_once"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.type} {self.event_id}"


# --- state of the in-process fake bank (providers/fake_bank.py): what "the bank" knows ---


class FakeBankTransfer(models.Model):
    reference = models.CharField(max_length=40, unique=True)
    idempotency_key = models.CharField(max_length=120, unique=True)
    request_hash = models.CharField(max_length=64)
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    iban = EncryptedTextField()
    status = models.CharField(max_length=20)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.reference


class FakeBankEvent(models.Model):
    """The bank's webhook outbox."""

    event_id = models.CharField(max_length=40, unique=True)
    transfer = models.ForeignKey(FakeBankTransfer, on_delete=models.CASCADE, related_name="events")
    type = models.CharField(max_length=40)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.event_id


class FakeBankFault(models.Model):
    """Failure injection for the fake bank: the next `remaining` calls misbehave as `kind`."""

    class Kind(models.TextChoices):
        RATE_LIMIT = "rate_limit"  # 429 with Retry-After, nothing done
        TIMEOUT_AFTER_ACCEPT = "timeout_after_accept"  # accepted, then the response is lost
        REJECT = "reject"  # permanent refusal (e.g. account closed), nothing done
        FAIL_LATER = "fail_later"  # accepted, then a transfer.failed webhook
        DUPLICATE_WEBHOOKS = "duplicate_webhooks"  # every event delivered twice
        REORDER_WEBHOOKS = "reorder_webhooks"  # events delivered newest first

    kind = models.CharField(max_length=30, choices=Kind.choices)
    remaining = models.PositiveIntegerField(default=1)

    def __str__(self) -> str:
        return f"{self.kind} x{self.remaining}"
