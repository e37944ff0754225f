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
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from audit.services import audit_record
from cleanroom import parsers
from cleanroom.accounts.models import Contributor, User
from cleanroom.accounts.services import contributor_get_or_create, token_for
from cleanroom.errors import (
    Conflict,
    DomainError,
    NotFound,
    PayloadTooLarge,
    ValidationFailed,
)
from identity import (
    jose,
    onboarding,
    pipeline,
    publications,
    sd_jwt_vc,
    selectors,
    statuslist,
    verification,
)
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
def presentation_request_create(
    *,
    credential_type: str | None = None,
    formats: list[str] | None = None,
    response_mode: str | None = None,
) -> PresentationRequest:
    """A new request: a fresh single-use nonce and state, our origin as domain, the onboarding
    policy's formats (or the subset asked for) and a DCQL query built from it and the registry."""
    presentation_requests_purge()
    policy = onboarding.policy()
    if formats is None:
        chosen = policy.formats
    else:
        if not isinstance(formats, list) or not formats:
            raise ValidationFailed("format must name at least one presentation format.")
        unknown = [f for f in formats if f not in policy.formats]
        if unknown:
            raise ValidationFailed(
                f"format {unknown[0]!r} is not one onboarding accepts "
                f"(accepted: {', '.join(policy.formats)})."
            )
        chosen = tuple(dict.fromkeys(formats))
    mode = response_mode or onboarding.response_mode_default()
    if mode not in onboarding.RESPONSE_MODES:
        raise ValidationFailed(
            f"response_mode must be one of {', '.join(onboarding.RESPONSE_MODES)}, not {mode!r}."
        )
    wanted_type = credential_type or settings.CLEANROOM_ONBOARDING_CREDENTIAL
    request = PresentationRequest(
        nonce=secrets.token_urlsafe(32),
        state=secrets.token_urlsafe(16),
        domain=settings.CLEANROOM_ORIGIN,
        credential_type=wanted_type,
        formats=list(chosen),
        response_mode=mode,
        expires_at=timezone.now() + _ttl(),
        policy={"vcts": list(policy.vcts), "claims": [list(p) for p in policy.required_claims]},
        dcql_query=onboarding.dcql_query(
            formats=chosen,
            policy=policy,
            w3c_issuers=selectors.trusted_dids_for(credential_type=wanted_type),
            sd_jwt_vcts=selectors.trusted_vcts(),
        ),
    )
    request.client_id = onboarding.client_id(response_uri=selectors.response_uri(request))
    if mode == "direct_post.jwt":
        key = jose.key_generate(algorithm="ECDH-ES")
        key["kid"] = secrets.token_urlsafe(8)
        request.encryption_key = json.dumps(key)
    request.save(force_insert=True)
    return request


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


@dataclass(frozen=True)
class _Response:
    vp_token: Any
    state: str | None


def _form_value(form: dict[str, list[str]], name: str) -> str | None:
    values = form.get(name) or []
    if len(values) > 1:
        raise verification.PresentationRefused("malformed", f"the form has several {name} values")
    return values[0] if values else None


def _maybe_json(value: Any) -> Any:
    if isinstance(value, str) and value.lstrip()[:1] in ("{", "["):
        return _json(value)
    return value


