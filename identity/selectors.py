"""Reads of identity: trusted issuers, presentation requests and the request object."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.urls import reverse

from cleanroom.errors import NotFound
from identity.models import ContributorCredential, PresentationRequest, TrustedIssuer


def trusted_issuer_list() -> QuerySet[TrustedIssuer]:
    return TrustedIssuer.objects.all()


def trusted_issuer_get(*, issuer_id: int) -> TrustedIssuer:
    issuer = TrustedIssuer.objects.filter(pk=issuer_id).first()
    if issuer is None:
        raise NotFound(f"There is no trusted issuer {issuer_id}.")
    return issuer


def trust_snapshot() -> dict[str, frozenset[str]]:
    """Every trusted issuer's DID with its credential types (one query per verification)."""
    return {
        did: frozenset(str(t) for t in types)
        for did, types in TrustedIssuer.objects.values_list("did", "credential_types")
    }


def trusted_dids_for(*, credential_type: str) -> list[str]:
    return sorted(did for did, types in trust_snapshot().items() if credential_type in types)


def presentation_request_get(*, request_id: UUID | str) -> PresentationRequest:
    try:
        request = PresentationRequest.objects.filter(pk=request_id).first()
    except (ValueError, TypeError, DjangoValidationError):  # a malformed id is simply unknown
        request = None
    if request is None:
        raise NotFound("There is no such presentation request.")
    return request


def request_uri(request: PresentationRequest) -> str:
    path = reverse("identity-presentation-request", kwargs={"request_id": request.pk})
    return settings.CLEANROOM_ORIGIN.rstrip("/") + path


def response_uri(request: PresentationRequest) -> str:
    path = reverse("identity-presentation-response", kwargs={"request_id": request.pk})
    return settings.CLEANROOM_ORIGIN.rstrip("/") + path


def dcql_query(request: PresentationRequest) -> dict[str, Any]:
    """OpenID4VP 1.0 DCQL: the requested type, as a JSON-LD or a JWT credential, from these issuers.

    DCQL defines no trusted-authority type for DIDs; "did" lists the trusted issuer DIDs.
    """
    type_values = [["VerifiableCredential", request.credential_type]]
    authorities = [
        {"type": "did", "values": trusted_dids_for(credential_type=request.credential_type)}
    ]
    return {
        "credentials": [
            {
                "id": "onboarding_ldp",
                "format": "ldp_vc",
                "meta": {"type_values": type_values},
                "trusted_authorities": authorities,
            },
            {
                "id": "onboarding_jwt",
                "format": "jwt_vc_json",
                "meta": {"type_values": type_values},
                "trusted_authorities": authorities,
            },
        ],
        "credential_sets": [
            {"options": [["onboarding_ldp"], ["onboarding_jwt"]], "required": True}
        ],
    }


def request_object(request: PresentationRequest) -> dict[str, Any]:
    """The request a wallet reads (the fields of API.md plus the OpenID4VP ones)."""
    return {
        "id": str(request.pk),
        "nonce": request.nonce,
        "domain": request.domain,
        "dcql_query": dcql_query(request),
        "request_uri": request_uri(request),
        "response_uri": response_uri(request),
        "expires_at": request.expires_at.isoformat().replace("+00:00", "Z"),
        "client_id": request.domain,
        "response_type": "vp_token",
        "response_mode": "direct_post",
        "status": request.status,
    }


def wallet_link(request: PresentationRequest) -> str:
    """The link a wallet opens (QR code): OpenID4VP by reference to the request_uri."""
    from urllib.parse import urlencode

    return "openid4vp://authorize?" + urlencode(
        {"client_id": request.domain, "request_uri": request_uri(request)}
    )


def contributor_credentials(*, contributor: Any) -> QuerySet[ContributorCredential]:
    return ContributorCredential.objects.filter(contributor=contributor).order_by("pk")
