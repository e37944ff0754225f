"""Models of identity: trusted issuers, presentation requests, and what we keep of credentials.

A presentation request's nonce is single use: the row moves from `pending` to `accepted`
exactly once (a conditional update), and only before `expires_at`. Of a verified credential
we keep its type, issuer, expiry and a hash, never its claims.
"""

from __future__ import annotations

import uuid

from django.db import models


class TrustedIssuer(models.Model):
    """An issuer compliance trusts, and for which credential types."""

    # The issuer's identifier: a DID, an https issuer URL (SD-JWT VC keys from its JWT VC Issuer
    # Metadata), or for a certificate `x509_hash:<base64url SHA-256 of its DER>`.
    did = models.CharField(max_length=500, unique=True)
    name = models.CharField(max_length=200)
    credential_types = models.JSONField(default=list)
    # Credential formats trusted from this issuer ("ldp_vc", "jwt_vc_json", "dc+sd-jwt").
    formats = models.JSONField(default=list)
    # SD-JWT VC types (vct) trusted from this issuer.
    vcts = models.JSONField(default=list)
    # PEM of the trusted certificate (x5c chains must lead to it); empty for DIDs and URLs.
    certificate = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "pk"]

    def __str__(self) -> str:
        return self.name


class PresentationRequest(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for the wallet"
        ACCEPTED = "accepted", "Accepted"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    nonce = models.CharField(max_length=64, unique=True)
    domain = models.CharField(max_length=300)
    credential_type = models.CharField(max_length=200)
    # OpenID4VP 1.0: what was asked, fixed when the request is made (the signed request object
    # and the verification of the answer read the same values).
    state = models.CharField(max_length=64, blank=True, default="")
    client_id = models.CharField(max_length=600, blank=True, default="")
    formats = models.JSONField(default=list)
    response_mode = models.CharField(max_length=30, default="direct_post")
    dcql_query = models.JSONField(default=dict)
    # {"vcts": [...], "claims": [[...path], ...]} of the onboarding policy at creation
    policy = models.JSONField(default=dict)
    # The ephemeral private key (JWK) responses to a direct_post.jwt request are encrypted to;
    # it lives as long as the request row.
    encryption_key = models.TextField(blank=True, default="")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    fetched_at = models.DateTimeField(null=True, blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    contributor = models.ForeignKey(
        "accounts.Contributor",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="presentation_requests",
    )
    # A browser session may be signed in from an accepted request once.
    session_claimed_at = models.DateTimeField(null=True, blank=True)
    refusals = models.PositiveIntegerField(default=0)
    last_refusal = models.CharField(max_length=500, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["status", "expires_at"], name="presentation_request_expiry")
        ]
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(
                        status="accepted",
                        contributor__isnull=False,
                        answered_at__isnull=False,
                    )
                    | models.Q(status="pending", contributor__isnull=True, answered_at__isnull=True)
                ),
                name="presentation_request_accepted_has_contributor",
            ),
        ]

    def __str__(self) -> str:
        return f"presentation request {self.pk}"


class ContributorCredential(models.Model):
    """A credential a contributor presented: type, issuer, expiry and hash only."""

    contributor = models.ForeignKey(
        "accounts.Contributor", on_delete=models.CASCADE, related_name="credentials"
    )
    credential_type = models.CharField(max_length=200)
    issuer_did = models.CharField(max_length=500)
    expires_at = models.DateTimeField(null=True, blank=True)
    digest = models.CharField(max_length=64)
    first_verified_at = models.DateTimeField(auto_now_add=True)
    last_verified_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["contributor", "digest", "credential_type"],
                name="contributor_credential_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.credential_type} of contributor {self.contributor_id}"
