"""Reads of identity: trusted issuers, presentation requests and the request object."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

from cryptography import x509
from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.urls import reverse

from cleanroom.errors import NotFound
from identity import jose, onboarding, sd_jwt_vc
from identity.models import ContributorCredential, PresentationRequest, TrustedIssuer


def trusted_issuer_list() -> QuerySet[TrustedIssuer]:
    return TrustedIssuer.objects.all()


def trusted_issuer_get(*, issuer_id: int) -> TrustedIssuer:
    issuer = TrustedIssuer.objects.filter(pk=issuer_id).first()
    if issuer is None:
        raise NotFound(f"There is no trusted issuer {issuer_id}.")
    return issuer


W3C_FORMATS = ("ldp_vc", "jwt_vc_json")


def trust_snapshot() -> dict[str, frozenset[str]]:
    """Every issuer trusted for W3C credentials, by DID, with its credential types (one query)."""
    return {
        did: frozenset(str(t) for t in types)
        for did, types, formats in TrustedIssuer.objects.values_list(
            "did", "credential_types", "formats"
        )
        if did.startswith("did:") and (not formats or any(f in W3C_FORMATS for f in formats))
    }


@lru_cache(maxsize=64)
def _certificate(pem: str) -> x509.Certificate:
    return jose.certificate_load(pem)


def sd_jwt_trust() -> list[sd_jwt_vc.Trust]:
    """Every issuer trusted for SD-JWT VCs: identifier, vcts, certificate (one query)."""
    trusted: list[sd_jwt_vc.Trust] = []
    for did, formats, vcts, certificate in TrustedIssuer.objects.values_list(
        "did", "formats", "vcts", "certificate"
    ):
        if "dc+sd-jwt" not in (formats or []):
            continue
        trusted.append(
            sd_jwt_vc.Trust(
                identifier=did,
                vcts=frozenset(str(v) for v in vcts or []),
                certificate=_certificate(certificate) if certificate else None,
            )
        )
    return trusted


def trusted_dids_for(*, credential_type: str) -> list[str]:
    return sorted(did for did, types in trust_snapshot().items() if credential_type in types)


def trusted_vcts() -> list[str]:
    return sorted({v for t in sd_jwt_trust() for v in t.vcts})


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
    """The DCQL query of the request, fixed when it was made (older rows: built now)."""
    if request.dcql_query:
        return dict(request.dcql_query)
    return onboarding.dcql_query(
        formats=("ldp_vp", "jwt_vp"),
        policy=onboarding.policy(),
        w3c_issuers=trusted_dids_for(credential_type=request.credential_type),
        sd_jwt_vcts=[],
    )


def _expiry(request: PresentationRequest) -> str:
    return request.expires_at.isoformat().replace("+00:00", "Z")


def client_metadata(request: PresentationRequest) -> dict[str, Any]:
    algorithms = [a for a in jose.SIGNING_ALGORITHMS if a != "Ed25519"]
    metadata: dict[str, Any] = {
        "vp_formats_supported": {
            "dc+sd-jwt": {"sd-jwt_alg_values": algorithms, "kb-jwt_alg_values": algorithms},
            "ldp_vc": {"proof_type_values": ["Ed25519Signature2018", "JsonWebSignature2020"]},
            "jwt_vc_json": {"alg_values": ["EdDSA", "ES256", "ES256K"]},
        },
        "client_name": "Clean room",
    }
    if request.response_mode == "direct_post.jwt" and request.encryption_key:
        key = json.loads(request.encryption_key)
        metadata["jwks"] = {
            "keys": [{**jose.public_jwk(key), "kid": key["kid"], "use": "enc", "alg": "ECDH-ES"}]
        }
        metadata["encrypted_response_enc_values_supported"] = list(jose.CONTENT_ENCRYPTIONS)
    return metadata


def request_object(request: PresentationRequest) -> dict[str, Any]:
    """The request a wallet reads (the fields of API.md plus the OpenID4VP 1.0 ones)."""
    uri = response_uri(request)
    return {
        "id": str(request.pk),
        "nonce": request.nonce,
        "domain": request.domain,
        "dcql_query": dcql_query(request),
        "request_uri": request_uri(request),
        "response_uri": uri,
        "expires_at": _expiry(request),
        "client_id": request.client_id or onboarding.client_id(response_uri=uri),
        "response_type": "vp_token",
        "response_mode": request.response_mode,
        "state": request.state,
        "client_metadata": client_metadata(request),
        "status": request.status,
        "openid4vp_url": wallet_link(request),
    }


def request_object_jwt(request: PresentationRequest) -> str:
    """The request object (JAR, typ oauth-authz-req+jwt), signed as the client_id prefix needs:
    with our key as a did:jwk (decentralized_identifier), with our certificate chain
    (x509_san_dns), or unsigned for redirect_uri, which OpenID4VP 1.0 says cannot be signed."""
    claims = {
        k: v for k, v in request_object(request).items() if k not in ("status", "openid4vp_url")
    }
    claims.update(
        {
            "aud": "https://self-issued.me/v2",
            "iat": int(request.created_at.timestamp()),
            "exp": int(request.expires_at.timestamp()),
        }
    )
    client_id = str(claims["client_id"])
    header: dict[str, Any] = {"typ": "oauth-authz-req+jwt"}
    prefix = client_id.split(":", 1)[0]
    if prefix == "redirect_uri":
        return jose.unsigned_jwt(claims, header=header)
    key = onboarding.verifier_key()
    header["alg"] = "ES256"
    if prefix == "x509_san_dns":
        header["x5c"] = [jose.certificate_x5c(c) for c in onboarding.verifier_certificates()]
    else:
        header["kid"] = f"{onboarding.verifier_did()}#0"
    return jose.jws_sign(claims, key, header=header)


def wallet_link(request: PresentationRequest) -> str:
    """The link a wallet opens (QR code): OpenID4VP by reference to the request_uri."""
    client_id = request.client_id or onboarding.client_id(response_uri=response_uri(request))
    return "openid4vp://authorize?" + urlencode(
        {"client_id": client_id, "request_uri": request_uri(request)}
    )


def contributor_credentials(*, contributor: Any) -> QuerySet[ContributorCredential]:
    return ContributorCredential.objects.filter(contributor=contributor).order_by("pk")
