"""The W3C adapter of the verification pipeline (`identity.pipeline`): our rules, with didkit
only for signatures. (SD-JWT VC is the other adapter, `identity.sd_jwt_vc`.)

Invariants (each closes a gap of didkit 0.3.3, and each has a test that tries to break it):

1. Every embedded credential's proof is verified, not only the presentation's.
2. The presentation names a `holder`; its proof is made with a verification method of the
   holder's own DID document (`authentication`), and every credential's
   `credentialSubject.id` is the holder.
3. Validity dates are ours to check: `issuanceDate`/`expirationDate`, `validFrom`/`validUntil`
   and the JWT `nbf`/`exp` claims; a credential outside its window is refused.
4. The challenge must be the request's nonce and the domain our origin; both are always passed
   to didkit as well. (Single use and expiry of the nonce are the service's, on the row.)
5. Issuer trust (an allow-list per credential type) is checked before anything is resolved or
   fetched; the presentation must hold a credential of the requested type from an issuer
   trusted for that type.
6. Revocation by status list (StatusList2021 and Bitstring Status List) with our own bit
   parsing; a list that cannot be fetched or verified refuses the credential (fail closed).
7. A didkit result is a failure unless its error list is empty; an exception is a failure.
8. Only what we know how to check is accepted: VC data model 1.1 (a 2.0 document is refused as
   unsupported), did:key, and the proof types listed below.

Refusals raise `PresentationRefused` with a short `code` and a plain message that names no
holder DID and no claim value (they are written to the audit log).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cleanroom.errors import VerificationFailed
from identity import vc

CREDENTIALS_V1 = "https://www.w3.org/2018/credentials/v1"
CREDENTIALS_V2 = "https://www.w3.org/ns/credentials/v2"
SUPPORTED_DID_METHODS = ("key",)
LDP_PROOF_TYPES = (
    "Ed25519Signature2018",
    "JsonWebSignature2020",
    "EcdsaSecp256k1Signature2019",
    "EcdsaSecp256r1Signature2019",
)
JWT_ALGORITHMS = ("EdDSA", "ES256", "ES256K")
# didkit's error texts may quote verification methods; a holder's DID must not reach the log.
DID_PATTERN = re.compile(r"did:[a-z0-9]+:[A-Za-z0-9._%:#-]+")
# Clocks of wallets and issuers drift a little; a credential is never stretched by more.
CLOCK_SKEW = timedelta(seconds=60)


class PresentationRefused(VerificationFailed):
    """A presentation did not check out; `code` names the rule, `detail` explains it."""

    def __init__(self, code: str, detail: str, *, unsupported: bool = False) -> None:
        super().__init__(detail, errors=[{"code": code, "message": detail}])
        self.code = code
        if unsupported:
            self.type = "unsupported"
            self.title = "Unsupported"


class IssuerNotTrusted(PresentationRefused):
    type = "untrusted-issuer"
    title = "Untrusted issuer"


@dataclass(frozen=True)
class Expectation:
    """What the verifier asked for: the request's nonce, our origin, the credential type."""

    nonce: str
    domain: str
    credential_type: str
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    # OpenID4VP 1.0 wallets sign for the verifier's client_id; that names us as well.
    other_domains: tuple[str, ...] = ()


@dataclass(frozen=True)
class VerifiedCredential:
    """What the service keeps of a credential: never its claims."""

    types: tuple[str, ...]
    issuer: str
    expires_at: datetime | None
    digest: str


@dataclass(frozen=True)
class VerifiedPresentation:
    holder: str
    credentials: tuple[VerifiedCredential, ...]


# issuer DID -> credential types it is trusted for (None when not on the list)
TrustLookup = Callable[[str], frozenset[str] | None]
# (credentialStatus entry, credential issuer DID) -> None, or raises statuslist.StatusError
StatusCheck = Callable[[dict[str, Any], str], None]


@dataclass
class _Credential:
    raw: dict[str, Any] | str
    number: int
    types: tuple[str, ...]
    issuer: str
    subject_id: str | None
    not_before: list[datetime]
    not_after: list[datetime]
    status: dict[str, Any] | None
    digest: str


# --- small parsers ---------------------------------------------------------------------------


def _b64url_json(segment: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, TypeError) as exc:
        raise PresentationRefused("malformed", f"{what} is not a well-formed JWT") from exc
    if not isinstance(data, dict):
        raise PresentationRefused("malformed", f"{what} is not a well-formed JWT")
    return data


