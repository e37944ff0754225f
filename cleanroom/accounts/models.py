"""Accounts and roles: business members of an organization, compliance officers, contributors.

A contributor is a user whose identity is a DID; the identity capability creates
them after a verified presentation. The contributor's integer ``pk`` is the
opaque identifier the pool and payouts use; their DID never leaves this table.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser
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