def _response_from(body: bytes, content_type: str, request: PresentationRequest) -> _Response:
    """The wallet's answer: a direct_post form (vp_token, state), a direct_post.jwt form
    (response: a JWE to the request's key) or the API v1 JSON body {"vp_token": ...}."""
    if len(body) > MAX_RESPONSE_BYTES:
        raise BodyTooLarge(f"The response is larger than {MAX_RESPONSE_BYTES} bytes.")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise verification.PresentationRefused("malformed", "the body is not UTF-8 text") from exc
    encrypted: str | None = None
    if content_type.split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
        form = parse_qs(text, keep_blank_values=True)
        encrypted = _form_value(form, "response")
        if encrypted is None:
            token = _form_value(form, "vp_token")
            if token is None:
                raise verification.PresentationRefused(
                    "malformed", "the form has no vp_token (nor an encrypted response)"
                )
            answer = _Response(_maybe_json(token), _form_value(form, "state"))
    else:
        data = _json(text)
        if not isinstance(data, dict) or ("vp_token" not in data and "response" not in data):
            raise verification.PresentationRefused("malformed", "the body has no vp_token")
        if "response" in data:
            encrypted = data["response"]
        else:
            state = data.get("state")
            answer = _Response(
                _maybe_json(data["vp_token"]), state if isinstance(state, str) else None
            )
    if encrypted is not None:
        if request.response_mode != "direct_post.jwt" or not request.encryption_key:
            raise verification.PresentationRefused(
                "response_mode_mismatch", "this request asked for a plain direct_post response"
            )
        try:
            payload = _json(
                jose.jwe_decrypt(encrypted, json.loads(request.encryption_key)).decode("utf-8")
            )
        except jose.JoseError as exc:
            raise verification.PresentationRefused(exc.code, exc.message) from exc
        except UnicodeDecodeError as exc:
            raise verification.PresentationRefused(
                "malformed", "the response is not UTF-8"
            ) from exc
        if not isinstance(payload, dict) or "vp_token" not in payload:
            raise verification.PresentationRefused(
                "malformed", "the encrypted response has no vp_token"
            )
        state = payload.get("state")
        return _Response(
            _maybe_json(payload["vp_token"]), state if isinstance(state, str) else None
        )
    if request.response_mode == "direct_post.jwt":
        raise verification.PresentationRefused(
            "response_not_encrypted",
            "this request asked for an encrypted response (direct_post.jwt)",
        )
    return answer


def _json(text: str) -> Any:
    try:
        return parsers.loads(text)  # the project's one reader of client JSON (bounded depth)
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