def jwt_decode_unverified(token: str, what: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a compact JWS, for our structural checks (didkit checks the signature)."""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        raise PresentationRefused("malformed", f"{what} is not a well-formed JWT")
    return _b64url_json(parts[0], what), _b64url_json(parts[1], what)


def _date(value: Any, name: str, what: str) -> datetime:
    if not isinstance(value, str):
        raise PresentationRefused("malformed", f"{what}: {name} is not a date")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise PresentationRefused("malformed", f"{what}: {name} is not an RFC 3339 date") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _epoch(value: Any, name: str, what: str) -> datetime:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise PresentationRefused("malformed", f"{what}: JWT claim {name} is not a number")
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise PresentationRefused("malformed", f"{what}: JWT claim {name} is out of range") from exc


def _types(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return ()


def _contexts(document: dict[str, Any]) -> list[Any]:
    context = document.get("@context")
    return context if isinstance(context, list) else [context]


def _check_data_model(document: dict[str, Any], what: str) -> None:
    contexts = _contexts(document)
    if CREDENTIALS_V2 in contexts:
        raise PresentationRefused(
            "unsupported_data_model",
            f"{what} uses the VC Data Model 2.0, which is unsupported here (only 1.1 is)",
            unsupported=True,
        )
    if not contexts or contexts[0] != CREDENTIALS_V1:
        raise PresentationRefused(
            "unsupported_data_model",
            f"{what} does not start its @context with {CREDENTIALS_V1} (unsupported data model)",
            unsupported=True,
        )


def _library_errors(errors: list[str]) -> str:
    return "; ".join(DID_PATTERN.sub("<DID>", e) for e in errors)


def did_method(did: str) -> str | None:
    parts = did.split(":", 2) if isinstance(did, str) else []
    return parts[1] if len(parts) == 3 and parts[0] == "did" and parts[2] else None


def _check_did(did: Any, role: str) -> str:
    if not isinstance(did, str) or not did:
        raise PresentationRefused("malformed", f"the {role} is missing or not a DID")
    method = did_method(did)
    if method is None or "#" in did or "?" in did:
        raise PresentationRefused("malformed", f"the {role} is not a DID")
    if method not in SUPPORTED_DID_METHODS:
        raise PresentationRefused(
            "unsupported_did_method",
            f"the {role} uses the DID method {method!r}, which is unsupported here "
            f"(supported: {', '.join(SUPPORTED_DID_METHODS)})",
            unsupported=True,
        )
    return did


def _vm_did(verification_method: Any, what: str) -> str:
    if not isinstance(verification_method, str) or "#" not in verification_method:
        raise PresentationRefused("malformed", f"{what} names no verification method")
    return verification_method.split("#", 1)[0]


def _digest(document: dict[str, Any] | str) -> str:
    text = (
        document
        if isinstance(document, str)
        else json.dumps(document, sort_keys=True, separators=(",", ":"))
    )
    return hashlib.sha256(text.encode()).hexdigest()


def _single_proof(document: dict[str, Any], what: str, *, missing: str) -> dict[str, Any]:
    proof = document.get("proof")
    if proof is None:
        raise PresentationRefused("unsigned", missing)
    if isinstance(proof, list):
        if len(proof) != 1:
            raise PresentationRefused(
                "unsupported_proof", f"{what} carries several proofs", unsupported=True
            )
        proof = proof[0]
    if not isinstance(proof, dict):
        raise PresentationRefused("malformed", f"{what}'s proof is not an object")
    proof_type = proof.get("type")
    if proof_type not in LDP_PROOF_TYPES:
        raise PresentationRefused(
            "unsupported_proof",
            f"{what} has the proof type {proof_type!r}, which is unsupported here",
            unsupported=True,
        )
    return proof


def _check_jwt_header(header: dict[str, Any], what: str) -> str:
    algorithm = header.get("alg")
    if algorithm not in JWT_ALGORITHMS:
        raise PresentationRefused(
            "unsupported_proof",
            f"{what} is signed with {algorithm!r}, which is unsupported here",
            unsupported=True,
        )
    return _vm_did(header.get("kid"), what)


# --- credentials -----------------------------------------------------------------------------


def _credential_from_jwt(token: str, number: int) -> _Credential:
    what = f"credential {number}"
    header, claims = jwt_decode_unverified(token, what)
    signer = _check_jwt_header(header, what)
    body = claims.get("vc")
    if not isinstance(body, dict):
        raise PresentationRefused("malformed", f"{what} is a JWT without a vc claim")
    _check_data_model(body, what)
    issuer = claims.get("iss")
    if isinstance(body.get("issuer"), str | dict) and _issuer_id(body.get("issuer")) != issuer:
        raise PresentationRefused("malformed", f"{what}: iss and vc.issuer disagree")
    issuer = _check_did(issuer, f"issuer of {what}")
    if signer != issuer:
        raise PresentationRefused("wrong_signer", f"{what} is not signed by its issuer")
    subject = body.get("credentialSubject")
    subject_id = claims.get("sub")
    if isinstance(subject, dict) and "id" in subject:
        if subject_id is None:
            subject_id = subject.get("id")
        elif subject.get("id") != subject_id:
            raise PresentationRefused("malformed", f"{what}: sub and credentialSubject.id disagree")
    if isinstance(subject, list):
        raise PresentationRefused(
            "unsupported_subject", f"{what} has several subjects", unsupported=True
        )
    not_before, not_after = [], []
    if "nbf" in claims:
        not_before.append(_epoch(claims["nbf"], "nbf", what))
    if "exp" in claims:
        not_after.append(_epoch(claims["exp"], "exp", what))
    _ldp_dates(body, what, not_before, not_after, require_issuance=False)
    return _Credential(
        raw=token,
        number=number,
        types=_types(body.get("type")),
        issuer=issuer,
        subject_id=subject_id if isinstance(subject_id, str) else None,
        not_before=not_before,
        not_after=not_after,
        status=body.get("credentialStatus"),
        digest=_digest(token),
    )


def _issuer_id(issuer: Any) -> Any:
    return issuer.get("id") if isinstance(issuer, dict) else issuer


def _ldp_dates(
    body: dict[str, Any],
    what: str,
    not_before: list[datetime],
    not_after: list[datetime],
    *,
    require_issuance: bool,
) -> None:
    if "issuanceDate" in body:
        not_before.append(_date(body["issuanceDate"], "issuanceDate", what))
    elif require_issuance:
        raise PresentationRefused("malformed", f"{what} has no issuanceDate")
    if "validFrom" in body:
        not_before.append(_date(body["validFrom"], "validFrom", what))
    if "expirationDate" in body:
        not_after.append(_date(body["expirationDate"], "expirationDate", what))
    if "validUntil" in body:
        not_after.append(_date(body["validUntil"], "validUntil", what))


def _credential_from_ldp(document: dict[str, Any], number: int) -> _Credential:
    what = f"credential {number}"
    _check_data_model(document, what)
    issuer = _check_did(_issuer_id(document.get("issuer")), f"issuer of {what}")
    proof = _single_proof(document, what, missing=f"{what} is not signed (it has no proof)")
    if proof.get("proofPurpose") != "assertionMethod":
        raise PresentationRefused("wrong_proof_purpose", f"{what}'s proof is not an assertion")
    if _vm_did(proof.get("verificationMethod"), what) != issuer:
        raise PresentationRefused("wrong_signer", f"{what} is not signed by its issuer")
    subject = document.get("credentialSubject")
    if isinstance(subject, list):
        raise PresentationRefused(
            "unsupported_subject", f"{what} has several subjects", unsupported=True
        )
    subject_id = subject.get("id") if isinstance(subject, dict) else None
    not_before: list[datetime] = []
    not_after: list[datetime] = []
    _ldp_dates(document, what, not_before, not_after, require_issuance=True)
    return _Credential(
        raw=document,
        number=number,
        types=_types(document.get("type")),
        issuer=issuer,
        subject_id=subject_id if isinstance(subject_id, str) else None,
        not_before=not_before,
        not_after=not_after,
        status=document.get("credentialStatus"),
        digest=_digest(document),
    )


def _credential_parse(item: Any, number: int) -> _Credential:
    if isinstance(item, str):
        return _credential_from_jwt(item, number)
    if isinstance(item, dict):
        return _credential_from_ldp(item, number)
    raise PresentationRefused("malformed", f"credential {number} is neither an object nor a JWT")


def _check_credential_rules(
    credential: _Credential, *, holder: str, expectation: Expectation, trust: TrustLookup
) -> None:
    what = f"credential {credential.number}"
    if "VerifiableCredential" not in credential.types:
        raise PresentationRefused("malformed", f"{what} is not of type VerifiableCredential")
    if credential.subject_id is None:
        raise PresentationRefused("not_bound_to_holder", f"{what} names no subject")
    if credential.subject_id != holder:
        raise PresentationRefused(
            "not_bound_to_holder", f"{what} was issued to someone other than the holder"
        )
    now = expectation.now
    for moment in credential.not_before:
        if moment > now + CLOCK_SKEW:
            raise PresentationRefused("not_yet_valid", f"{what} is not valid yet")
    for moment in credential.not_after:
        if moment <= now:
            raise PresentationRefused("expired", f"{what} has expired")
    # Trust comes before any resolution or fetch for this issuer.
    trusted_for = trust(credential.issuer)
    specific = [t for t in credential.types if t != "VerifiableCredential"]
    if trusted_for is None:
        raise IssuerNotTrusted(
            "untrusted_issuer",
            f"{what} comes from {credential.issuer}, which is not a trusted issuer",
        )
    if not any(t in trusted_for for t in specific):
        raise IssuerNotTrusted(
            "issuer_not_trusted_for_type",
            f"{what} is a {'/'.join(specific) or 'credential'} from {credential.issuer}, "
            f"which is trusted only for {', '.join(sorted(trusted_for)) or 'nothing'}",
        )


# --- the presentation ------------------------------------------------------------------------


@dataclass
class _Presentation:
    raw: dict[str, Any] | str
    holder: str
    challenge: Any
    domain: Any
    credentials: list[Any]


def _presentation_from_jwt(token: str) -> _Presentation:
    header, claims = jwt_decode_unverified(token, "the presentation")
    signer = _check_jwt_header(header, "the presentation")
    body = claims.get("vp")
    if not isinstance(body, dict):
        raise PresentationRefused("malformed", "the presentation is a JWT without a vp claim")
    _check_data_model(body, "the presentation")
    if "VerifiablePresentation" not in _types(body.get("type")):
        raise PresentationRefused(
            "malformed", "the presentation is not of type VerifiablePresentation"
        )
    holder = claims.get("iss")
    if holder is None:
        raise PresentationRefused("no_holder", "the presentation names no holder")
    if "holder" in body and body.get("holder") != holder:
        raise PresentationRefused("malformed", "the presentation's iss and holder disagree")
    holder = _check_did(holder, "holder")
    if signer != holder:
        raise PresentationRefused(
            "not_signed_by_holder", "the presentation is not signed by its holder"
        )
    now = datetime.now(UTC)
    if "exp" in claims and _epoch(claims["exp"], "exp", "the presentation") <= now:
        raise PresentationRefused("expired", "the presentation has expired")
    if "nbf" in claims and _epoch(claims["nbf"], "nbf", "the presentation") > now + CLOCK_SKEW:
        raise PresentationRefused("not_yet_valid", "the presentation is not valid yet")
    audience = claims.get("aud")
    if isinstance(audience, list):
        audience = audience[0] if len(audience) == 1 else None
    return _Presentation(
        raw=token,
        holder=holder,
        challenge=claims.get("nonce"),
        domain=audience,
        credentials=_credential_list(body),
    )


def _credential_list(body: dict[str, Any]) -> list[Any]:
    items = body.get("verifiableCredential")
    if items is None:
        return []
    return items if isinstance(items, list) else [items]


def _presentation_from_ldp(document: dict[str, Any]) -> _Presentation:
    _check_data_model(document, "the presentation")
    if "VerifiablePresentation" not in _types(document.get("type")):
        raise PresentationRefused(
            "malformed", "the presentation is not of type VerifiablePresentation"
        )
    if document.get("holder") in (None, ""):
        raise PresentationRefused("no_holder", "the presentation names no holder")
    holder = _check_did(document.get("holder"), "holder")
    proof = _single_proof(
        document, "the presentation", missing="the presentation is not signed (it has no proof)"
    )
    if proof.get("proofPurpose") != "authentication":
        raise PresentationRefused(
            "wrong_proof_purpose", "the presentation's proof is not for authentication"
        )
    if _vm_did(proof.get("verificationMethod"), "the presentation") != holder:
        raise PresentationRefused(
            "not_signed_by_holder", "the presentation is not signed by its holder"
        )
    return _Presentation(
        raw=document,
        holder=holder,
        challenge=proof.get("challenge"),
        domain=proof.get("domain"),
        credentials=_credential_list(document),
    )


def _holder_controls(holder: str, verification_method: str) -> None:
    if did_method(holder) == "key":
        # A did:key document is generated from the DID itself: its one authentication method
        # is `did:key:<id>#<id>`, so no resolution is needed to know what the holder controls.
        if verification_method != f"{holder}#{holder.split(':', 2)[2]}":
            raise PresentationRefused(
                "not_signed_by_holder",
                "the presentation is signed with a key the holder does not use for authentication",
            )
        return
    try:
        document = vc.did_resolve(holder)
    except vc.BackendError as exc:
        raise PresentationRefused(
            "unresolvable_did", "the holder's DID cannot be resolved"
        ) from exc
    if document.get("id") != holder:
        raise PresentationRefused("unresolvable_did", "the holder's DID cannot be resolved")
    authentication = document.get("authentication") or []
    ids = {
        a if isinstance(a, str) else a.get("id")
        for a in authentication
        if isinstance(a, str | dict)
    }
    if verification_method not in ids:
        raise PresentationRefused(
            "not_signed_by_holder",
            "the presentation is signed with a key the holder does not use for authentication",
        )


def _presentation_vm(presentation: _Presentation) -> str:
    if isinstance(presentation.raw, str):
        header, _ = jwt_decode_unverified(presentation.raw, "the presentation")
        return str(header.get("kid"))
    proof = presentation.raw["proof"]
    proof = proof[0] if isinstance(proof, list) else proof
    return str(proof.get("verificationMethod"))


def presentation_parse(vp_token: Any) -> _Presentation:
    if isinstance(vp_token, str):
        return _presentation_from_jwt(vp_token.strip())
    if isinstance(vp_token, dict):
        return _presentation_from_ldp(vp_token)
    raise PresentationRefused("malformed", "vp_token must be a presentation object or a JWT string")


def presentation_verify(
    *, vp_token: Any, expectation: Expectation, trust: TrustLookup, status: StatusCheck
) -> VerifiedPresentation:
    """Verify a presentation against a request; raises PresentationRefused with the reason."""
    from identity import statuslist

    presentation = presentation_parse(vp_token)
    if presentation.challenge != expectation.nonce:
        raise PresentationRefused(
            "wrong_nonce", "the presentation was not made for this request (wrong nonce)"
        )
    if presentation.domain != expectation.domain and (
        not presentation.domain or presentation.domain not in expectation.other_domains
    ):
        raise PresentationRefused(
            "wrong_domain",
            f"the presentation was made for another site (domain must be {expectation.domain})",
        )
    if not presentation.credentials:
        raise PresentationRefused("no_credential", "the presentation holds no credential")
    if len(presentation.credentials) > 10:
        raise PresentationRefused("malformed", "the presentation holds more than 10 credentials")
    credentials = [
        _credential_parse(item, number)
        for number, item in enumerate(presentation.credentials, start=1)
    ]
    for credential in credentials:
        _check_credential_rules(
            credential, holder=presentation.holder, expectation=expectation, trust=trust
        )
    wanted = expectation.credential_type
    if not any(
        wanted in credential.types and wanted in (trust(credential.issuer) or frozenset())
        for credential in credentials
    ):
        raise IssuerNotTrusted(
            "no_onboarding_credential",
            f"the presentation holds no {wanted} from an issuer trusted for it",
        )
    _holder_controls(presentation.holder, _presentation_vm(presentation))
    try:
        report = vc.signatures_verify(
            presentation=presentation.raw,
            challenge=expectation.nonce,
            domain=str(presentation.domain),
            credentials=[c.raw for c in credentials],
        )
    except vc.BackendError as exc:
        raise PresentationRefused(
            "backend_unavailable", f"signatures could not be checked: {exc}"
        ) from exc
    if report.presentation:
        raise PresentationRefused(
            "bad_presentation_signature",
            f"the presentation's signature does not verify ({_library_errors(report.presentation)})",
        )
    for credential, errors in zip(credentials, report.credentials, strict=True):
        if errors:
            raise PresentationRefused(
                "bad_credential_signature",
                f"credential {credential.number}'s signature does not verify ({_library_errors(errors)})",
            )
    for credential in credentials:
        if credential.status is None:
            continue
        try:
            status(credential.status, credential.issuer)
        except statuslist.StatusFetchError as exc:
            raise PresentationRefused(
                "status_unavailable",
                f"credential {credential.number}'s revocation status cannot be checked: {exc}",
            ) from exc
        except statuslist.StatusRevoked as exc:
            raise PresentationRefused("revoked", f"credential {credential.number}: {exc}") from exc
        except statuslist.StatusError as exc:
            raise PresentationRefused(
                "status_invalid",
                f"credential {credential.number}'s status list is not acceptable: {exc}",
            ) from exc
    return VerifiedPresentation(
        holder=presentation.holder,
        credentials=tuple(
            VerifiedCredential(
                types=tuple(t for t in c.types if t != "VerifiableCredential"),
                issuer=c.issuer,
                expires_at=min(c.not_after) if c.not_after else None,
                digest=c.digest,
            )
            for c in credentials
        ),
    )


# --- status entries --------------------------------------------------------------------------


def status_entry_check(
    entry: Any,
    issuer: str,
    *,
    fetch: Callable[[str], bytes],
    cache_seconds: float,
    now: datetime | None = None,
) -> None:
    """Check one `credentialStatus` entry against its list; raises statuslist.StatusError."""
    from identity import statuslist

    if not isinstance(entry, dict):
        raise statuslist.StatusError("credentialStatus is not an object")
    kind = statuslist.ENTRY_TYPES.get(str(entry.get("type")))
    if kind is None:
        raise statuslist.StatusError(f"the status type {entry.get('type')!r} is unsupported")
    purpose = entry.get("statusPurpose")
    if purpose not in statuslist.SUPPORTED_PURPOSES:
        raise statuslist.StatusError(f"the status purpose {purpose!r} is unsupported")
    raw_index = entry.get("statusListIndex")
    try:
        index = (
            int(raw_index)
            if isinstance(raw_index, str | int) and not isinstance(raw_index, bool)
            else -1
        )
    except ValueError:
        index = -1
    if index < 0:
        raise statuslist.StatusError("statusListIndex is not a non-negative integer")
    url = entry.get("statusListCredential")
    if not isinstance(url, str):
        raise statuslist.StatusError("statusListCredential is not a URL")
    cache_key = f"{url}|{issuer}|{purpose}|{kind}"
    bits = statuslist.CACHE.get(cache_key)
    if bits is None:
        bits = _status_list_load(
            url, issuer=issuer, purpose=purpose, kind=kind, fetch=fetch, now=now
        )
        statuslist.CACHE.put(cache_key, bits, seconds=cache_seconds)
    if statuslist.bit_is_set(bits, index):
        raise statuslist.StatusRevoked(
            "the credential has been revoked"
            if purpose == "revocation"
            else "the credential is suspended"
        )


def _status_list_load(
    url: str,
    *,
    issuer: str,
    purpose: str,
    kind: str,
    fetch: Callable[[str], bytes],
    now: datetime | None,
) -> bytes:
    from identity import statuslist

    body = fetch(url)
    try:
        text = body.decode("utf-8").strip()
        document: Any = (
            text if text.count(".") == 2 and not text.startswith("{") else json.loads(text)
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise statuslist.StatusError("the status list is not JSON or a JWT") from exc
    try:
        listed = _credential_parse(document, 0)
    except PresentationRefused as exc:
        raise statuslist.StatusError(
            f"the status list credential is not acceptable: {exc.detail}"
        ) from exc
    if listed.issuer != issuer:
        raise statuslist.StatusError("the status list was not issued by the credential's issuer")
    if statuslist.LIST_CREDENTIAL_TYPES[kind] not in listed.types:
        raise statuslist.StatusError(
            f"the status list is not a {statuslist.LIST_CREDENTIAL_TYPES[kind]}"
        )
    moment = now or datetime.now(UTC)
    if any(m <= moment for m in listed.not_after) or any(
        m > moment + CLOCK_SKEW for m in listed.not_before
    ):
        raise statuslist.StatusError("the status list is outside its validity period")
    errors = vc.credential_verify(document)
    if errors:
        raise statuslist.StatusError(
            f"the status list's signature does not verify ({_library_errors(errors)})"
        )
    body_doc = (
        document
        if isinstance(document, dict)
        else jwt_decode_unverified(document, "status list")[1]["vc"]
    )
    subject = body_doc.get("credentialSubject")
    if not isinstance(subject, dict) or subject.get("type") != kind:
        raise statuslist.StatusError(f"the status list's subject is not a {kind}")
    if subject.get("statusPurpose") != purpose:
        raise statuslist.StatusError("the status list is for another status purpose")
    return statuslist.bitstring_decode(subject.get("encodedList", ""))
