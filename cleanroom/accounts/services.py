"""Account services: create business and compliance accounts, contributors by DID, tokens.

Invariants: a business user always belongs to an organization; a contributor is
known only by their DID (no username or password they could sign in with).
"""

from __future__ import annotations

import uuid

from django.db import IntegrityError, transaction
from rest_framework.authtoken.models import Token

from cleanroom.accounts.models import Contributor, Organization, Role, User
from cleanroom.errors import Conflict, ValidationFailed


def token_for(*, user: User) -> str:
    """The user's API token, created on first use."""
    token, _ = Token.objects.get_or_create(user=user)
    return str(token.key)


@transaction.atomic
def account_create(
    *, role: str, username: str, password: str, organization: str | None = None
) -> User:
    """Create a business or compliance account; a business joins (or founds) an organization."""
    if role not in (Role.BUSINESS, Role.COMPLIANCE):
        raise ValidationFailed("role must be 'business' or 'compliance'.")
    if not username or not password:
        raise ValidationFailed("username and password are required.")
    if User.objects.filter(username=username).exists():
        raise Conflict(f"An account named {username!r} already exists.")
    org = None
    if role == Role.BUSINESS:
        org, _ = Organization.objects.get_or_create(name=organization or username)
    user = User(username=username, role=role, organization=org)
    user.set_password(password)
    user.save()
    from audit.services import audit_record

    audit_record(
        action="accounts.account.created",
        actor=None,
        subject=f"user:{user.pk}",
        payload={"role": role, "organization": org.pk if org else None},
    )
    return user


def contributor_get_or_create(*, did: str) -> tuple[Contributor, bool]:
    """The contributor for a verified DID, creating the account on first sign-in."""
    if not did.startswith("did:"):
        raise ValidationFailed("A contributor is identified by a DID.")
    existing = Contributor.objects.filter(did=did).select_related("user").first()
    if existing:
        return existing, False
    try:
        with transaction.atomic():
            user = User(username=f"contributor-{uuid.uuid4().hex[:16]}", role=Role.CONTRIBUTOR)
            user.set_unusable_password()
            user.save()
            contributor = Contributor.objects.create(user=user, did=did)
            from audit.services import audit_record

            audit_record(
                action="accounts.contributor.created",
                actor=None,
                subject=f"contributor:{contributor.pk}",
                payload={},
            )
            return contributor, True
    except IntegrityError:
        return Contributor.objects.select_related("user").get(did=did), False
