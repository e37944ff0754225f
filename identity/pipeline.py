"""One verification pipeline for every presentation format, each format behind its adapter.

    response (vp_token) -> unwrap (DCQL map or a single presentation)
        -> per presentation: format allowed by the request? -> adapter
             ldp_vp / jwt_vp: identity.verification (didkit behind identity.vc)
             dc+sd-jwt:       identity.sd_jwt_vc
        -> one holder across everything presented -> VerifiedPresentation

What every format shares lives here or in the service: the request's nonce and audience, single
use and expiry of the request, the trust registry, fail-closed status, what is kept (type,
issuer, expiry, hash) and the audit of every attempt. What differs (signatures, disclosure,
holder binding) is the adapter's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from identity import sd_jwt_vc, sdjwt, verification
from identity.verification import PresentationRefused, VerifiedPresentation

MAX_PRESENTATIONS = 4


@dataclass(frozen=True)
class Request:
    """What the verifier asked for, as stored on the presentation request."""

    nonce: str
    domain: str
    client_id: str
    credential_type: str
    formats: tuple[str, ...]
    dcql: dict[str, Any]
    vcts: tuple[str, ...]
    required_claims: tuple[tuple[str, ...], ...]
    now: datetime


def presentation_format(item: Any) -> str:
    if sdjwt.looks_like_sd_jwt(item):
        return "dc+sd-jwt"
    if isinstance(item, str):
        return "jwt_vp"
    if isinstance(item, dict):
        return "ldp_vp"
    raise PresentationRefused("malformed", "a presentation is neither an object nor a string")


def _unwrap(vp_token: Any, request: Request) -> list[tuple[str | None, Any]]:
    """(credential query id, presentation) pairs: OpenID4VP 1.0 answers with a map keyed by the
    DCQL query ids; a single presentation (as API v1 clients send) stands alone."""
    is_map = (
        isinstance(vp_token, dict)
        and vp_token
        and "@context" not in vp_token
        and "proof" not in vp_token
        and all(isinstance(v, list) for v in vp_token.values())
    )
    if not is_map:
        return [(None, vp_token)]
    queries = {q.get("id"): q for q in request.dcql.get("credentials", []) if isinstance(q, dict)}
    pairs: list[tuple[str | None, Any]] = []
    for query_id, presentations in vp_token.items():
        if query_id not in queries:
            raise PresentationRefused(
                "unknown_credential_query", "the vp_token answers a credential query we did not ask"
            )
        if len(presentations) != 1:
            raise PresentationRefused(
                "malformed", "the vp_token must hold exactly one presentation per credential query"
            )
        pairs.append((str(query_id), presentations[0]))
    if len(pairs) > MAX_PRESENTATIONS:
        raise PresentationRefused("malformed", "the vp_token holds too many presentations")
    return pairs


def response_verify(
    *,
    vp_token: Any,
    request: Request,
    w3c_trust: verification.TrustLookup,
    sd_jwt_trust: Sequence[sd_jwt_vc.Trust],
    status: verification.StatusCheck,
    fetch: sd_jwt_vc.Fetch,
) -> VerifiedPresentation:
    """Verify a wallet's vp_token against the request; raises PresentationRefused."""
    pairs = _unwrap(vp_token, request)
    queries = {q.get("id"): q for q in request.dcql.get("credentials", []) if isinstance(q, dict)}
    results: list[VerifiedPresentation] = []
    for number, (query_id, item) in enumerate(pairs, start=1):
        kind = presentation_format(item)
        if kind not in request.formats:
            raise PresentationRefused(
                "format_not_requested",
                f"presentation {number} is {kind}, which this request did not ask for",
                unsupported=True,
            )
        if query_id is not None:
            from identity.onboarding import DCQL_FORMATS

            if queries[query_id].get("format") != DCQL_FORMATS[kind]:
                raise PresentationRefused(
                    "format_not_requested",
                    f"presentation {number} is {kind}, not the format of query {query_id}",
                )
        if kind == "dc+sd-jwt":
            results.append(
                sd_jwt_vc.verify(
                    item,
                    expectation=sd_jwt_vc.Expectation(
                        nonce=request.nonce,
                        audience=request.client_id,
                        vcts=request.vcts,
                        required_claims=tuple((path, True) for path in request.required_claims),
                        now=request.now,
                    ),
                    trust=sd_jwt_trust,
                    fetch=fetch,
                    number=number,
                )
            )
        else:
            results.append(
                verification.presentation_verify(
                    vp_token=item,
                    expectation=verification.Expectation(
                        nonce=request.nonce,
                        domain=request.domain,
                        credential_type=request.credential_type,
                        now=request.now,
                        other_domains=(request.client_id,),
                    ),
                    trust=w3c_trust,
                    status=status,
                )
            )
    holders = {r.holder for r in results}
    if len(holders) != 1:
        raise PresentationRefused(
            "several_holders", "the presentations were made by more than one holder"
        )
    return VerifiedPresentation(
        holder=results[0].holder,
        credentials=tuple(c for r in results for c in r.credentials),
    )
