"""Accounts and roles: business members of an organization, compliance officers, contributors.

A contributor is a user whose identity is a DID; the identity capability creates
them after a verified presentation. The contributor's integer ``pk`` is the
opaque identifier the pool and payouts use; their DID never leaves this table.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models


class Role(models.TextChoices):
    BUSINESS = "business", "Business"
    COMPLIANCE = "compliance", "Compliance officer"
    CONTRIBUTOR = "contributor", "Contributor"


class Organization(models.Model):
    name = models.CharField(max_length=200, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class User(AbstractUser):
    role = models.CharField(max_length=20, choices=Role.choices)
    organization = models.ForeignKey(
        Organization, null=True, blank=True, on_delete=models.PROTECT, related_name="members"
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(role="business", organization__isnull=False)
                | ~models.Q(role="business"),
                name="business_user_has_organization",
            ),
        ]

    @property
    def is_business(self) -> bool:
        return self.role == Role.BUSINESS

    @property
    def is_compliance(self) -> bool:
        return self.role == Role.COMPLIANCE

    @property
    def is_contributor(self) -> bool:
        return self.role == Role.CONTRIBUTOR


class Contributor(models.Model):
    user = models.OneToOneField(User, on_delete=models.PROTECT, related_name="contributor")
    did = models.CharField(max_length=500, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"contributor {self.pk}"


class IdempotencyRecord(models.Model):
    """The first answer to a write sent with an ``Idempotency-Key``, replayed for a repeat.

    Stored per user and key, in the same transaction as the write it answers: a repeat
    that arrives while the first is still running waits on the unique key and then
    replays the committed answer; if the first failed, nothing was stored and the repeat
    runs afresh.
    """

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    # SHA-256 of method, path and body: the same key with another request is a 409.
    fingerprint = models.CharField(max_length=64)
    status = models.PositiveSmallIntegerField(default=0)
    body = models.JSONField(null=True, encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="idempotency_key_once_per_user")
        ]

    def __str__(self) -> str:
        return f"idempotency key {self.key!r} of user {self.user_id}"
