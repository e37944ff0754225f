"""Identity services: presentation requests, wallet sign-in, and the trusted-issuer registry.

Invariants:
- A contributor account exists only after `presentation_submit` accepted a presentation whose
  signatures, holder binding, nonce, domain, issuer trust, validity and revocation status all
  checked out (`identity.verification`).
- A nonce is accepted once: the request row moves from pending to accepted by a conditional
  update, before its expiry, in the same transaction that creates the contributor; a second
  answer, or a late one, is refused and changes nothing.
- A refused presentation changes nothing but the audit log and the request's refusal counter;
  every attempt, accepted or refused, is audited with its reason and without credential contents.
- Of a credential we keep type, issuer, expiry and a hash, never its claims.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from audit.services import audit_record
from cleanroom.accounts.models import Contributor, User
from cleanroom.accounts.services import contributor_get_or_create, token_for
from cleanroom.errors import (
    Conflict,
    DomainError,
    NotFound,
    PayloadTooLarge,
    ValidationFailed,
)
from identity import selectors, statuslist, verification
from identity.models import ContributorCredential, PresentationRequest, TrustedIssuer

# A presentation with a few credentials is a few kilobytes; anything near this is an attack.
MAX_RESPONSE_BYTES = 64 * 1024
TYPE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,99}$")


class RequestGone(DomainError):
    status_code = 410
    title = "Gone"
    type = "request-gone"


def _ttl() -> timedelta:
    return timedelta(seconds=int(getattr(settings, "CLEANROOM_PRESENTATION_TTL_SECONDS", 300)))


# --- presentation requests -------------------------------------------------------------------


@transaction.atomic
def presentation_request_create(*, credential_type: str | None = None) -> PresentationRequest:
    """A new request: a fresh single-use nonce, our origin as domain, the onboarding type."""
    presentation_requests_purge()
    return PresentationRequest.objects.create(
        nonce=secrets.token_urlsafe(32),
        domain=settings.CLEANROOM_ORIGIN,
        credential_type=credential_type or settings.CLEANROOM_ONBOARDING_CREDENTIAL,
        expires_at=timezone.now() + _ttl(),
    )


def presentation_requests_purge(*, limit: int = 200) -> int:
    """Forget unanswered requests a day after they expired (anyone may start one, so they
    must not pile up); answered ones stay, they tie a contributor to their sign-in."""
    cutoff = timezone.now() - timedelta(days=1)
    stale = list(
        PresentationRequest.objects.filter(
            status=PresentationRequest.Status.PENDING, expires_at__lt=cutoff
        ).values_list("pk", flat=True)[:limit]
    )
    if not stale:
        return 0
    deleted, _ = PresentationRequest.objects.filter(
        pk__in=stale, status=PresentationRequest.Status.PENDING
    ).delete()
    return deleted


def presentation_request_fetch(*, request_id: UUID | str) -> PresentationRequest:
    """The request a wallet reads at request_uri; not once it was answered or expired."""
    request = selectors.presentation_request_get(request_id=request_id)
    if request.status == PresentationRequest.Status.ACCEPTED:
        raise RequestGone("This presentation request was already answered.")
    if request.expires_at <= timezone.now():
        raise RequestGone("This presentation request has expired; start again.")
    PresentationRequest.objects.filter(pk=request.pk, fetched_at__isnull=True).update(
        fetched_at=timezone.now()
    )
    return request


@dataclass(frozen=True)
class Admission:
    contributor: Contributor
    did: str
    token: str
    credential_types: list[str]
    created: bool


def _reason_code(exc: DomainError) -> str:
    return str(getattr(exc, "code", exc.type))


class BodyTooLarge(PayloadTooLarge):
    code = "too_large"


def _vp_token_from(body: bytes, content_type: str) -> Any:
    if len(body) > MAX_RESPONSE_BYTES:
        raise BodyTooLarge(f"The response is larger than {MAX_RESPONSE_BYTES} bytes.")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise verification.PresentationRefused("malformed", "the body is not UTF-8 text") from exc
    if content_type.split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
        values = parse_qs(text).get("vp_token") or []
        if len(values) != 1:
            raise verification.PresentationRefused("malformed", "the form has no single vp_token")
        token: Any = values[0]
        if token.lstrip().startswith("{"):
            token = _json(token)
        return token
    data = _json(text)
    if not isinstance(data, dict) or "vp_token" not in data:
        raise verification.PresentationRefused("malformed", "the body has no vp_token")
    token = data["vp_token"]
    if isinstance(token, str) and token.lstrip().startswith("{"):
        token = _json(token)
    return token


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise verification.PresentationRefused(
            "malformed", f"the body is not valid JSON ({exc})"
        ) from exc


def _status_check() -> verification.StatusCheck:
    policy = statuslist.FetchPolicy(
        timeout_seconds=float(getattr(settings, "CLEANROOM_STATUS_LIST_TIMEOUT_SECONDS", 5.0)),
        max_bytes=int(getattr(settings, "CLEANROOM_STATUS_LIST_MAX_BYTES", 256 * 1024)),
        allow_private_addresses=bool(
            getattr(settings, "CLEANROOM_STATUS_LIST_ALLOW_PRIVATE", False)
        ),
        ca_bundle=getattr(settings, "CLEANROOM_STATUS_LIST_CA_BUNDLE", None) or None,
        cache_seconds=float(getattr(settings, "CLEANROOM_STATUS_LIST_CACHE_SECONDS", 300)),
    )

    def check(entry: dict[str, Any], issuer: str) -> None:
        verification.status_entry_check(
            entry,
            issuer,
            fetch=lambda url: statuslist.http_fetch(url, policy=policy),
            cache_seconds=policy.cache_seconds,
        )

    return check


def presentation_submit(
    *, request_id: UUID | str, body: bytes, content_type: str, content_length: int = 0
) -> Admission:
    """Verify a wallet's answer at response_uri and admit (or sign in) the contributor.

    Raises a DomainError with the reason; every attempt is audited either way.
    """
    try:
        return _admit(
            request_id=request_id,
            body=body,
            content_type=content_type,
            content_length=content_length,
        )
    except DomainError as exc:
        _refusal_record(request_id=request_id, exc=exc)
        raise


def _refusal_record(*, request_id: UUID | str, exc: DomainError) -> None:
    with transaction.atomic():
        try:
            request: PresentationRequest | None = selectors.presentation_request_get(
                request_id=request_id
            )
        except NotFound:
            request = None
        detail = exc.detail[:500]
        if request is not None and request.status == PresentationRequest.Status.PENDING:
            PresentationRequest.objects.filter(pk=request.pk).update(
                refusals=F("refusals") + 1, last_refusal=detail
            )
        audit_record(
            action="identity.presentation.refused",
            actor=None,
            subject=f"presentation_request:{request.pk}" if request else "",
            payload={"reason": _reason_code(exc), "detail": detail},
        )


def _admit(
    *, request_id: UUID | str, body: bytes, content_type: str, content_length: int
) -> Admission:
    if len(body) > MAX_RESPONSE_BYTES or content_length > MAX_RESPONSE_BYTES:
        raise BodyTooLarge(f"The response is larger than {MAX_RESPONSE_BYTES} bytes.")
    request = selectors.presentation_request_get(request_id=request_id)
    vp_token = _vp_token_from(body, content_type)
    now = timezone.now()
    if request.status == PresentationRequest.Status.ACCEPTED:
        raise verification.PresentationRefused(
            "nonce_used", "this request was already answered: a nonce is accepted once"
        )
    if request.expires_at <= now:
        raise verification.PresentationRefused(
            "nonce_expired", "this request (and its nonce) has expired; start again"
        )
    trusted = selectors.trust_snapshot()
    verified = verification.presentation_verify(
        vp_token=vp_token,
        expectation=verification.Expectation(
            nonce=request.nonce,
            domain=request.domain,
            credential_type=request.credential_type,
            now=now,
        ),
        trust=trusted.get,
        status=_status_check(),
    )
    with transaction.atomic():
        contributor, created = contributor_get_or_create(did=verified.holder)
        claimed = PresentationRequest.objects.filter(
            pk=request.pk, status=PresentationRequest.Status.PENDING, expires_at__gt=timezone.now()
        ).update(
            status=PresentationRequest.Status.ACCEPTED,
            answered_at=timezone.now(),
            contributor=contributor,
        )
        if claimed != 1:
            # Another answer won the race, or the request expired meanwhile: raising here
            # rolls back the contributor created above.
            raise verification.PresentationRefused(
                "nonce_used", "this request was already answered: a nonce is accepted once"
            )
        types: list[str] = []
        for credential in verified.credentials:
            for credential_type in credential.types:
                types.append(credential_type)
                ContributorCredential.objects.update_or_create(
                    contributor=contributor,
                    digest=credential.digest,
                    credential_type=credential_type,
                    defaults={
                        "issuer_did": credential.issuer,
                        "expires_at": credential.expires_at,
                        "last_verified_at": timezone.now(),
                    },
                )
        audit_record(
            action="identity.presentation.accepted",
            actor=None,
            subject=f"contributor:{contributor.pk}",
            payload={
                "reason": "verified",
                "request": str(request.pk),
                "credential_types": sorted(set(types)),
                "issuers": sorted({c.issuer for c in verified.credentials}),
                "new_contributor": created,
            },
        )
        token = token_for(user=contributor.user)
    return Admission(
        contributor=contributor,
        did=verified.holder,
        token=token,
        credential_types=sorted(set(types)),
        created=created,
    )


def presentation_session_claim(*, request_id: UUID | str) -> User | None:
    """The contributor to sign in a browser that started this request; once per request."""
    request = selectors.presentation_request_get(request_id=request_id)
    if request.status != PresentationRequest.Status.ACCEPTED or request.contributor is None:
        return None
    claimed = PresentationRequest.objects.filter(
        pk=request.pk, status=PresentationRequest.Status.ACCEPTED, session_claimed_at__isnull=True
    ).update(session_claimed_at=timezone.now())
    if claimed != 1:
        raise Conflict("This sign-in was already used by a browser session.")
    return request.contributor.user


# --- trusted issuers -------------------------------------------------------------------------


def _issuer_input(did: str, name: str, credential_types: list[str]) -> tuple[str, str, list[str]]:
    did = (did or "").strip()
    name = (name or "").strip()
    if verification.did_method(did) is None:
        raise ValidationFailed("did must be a DID such as did:key:z6Mk...")
    if not name:
        raise ValidationFailed("name is required.")
    if not isinstance(credential_types, list) or not credential_types:
        raise ValidationFailed("credential_types must list at least one credential type.")
    cleaned: list[str] = []
    for value in credential_types:
        if not isinstance(value, str) or not TYPE_NAME.match(value.strip()):
            raise ValidationFailed(f"{value!r} is not a credential type name.")
        if value.strip() == "VerifiableCredential":
            raise ValidationFailed("VerifiableCredential is too general to trust an issuer for.")
        if value.strip() not in cleaned:
            cleaned.append(value.strip())
    return did, name, cleaned


@transaction.atomic
def trusted_issuer_create(
    *, did: str, name: str, credential_types: list[str], actor: User | None
) -> TrustedIssuer:
    """Trust an issuer for some credential types (compliance)."""
    did, name, types = _issuer_input(did, name, credential_types)
    if TrustedIssuer.objects.filter(did=did).exists():
        raise Conflict("This issuer is already trusted; change its credential types instead.")
    issuer = TrustedIssuer.objects.create(did=did, name=name, credential_types=types)
    audit_record(
        action="identity.issuer.trusted",
        actor=actor,
        subject=f"issuer:{issuer.pk}",
        payload={"did": did, "name": name, "credential_types": types},
    )
    return issuer


@transaction.atomic
def trusted_issuer_update(
    *, issuer_id: int, name: str, credential_types: list[str], actor: User | None
) -> TrustedIssuer:
    issuer = selectors.trusted_issuer_get(issuer_id=issuer_id)
    _, name, types = _issuer_input(issuer.did, name, credential_types)
    issuer.name = name
    issuer.credential_types = types
    issuer.save(update_fields=["name", "credential_types", "updated_at"])
    audit_record(
        action="identity.issuer.trusted",
        actor=actor,
        subject=f"issuer:{issuer.pk}",
        payload={"did": issuer.did, "name": name, "credential_types": types},
    )
    return issuer


@transaction.atomic
def trusted_issuer_remove(*, issuer_id: int, actor: User | None) -> None:
    issuer = selectors.trusted_issuer_get(issuer_id=issuer_id)
    audit_record(
        action="identity.issuer.removed",
        actor=actor,
        subject=f"issuer:{issuer.pk}",
        payload={"did": issuer.did, "name": issuer.name},
    )
    issuer.delete()


def trusted_issuer_ensure(*, did: str, name: str, credential_types: list[str]) -> TrustedIssuer:
    """Trust an issuer for these types (adding to what it has); used by the demo seed."""
    existing = TrustedIssuer.objects.filter(did=did).first()
    if existing is None:
        return trusted_issuer_create(
            did=did, name=name, credential_types=credential_types, actor=None
        )
    merged = list(dict.fromkeys([*existing.credential_types, *credential_types]))
    if merged == existing.credential_types:
        return existing
    return trusted_issuer_update(
        issuer_id=existing.pk, name=name, credential_types=merged, actor=None
    )
