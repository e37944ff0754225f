"""Account services: create business and compliance accounts, contributors by DID, tokens.

Invariants: a business user always belongs to an organization; a contributor is
known only by their DID (no username or password they could sign in with).
"""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth import authenticate
from django.db import IntegrityError, transaction
from rest_framework.authtoken.models import Token

from audit.services import audit_record
from cleanroom.accounts.models import Contributor, IdempotencyRecord, Organization, Role, User
from cleanroom.errors import Conflict, DomainError, ValidationFailed
from cleanroom.throttling import (
    SIGN_IN_PER_ACCOUNT,
    SIGN_IN_PER_CLIENT,
    Throttled,
    client_tag,
    throttle_first_refusal,
    throttle_hit,
    throttle_wait,
)


def token_for(*, user: User) -> str:
    """The user's API token, created on first use."""
    token, _ = Token.objects.get_or_create(user=user)
    return str(token.key)


class InvalidCredentials(DomainError):
    status_code = 401
    title = "Not authenticated"
    type = "invalid-credentials"


def sign_in(*, username: str, password: str, client: str, channel: str) -> User:
    """The account these credentials open (API token endpoint and portal sign-in alike).

    Rate-limited per client address and per account (``cleanroom.throttling``): over a
    limit, ``Throttled`` (429) before the password is even checked. Every wrong password
    is audited as ``accounts.sign_in.refused`` and the start of a lockout as
    ``accounts.sign_in.locked``; neither holds the password, the typed username (it may be
    a password typed in the wrong field) or the address (a keyed hash of it instead).
    """
    account = username.casefold()
    for limit, subject in ((SIGN_IN_PER_CLIENT, client), (SIGN_IN_PER_ACCOUNT, account)):
        wait = throttle_wait(limit, subject)
        if wait:
            if throttle_first_refusal(limit, subject):
                audit_record(
                    action="accounts.sign_in.locked",
                    actor=None,
                    subject=_user_subject(username),
                    payload={
                        "channel": channel,
                        "client": client_tag(client),
                        "limit": limit.scope,
                        "retry_after": wait,
                    },
                )
            raise Throttled(
                f"Too many failed sign-ins; try again in {wait} seconds.", retry_after=wait
            )
    user = authenticate(None, username=username, password=password)
    if user is None:
        throttle_hit(SIGN_IN_PER_CLIENT, client)
        throttle_hit(SIGN_IN_PER_ACCOUNT, account)
        subject = _user_subject(username)
        audit_record(
            action="accounts.sign_in.refused",
            actor=None,
            subject=subject,
            payload={
                "channel": channel,
                "client": client_tag(client),
                "reason": "wrong password" if subject else "unknown username",
            },
        )
        raise InvalidCredentials("Unknown username or wrong password.")
    assert isinstance(user, User)
    return user


def _user_subject(username: str) -> str:
    pk = User.objects.filter(username=username).values_list("pk", flat=True).first()
    return f"user:{pk}" if pk else ""


def idempotency_claim(*, user: User, key: str, fingerprint: str) -> IdempotencyRecord | None:
    """Claim `key` for this request inside the caller's transaction; None if claimed now.

    A stored answer for the same request is returned (replay it); the same key with
    another request is a Conflict (409). A concurrent first attempt holds the key until it
    commits (its answer is then returned) or rolls back (this one claims it then).
    """
    try:
        with transaction.atomic():
            IdempotencyRecord.objects.create(user=user, key=key, fingerprint=fingerprint)
        return None
    except IntegrityError:
        record = IdempotencyRecord.objects.get(user=user, key=key)
    if record.fingerprint != fingerprint:
        raise Conflict(
            "This Idempotency-Key was already used for a different request; "
            "use a new key for a new request."
        )
    return record


def idempotency_store(*, user: User, key: str, status: int, body: Any) -> None:
    """Keep the answer to the claimed request (same transaction as the write)."""
    IdempotencyRecord.objects.filter(user=user, key=key).update(status=status, body=body)


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


@transaction.atomic
def contributors_bulk_create(
    *, dids: list[str], username_prefix: str, audit: bool = True
) -> list[Contributor]:
    """Create many contributors at once (demo and benchmark populations).

    One bulk insert of users and contributors and one ``accounts.contributor.created``
    event each, appended in one call (benchmarks may skip the events). Only for synthetic populations whose DIDs the
    caller made: wallet-verified people arrive through ``contributor_get_or_create``.
    """
    if not all(did.startswith("did:") for did in dids):
        raise ValidationFailed("A contributor is identified by a DID.")
    from django.contrib.auth.hashers import make_password

    from audit.services import audit_record_many

    unusable = make_password(None)
    users = User.objects.bulk_create(
        [
            User(username=f"{username_prefix}-{number}", role=Role.CONTRIBUTOR, password=unusable)
            for number in range(len(dids))
        ]
    )
    people = Contributor.objects.bulk_create(
        [Contributor(user=user, did=did) for user, did in zip(users, dids, strict=True)]
    )
    if audit:
        audit_record_many(
            events=[
                {
                    "action": "accounts.contributor.created",
                    "actor": None,
                    "subject": f"contributor:{person.pk}",
                    "payload": {},
                }
                for person in people
            ]
        )
    return people
