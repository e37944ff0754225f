"""Datasets, consent, and the encrypted pool.

Storage of contributed records (nothing here is ever plaintext):

- ``ContributorKey``: one AES-256 data key per contributor, stored only wrapped
  (AES-GCM) by the key-encryption key ``settings.CLEANROOM_KEK``. Erasure destroys it.
- ``Contribution``: one validated upload, kept as one columnar segment (Arrow IPC
  bytes) encrypted with the contributor's data key. The contributor's copy: their
  export decrypts it, erasure deletes it.
- ``PoolSegment``: the compacted pool of a dataset, many contributors' rows in one
  columnar segment (a Parquet file under MEDIA_ROOT) encrypted with its own segment key
  (wrapped by the KEK), so that materializing a million rows decrypts a handful of
  blobs instead of 100k. A segment is a derived cache: erasure rewrites every segment
  that held the contributor's rows and deletes the old files.

Who is in the pool is decided at read time from ``Consent`` (active and on the
dataset's current terms version), never from what the segments hold.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.db.models import F, Q

from cleanroom.accounts.models import Contributor


class Dataset(models.Model):
    slug = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    purpose = models.TextField()
    # {"columns": [{"name", "type", "lower"?, "upper"?, "categories"?}]}
    schema = models.JSONField()
    # {"total_epsilon", "max_query_epsilon", "min_contributors", "max_rows_per_contributor",
    #  "auto_approve", ...}: numbers as decimal strings where they are epsilons.
    policy = models.JSONField()
    # {"currency", "per_query", "per_epsilon", "platform_fee"} as decimal strings.
    price = models.JSONField()
    retention_days = models.PositiveIntegerField(default=365)
    # Bumped whenever purpose, policy or price change: consents name the version they agreed to.
    terms_version = models.PositiveIntegerField(default=1)
    total_epsilon = models.DecimalField(max_digits=24, decimal_places=12)
    spent_epsilon = models.DecimalField(max_digits=24, decimal_places=12, default=Decimal("0"))
    # Delta composes like epsilon (basic composition): a dataset total, never overspent.
    # Zero unless the policy allows thresholded (private-key) releases.
    total_delta = models.DecimalField(max_digits=30, decimal_places=26, default=Decimal("0"))
    spent_delta = models.DecimalField(max_digits=30, decimal_places=26, default=Decimal("0"))
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]
        constraints = [
            models.CheckConstraint(
                condition=Q(spent_epsilon__lte=F("total_epsilon")),
                name="dataset_spent_within_total",
            ),
            models.CheckConstraint(
                condition=Q(spent_epsilon__gte=0), name="dataset_spent_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(total_epsilon__gte=0), name="dataset_total_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(spent_delta__lte=F("total_delta")),
                name="dataset_spent_delta_within_total",
            ),
            models.CheckConstraint(
                condition=Q(spent_delta__gte=0), name="dataset_spent_delta_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return self.slug


class Consent(models.Model):
    """One opt-in of a contributor to a dataset's terms version; withdrawal closes it."""

    contributor = models.ForeignKey(Contributor, on_delete=models.PROTECT, related_name="consents")
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="consents")
    terms_version = models.PositiveIntegerField()
    # The most epsilon this contributor accepts on this dataset per 365 days; null: the
    # policy's ``default_privacy_cap`` (or none). A query whose charge would take them
    # past it runs without them (and does not pay them).
    privacy_cap = models.DecimalField(max_digits=24, decimal_places=12, null=True, blank=True)
    given_at = models.DateTimeField(auto_now_add=True)
    withdrawn_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["given_at", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["contributor", "dataset"],
                condition=Q(withdrawn_at__isnull=True),
                name="one_open_consent_per_dataset",
            ),
        ]
        indexes = [
            # Covers the pool's membership read (index-only scan of open consents).
            models.Index(
                fields=["dataset", "terms_version", "contributor"],
                condition=Q(withdrawn_at__isnull=True),
                name="consent_current_idx",
            ),
            # The pool's exclusions: closed consents (withdrawn, replaced, erased).
            models.Index(
                fields=["dataset", "contributor"],
                condition=Q(withdrawn_at__isnull=False),
                name="consent_closed_idx",
            ),
        ]

    def __str__(self) -> str:
        return (
            f"consent {self.pk} of contributor {self.contributor_id} to dataset {self.dataset_id}"
        )


class ContributorKey(models.Model):
    """A contributor's data key, wrapped by the KEK; ``wrapped`` is emptied on erasure."""

    contributor = models.OneToOneField(
        Contributor, on_delete=models.PROTECT, related_name="data_key"
    )
    wrapped = models.BinaryField(null=True)
    kek_id = models.CharField(max_length=16, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    destroyed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"data key of contributor {self.contributor_id}"


class PoolSegment(models.Model):
    """A compacted, encrypted columnar segment of many contributors' rows of one dataset."""

    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="segments")
    wrapped_key = models.BinaryField()
    kek_id = models.CharField(max_length=16)
    # The ciphertext lives in a file under MEDIA_ROOT (see ``storage.segment_path``): the
    # pool reads megabytes per query, and a file read skips the database's bytea path.
    file_name = models.CharField(max_length=200, unique=True)
    size = models.PositiveBigIntegerField()
    rows = models.PositiveIntegerField()
    contributors = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"pool segment {self.pk} of dataset {self.dataset_id}"


class Contribution(models.Model):
    """One validated upload of a contributor, encrypted with their data key."""

    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="contributions")
    contributor = models.ForeignKey(
        Contributor, on_delete=models.PROTECT, related_name="contributions"
    )
    rows = models.PositiveIntegerField()
    ciphertext = models.BinaryField()
    # True once compaction copied these rows into the dataset's pool segments; the pool
    # reads compacted rows from segments and the rest from here, never both.
    is_compacted = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [
            models.Index(fields=["dataset", "contributor"], name="contribution_owner_idx"),
            # Tiny: only uploads waiting for compaction (the pool reads them on every query).
            models.Index(
                fields=["dataset"],
                condition=Q(is_compacted=False),
                name="contribution_waiting_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"contribution {self.pk} ({self.rows} rows)"


class Erasure(models.Model):
    """A contributor's erasure request; the job purges every stored form of their rows."""

    class Status(models.TextChoices):
        PENDING = "pending"
        DONE = "done"

    contributor = models.ForeignKey(Contributor, on_delete=models.PROTECT, related_name="erasures")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    requested_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    rows_removed = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"erasure {self.pk} of contributor {self.contributor_id}"


class PoolCount(models.Model):
    """How many contributors are in a dataset's pool now, kept exact by the database.

    Maintained on PostgreSQL by triggers (migration 0008) on every write that can change
    membership, whatever the client (services, bulk inserts, direct updates): a consent
    opened or closed, a contributor's first upload or last deletion in the dataset, a
    terms version change (recounted). Never written by Python code; a missing row means 0.
    """

    dataset = models.OneToOneField(
        Dataset, on_delete=models.CASCADE, primary_key=True, related_name="pool_count"
    )
    members = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(members__gte=0), name="pool_count_not_negative")
        ]

    def __str__(self) -> str:
        return f"pool of dataset {self.dataset_id}: {self.members}"
