"""Queries, the privacy-budget ledger, and who was in the pool when a mechanism ran.

- ``Query``: one SQL submission of a business, with its status machine
  ``pending_approval -> queued -> running -> released | failed`` (or ``rejected``),
  its price in micro-units and, once released, its noisy result.
- ``BudgetCharge``: the ledger of privacy budget, one row per query (unique), so a
  redelivered task can never charge twice. Budget is *reserved* when a query is
  accepted (``Dataset.spent_epsilon`` grows under a row lock, and the database refuses
  ``spent > total``), *charged* the moment the mechanism is about to run, and
  *refunded* only if the query never reached the mechanism (rejected, or failed
  before any noise was drawn).
- ``QueryPool``: the members of the pool a mechanism ran over, stored compactly as
  sorted ``[start, stop)`` ranges of contributor pks (zlib-compressed int64 pairs), so a
  contributor's privacy loss and the list of queries that touched them can be computed
  without one row per contributor per query. A run that recovers a release lost with
  its worker runs over these members only (never more than were charged).
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q

from cleanroom.accounts.models import Organization
from cleanroom.datasets.models import Dataset


class QueryStatus(models.TextChoices):
    PENDING_APPROVAL = "pending_approval", "Pending approval"
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    RELEASED = "released", "Released"
    REJECTED = "rejected", "Rejected"
    FAILED = "failed", "Failed"


class Query(models.Model):
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="queries")
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="queries")
    requester = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="queries"
    )
    sql = models.TextField()
    # The epsilon the measurement was calibrated to (its exact `map(d_in)`, rounded up).
    epsilon = models.DecimalField(max_digits=24, decimal_places=12)
    # Set only for releases with private group keys (thresholded, approximate DP).
    delta = models.FloatField(null=True, blank=True)
    # Everything that fixes the privacy loss (``Mechanism.parameters()``), as priced and
    # charged at submission; the run refuses (and refunds) if the rebuilt one differs.
    mechanism = models.JSONField(null=True, blank=True)
    status = models.CharField(
        max_length=20, choices=QueryStatus.choices, default=QueryStatus.PENDING_APPROVAL
    )
    progress = models.PositiveSmallIntegerField(default=0)
    # Price in micro-units of the dataset's currency.
    price = models.BigIntegerField(default=0)
    currency = models.CharField(max_length=8, blank=True)
    # {"columns": [...], "rows": [[...]], "accuracy": [...]} once released.
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    # Why compliance approved or rejected it, or why the policy approved it.
    review_reason = models.TextField(blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="reviewed_queries",
    )
    # Whether the mechanism was reached (the budget stays charged when it was).
    mechanism_ran = models.BooleanField(default=False)
    # Which run owns the query (1 for the first; a run whose worker died is taken over by
    # the next) and when that run last showed it is alive. See queries.services.
    attempt = models.PositiveSmallIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    released_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.CheckConstraint(condition=Q(epsilon__gt=0), name="query_epsilon_positive"),
            models.CheckConstraint(condition=Q(price__gte=0), name="query_price_not_negative"),
            models.CheckConstraint(condition=Q(progress__lte=100), name="query_progress_percent"),
        ]
        indexes = [
            models.Index(fields=["organization", "created_at"], name="query_org_idx"),
            models.Index(fields=["status"], name="query_status_idx"),
        ]

    def __str__(self) -> str:
        return f"query {self.pk} on {self.dataset_id} ({self.status})"


class ChargeState(models.TextChoices):
    RESERVED = "reserved", "Reserved"
    CHARGED = "charged", "Charged"
    REFUNDED = "refunded", "Refunded"


class BudgetCharge(models.Model):
    """One query's privacy cost on its dataset's budget; unique per query."""

    query = models.OneToOneField(Query, on_delete=models.PROTECT, related_name="budget_charge")
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="budget_charges")
    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="budget_charges"
    )
    epsilon = models.DecimalField(max_digits=24, decimal_places=12)
    # The delta of a thresholded release (0 under pure DP), rounded up like epsilon.
    delta = models.DecimalField(max_digits=30, decimal_places=26, default=Decimal("0"))
    state = models.CharField(max_length=10, choices=ChargeState.choices)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "pk"]
        constraints = [
            models.CheckConstraint(condition=Q(epsilon__gt=Decimal(0)), name="charge_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.state} {self.epsilon} for query {self.query_id}"


class QueryPool(models.Model):
    """Who was in the pool when the query's mechanism ran (compact ranges of pks)."""

    query = models.OneToOneField(Query, on_delete=models.PROTECT, related_name="pool")
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="query_pools")
    size = models.PositiveIntegerField()
    # zlib(int64 little-endian [start0, stop0, start1, stop1, ...]), ranges half-open, sorted.
    ranges = models.BinaryField()
    min_member = models.BigIntegerField(null=True)
    max_member = models.BigIntegerField(null=True)
    # Members left out because this run would take them past their personal privacy cap.
    excluded_at_cap = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"pool of query {self.query_id} ({self.size} members)"