def _fetcher() -> sd_jwt_vc.Fetch:
    """Fetch issuer metadata and status lists under the status-list policy; what our own
    service publishes (the demo issuer) is read in-process instead of over HTTP."""
    policy = statuslist.FetchPolicy(
        timeout_seconds=float(getattr(settings, "CLEANROOM_STATUS_LIST_TIMEOUT_SECONDS", 5.0)),
        max_bytes=int(getattr(settings, "CLEANROOM_STATUS_LIST_MAX_BYTES", 256 * 1024)),
        allow_private_addresses=bool(
            getattr(settings, "CLEANROOM_STATUS_LIST_ALLOW_PRIVATE", False)
        ),
        ca_bundle=getattr(settings, "CLEANROOM_STATUS_LIST_CA_BUNDLE", None) or None,
    )

    def fetch(url: str, accept: str) -> bytes:
        local = publications.local_fetch(url)
        if local is not None:
            return local
        return statuslist.http_fetch(url, policy=policy, accept=accept)

    return fetch


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
    now = timezone.now()
    if request.status == PresentationRequest.Status.ACCEPTED:
        raise verification.PresentationRefused(
            "nonce_used", "this request was already answered: a nonce is accepted once"
        )
    if request.expires_at <= now:
        raise verification.PresentationRefused(
            "nonce_expired", "this request (and its nonce) has expired; start again"
        )
    answer = _response_from(body, content_type, request)
    if answer.state is not None and request.state and answer.state != request.state:
        raise verification.PresentationRefused(
            "wrong_state", "the response's state is not this request's"
        )
    policy = request.policy or {}
    verified = pipeline.response_verify(
        vp_token=answer.vp_token,
        request=pipeline.Request(
            nonce=request.nonce,
            domain=request.domain,
            client_id=request.client_id or request.domain,
            credential_type=request.credential_type,
            formats=tuple(request.formats or ("ldp_vp", "jwt_vp")),
            dcql=selectors.dcql_query(request),
            vcts=tuple(policy.get("vcts") or ()),
            required_claims=tuple(tuple(p) for p in policy.get("claims") or ()),
            now=now,
        ),
        w3c_trust=selectors.trust_snapshot().get,
        sd_jwt_trust=selectors.sd_jwt_trust(),
        status=_status_check(),
        fetch=_fetcher(),
    )
    with transaction.atomic():
        contributor, created = contributor_get_or_create(did=verified.holder)
        claimed = PresentationRequest.objects.filter(
            pk=request.pk, status=PresentationRequest.Status.PENDING, expires_at__gt=timezone.now()
        ).update(
            status=PresentationRequest.Status.ACCEPTED,
            answered_at=timezone.now(),
            contributor=contributor,
            encryption_key="",  # answered: the response key has done its job
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


ISSUER_FORMATS = ("ldp_vc", "jwt_vc_json", "dc+sd-jwt")
VCT_PATTERN = re.compile(r"^[^\s]{1,200}$")


@dataclass(frozen=True)
class _IssuerInput:
    did: str
    name: str
    credential_types: list[str]
    formats: list[str]
    vcts: list[str]
    certificate: str


def _issuer_identifier(did: str, certificate: str) -> tuple[str, str]:
    """(identifier, certificate PEM): a DID, an https issuer URL, or a certificate's hash."""
    if certificate:
        try:
            parsed = jose.certificate_load(certificate.strip())
        except jose.JoseError as exc:
            raise ValidationFailed("certificate must be a PEM X.509 certificate.") from exc
        identifier = f"x509_hash:{jose.certificate_hash(parsed)}"
        if did and did != identifier:
            raise ValidationFailed(
                "With a certificate, leave did empty (the issuer is keyed by the certificate's hash)."
            )
        return identifier, jose.certificate_pem(parsed)
    if verification.did_method(did) is not None:
        return did, ""
    try:
        parts = urlsplit(did)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        raise ValidationFailed("did is neither a DID nor a well-formed issuer URL.") from exc
    own = did.startswith(settings.CLEANROOM_ORIGIN.rstrip("/") + "/")
    if parts.scheme == "https" or (parts.scheme == "http" and own):
        if not parts.hostname or parts.query or parts.fragment or parts.username:
            raise ValidationFailed("An issuer URL is an https URL with no query or fragment.")
        return did.rstrip("/") if parts.path not in ("", "/") else did, ""
    raise ValidationFailed(
        "did must be a DID (did:key:z6Mk...), an https issuer URL (SD-JWT VC issuers), "
        "or give a certificate instead."
    )


def _issuer_input(
    did: str,
    name: str,
    credential_types: list[str] | None,
    *,
    formats: list[str] | None = None,
    vcts: list[str] | None = None,
    certificate: str = "",
) -> _IssuerInput:
    identifier, pem = _issuer_identifier((did or "").strip(), (certificate or "").strip())
    name = (name or "").strip()
    if not name:
        raise ValidationFailed("name is required.")
    types_in = credential_types or []
    vcts_in = vcts or []
    if not isinstance(types_in, list) or not isinstance(vcts_in, list):
        raise ValidationFailed("credential_types and vcts must be lists.")
    if not types_in and not vcts_in:
        raise ValidationFailed(
            "credential_types must list at least one credential type (or vcts an SD-JWT VC type)."
        )
    cleaned: list[str] = []
    for value in types_in:
        if not isinstance(value, str) or not TYPE_NAME.match(value.strip()):
            raise ValidationFailed(f"{value!r} is not a credential type name.")
        if value.strip() == "VerifiableCredential":
            raise ValidationFailed("VerifiableCredential is too general to trust an issuer for.")
        if value.strip() not in cleaned:
            cleaned.append(value.strip())
    cleaned_vcts: list[str] = []
    for value in vcts_in:
        if not isinstance(value, str) or not VCT_PATTERN.match(value.strip()):
            raise ValidationFailed(f"{value!r} is not an SD-JWT VC type (vct).")
        if value.strip() not in cleaned_vcts:
            cleaned_vcts.append(value.strip())
    is_did = identifier.startswith("did:")
    if cleaned and not is_did:
        raise ValidationFailed(
            "W3C credential types need a DID issuer; an issuer URL or certificate is trusted "
            "for SD-JWT VC types (vcts)."
        )
    if formats is None:
        chosen = (["ldp_vc", "jwt_vc_json"] if cleaned and is_did else []) + (
            ["dc+sd-jwt"] if cleaned_vcts else []
        )
    else:
        if not isinstance(formats, list) or not formats:
            raise ValidationFailed("formats must list at least one credential format.")
        chosen = []
        for value in formats:
            if value not in ISSUER_FORMATS:
                raise ValidationFailed(
                    f"{value!r} is not a credential format (one of {', '.join(ISSUER_FORMATS)})."
                )
            if value not in chosen:
                chosen.append(value)
    if any(f in ("ldp_vc", "jwt_vc_json") for f in chosen) and (not is_did or not cleaned):
        raise ValidationFailed("W3C formats need a DID issuer and credential_types.")
    if "dc+sd-jwt" in chosen and not cleaned_vcts:
        raise ValidationFailed(
            "dc+sd-jwt needs vcts: the SD-JWT VC types trusted from this issuer."
        )
    if not chosen:
        raise ValidationFailed("This issuer would be trusted for no format.")
    return _IssuerInput(identifier, name, cleaned, chosen, cleaned_vcts, pem)


def _issuer_payload(issuer: TrustedIssuer) -> dict[str, Any]:
    return {
        "did": issuer.did,
        "name": issuer.name,
        "credential_types": issuer.credential_types,
        "formats": issuer.formats,
        "vcts": issuer.vcts,
    }


@transaction.atomic
def trusted_issuer_create(
    *,
    did: str = "",
    name: str,
    credential_types: list[str] | None = None,
    formats: list[str] | None = None,
    vcts: list[str] | None = None,
    certificate: str = "",
    actor: User | None,
) -> TrustedIssuer:
    """Trust an issuer (DID, issuer URL or certificate) for credential types and/or vcts."""
    data = _issuer_input(
        did, name, credential_types, formats=formats, vcts=vcts, certificate=certificate
    )
    if TrustedIssuer.objects.filter(did=data.did).exists():
        raise Conflict("This issuer is already trusted; change what it is trusted for instead.")
    issuer = TrustedIssuer.objects.create(
        did=data.did,
        name=data.name,
        credential_types=data.credential_types,
        formats=data.formats,
        vcts=data.vcts,
        certificate=data.certificate,
    )
    audit_record(
        action="identity.issuer.trusted",
        actor=actor,
        subject=f"issuer:{issuer.pk}",
        payload=_issuer_payload(issuer),
    )
    return issuer


@transaction.atomic
def trusted_issuer_update(
    *,
    issuer_id: int,
    name: str,
    credential_types: list[str] | None = None,
    formats: list[str] | None = None,
    vcts: list[str] | None = None,
    actor: User | None,
) -> TrustedIssuer:
    issuer = selectors.trusted_issuer_get(issuer_id=issuer_id)
    data = _issuer_input(
        "" if issuer.certificate else issuer.did,
        name,
        credential_types,
        formats=formats,
        vcts=issuer.vcts if vcts is None else vcts,
        certificate=issuer.certificate,
    )
    issuer.name = data.name
    issuer.credential_types = data.credential_types
    issuer.formats = data.formats
    issuer.vcts = data.vcts
    issuer.save(update_fields=["name", "credential_types", "formats", "vcts", "updated_at"])
    audit_record(
        action="identity.issuer.trusted",
        actor=actor,
        subject=f"issuer:{issuer.pk}",
        payload=_issuer_payload(issuer),
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


def trusted_issuer_ensure(
    *,
    did: str,
    name: str,
    credential_types: list[str] | None = None,
    vcts: list[str] | None = None,
) -> TrustedIssuer:
    """Trust an issuer for these types (adding to what it has); used by the demo seed."""
    existing = TrustedIssuer.objects.filter(did=did).first()
    if existing is None:
        return trusted_issuer_create(
            did=did, name=name, credential_types=credential_types, vcts=vcts, actor=None
        )
    types = list(dict.fromkeys([*existing.credential_types, *(credential_types or [])]))
    merged_vcts = list(dict.fromkeys([*existing.vcts, *(vcts or [])]))
    if types == existing.credential_types and merged_vcts == existing.vcts:
        return existing
    return trusted_issuer_update(
        issuer_id=existing.pk, name=name, credential_types=types, vcts=merged_vcts, actor=None
    )
