"""The SD-JWT VC adapter of the verification pipeline (IETF SD-JWT VC over RFC 9901).

What it checks, in this order, each refusal a `PresentationRefused` with a named code:

1. the issuer-signed JWT's `typ` is `dc+sd-jwt` (or the older `vc+sd-jwt`) and its `alg` is on
   the allow-list (`jose.SIGNING_ALGORITHMS`: never `none`, never a symmetric algorithm);
2. trust before any fetch: the issuer is on our list, by DID (`iss` is the DID, `kid` one of its
   keys), by issuer URL (keys from its JWT VC Issuer Metadata), or by certificate (the `x5c`
   chain leads to a trusted certificate and `iss` matches the leaf's SAN); the `vct` is one the
   issuer is trusted for and one the request asked for;
3. the issuer's signature; then `iat`/`nbf`/`exp` with `verification.CLOCK_SKEW`;
4. every disclosure hashed into `_sd` (no duplicate, none unreferenced: `identity.sdjwt`);
5. the key binding JWT: `kb+jwt`, signed by the `cnf` key, the request's nonce, the verifier's
   client_id as `aud`, a fresh `iat`, the right `sd_hash`;
6. the claims the request needs (e.g. `age_equal_or_over.18` is `true`);
7. status through an IETF Token Status List signed by the same issuer (fail closed).

What comes out is what the service keeps: the `vct`, the issuer, the expiry and a hash of the
issuer-signed JWT. Disclosed claim values never leave this module, nor appear in a refusal.
The holder is named by its `cnf` key as a `did:jwk`.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509

from identity import jose, sdjwt, statuslist
from identity.verification import (
    CLOCK_SKEW,
    IssuerNotTrusted,
    PresentationRefused,
    VerifiedCredential,
    VerifiedPresentation,
)

FORMAT = "dc+sd-jwt"
TYPES = ("dc+sd-jwt", "vc+sd-jwt")
STATUS_LIST_TYP = "statuslist+jwt"
# A KB-JWT older than this was not made for a sign-in happening now.
KB_MAX_AGE = timedelta(minutes=5)

# (url, accept) -> body; raises statuslist.StatusFetchError
Fetch = Callable[[str, str], bytes]


@dataclass(frozen=True)
class Trust:
    """One trusted issuer as the adapter sees it."""

    identifier: str  # a DID, an https issuer URL, or x509_hash:<...> for a certificate
    vcts: frozenset[str]
    certificate: x509.Certificate | None = None


@dataclass(frozen=True)
class Expectation:
    nonce: str
    audience: str  # the verifier's client_id
    vcts: tuple[str, ...]  # what the request accepts
    required_claims: tuple[tuple[tuple[str, ...], Any], ...]  # (path, value that must be there)
    now: datetime


def _refuse(exc: jose.JoseError, *, code: str | None = None, what: str = "") -> PresentationRefused:
    return PresentationRefused(code or exc.code, f"{what}{exc.message}")


def _epoch(claims: dict[str, Any], name: str) -> datetime | None:
    value = claims.get(name)
    if value is None:
        return None
    moment = jose.epoch(value)
    if moment is None:
        raise PresentationRefused("malformed", f"the credential's {name} is not a timestamp")
    return moment


def metadata_url(issuer: str) -> str:
    """Where JWT VC Issuer Metadata lives: /.well-known/jwt-vc-issuer inserted before the path."""
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    return f"{parts.scheme}://{parts.netloc}/.well-known/jwt-vc-issuer{path}"


def _json(body: bytes, what: str) -> Any:
    try:
        return json.loads(body)
    except ValueError as exc:
        raise statuslist.StatusError(f"{what} is not JSON") from exc


class _KeyResolver:
    """Finds the key that must have signed a JWT of `iss`, through `trust` (no fetch before it)."""

    def __init__(self, trust: Sequence[Trust], fetch: Fetch, *, now: datetime) -> None:
        self.trust = trust
        self.fetch = fetch
        self.now = now

    def entry_for(self, compact: jose.Compact, issuer: Any) -> tuple[Trust, str]:
        """The trusted issuer this JWT claims to come from, and how (did, url or x509)."""
        if not isinstance(issuer, str) or not issuer:
            raise PresentationRefused("malformed", "the credential names no issuer (iss)")
        if "x5c" in compact.header:
            anchors = [t.certificate for t in self.trust if t.certificate is not None]
            try:
                leaf, anchor = jose.x5c_chain_verify(compact.header["x5c"], anchors, now=self.now)
            except jose.JoseError as exc:
                if exc.code == "untrusted_certificate":
                    raise IssuerNotTrusted(
                        "untrusted_issuer",
                        f"the credential's certificate chain is not trusted: {exc.message}",
                    ) from exc
                raise _refuse(exc, what="the credential's x5c: ") from exc
            dns_names, uris = jose.certificate_names(leaf)
            try:
                host = urlsplit(issuer).hostname if issuer.startswith("https://") else None
            except ValueError:
                host = None
            if issuer not in uris and (host is None or host not in dns_names):
                raise IssuerNotTrusted(
                    "untrusted_issuer",
                    "the credential's iss does not match its certificate's subject alternative names",
                )
            for entry in self.trust:
                if entry.certificate is not None and entry.certificate == anchor:
                    return entry, "x509"
        for entry in self.trust:
            if entry.certificate is None and entry.identifier == issuer:
                return entry, "did" if issuer.startswith("did:") else "url"
        raise IssuerNotTrusted(
            "untrusted_issuer", f"the credential comes from {issuer}, which is not a trusted issuer"
        )

    def key_for(self, compact: jose.Compact, issuer: str, how: str) -> dict[str, Any]:
        kid = compact.header.get("kid")
        if how == "x509":
            leaf = jose.certificate_load(base64.b64decode(str(compact.header["x5c"][0])))
            return jose.certificate_jwk(leaf)
        if how == "did":
            if kid is not None and (not isinstance(kid, str) or not kid.startswith(issuer + "#")):
                raise PresentationRefused(
                    "wrong_signer", "the credential's kid is not a key of its issuer's DID"
                )
            try:
                return jose.did_key_resolve(kid or issuer)
            except jose.JoseError as exc:
                raise _refuse(exc, what="the issuer's DID: ") from exc
        return self._metadata_key(issuer, kid)

    def _metadata_key(self, issuer: str, kid: Any) -> dict[str, Any]:
        cache_key = f"jwt-vc-issuer|{issuer}"
        keys = statuslist.CACHE.get(cache_key)
        if keys is None:
            try:
                metadata = _json(
                    self.fetch(metadata_url(issuer), "application/json"), "the issuer metadata"
                )
                if not isinstance(metadata, dict) or metadata.get("issuer") != issuer:
                    raise statuslist.StatusError("the issuer metadata names another issuer")
                jwks = metadata.get("jwks")
                if jwks is None and isinstance(metadata.get("jwks_uri"), str):
                    jwks = _json(self.fetch(metadata["jwks_uri"], "application/json"), "the JWKS")
                if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
                    raise statuslist.StatusError("the issuer metadata has no keys")
                keys = [k for k in jwks["keys"] if isinstance(k, dict)]
            except statuslist.StatusError as exc:
                raise PresentationRefused(
                    "issuer_keys_unavailable", f"the issuer's keys cannot be obtained: {exc}"
                ) from exc
            statuslist.CACHE.put(cache_key, keys, seconds=300)
        matching = [k for k in keys if kid is None or k.get("kid") == kid]
        if len(matching) != 1:
            raise PresentationRefused(
                "wrong_signer",
                "the issuer's metadata has no single key matching the credential's kid",
            )
        try:
            return jose.public_jwk(matching[0])
        except jose.JoseError as exc:
            raise _refuse(exc, what="the issuer's metadata: ") from exc


def _claim(claims: dict[str, Any], path: tuple[str, ...]) -> tuple[bool, Any]:
    value: Any = claims
    for name in path:
        if not isinstance(value, dict) or name not in value:
            return False, None
        value = value[name]
    return True, value


def verify(
    token: Any,
    *,
    expectation: Expectation,
    trust: Sequence[Trust],
    fetch: Fetch,
    status_cache_seconds: float = 300,
    number: int = 1,
) -> VerifiedPresentation:
    """Verify one SD-JWT VC presentation; raises PresentationRefused with the reason."""
    what = f"credential {number}: "
    try:
        presentation = sdjwt.parse(token)
    except jose.JoseError as exc:
        raise _refuse(exc, what=what) from exc
    compact = presentation.issuer_jwt
    header, payload = compact.header, compact.claims
    if header.get("typ") not in TYPES:
        raise PresentationRefused(
            "wrong_typ", f"{what}the issuer-signed JWT's typ is not dc+sd-jwt", unsupported=True
        )
    try:
        jose.algorithm_check(header, "the credential")
    except jose.JoseError as exc:
        raise _refuse(exc, what=what) from exc
    vct = payload.get("vct")
    if not isinstance(vct, str) or not vct:
        raise PresentationRefused("malformed", f"{what}the credential has no vct")
    resolver = _KeyResolver(trust, fetch, now=expectation.now)
    entry, how = resolver.entry_for(compact, payload.get("iss"))
    issuer = str(payload["iss"])
    if vct not in entry.vcts:
        raise IssuerNotTrusted(
            "vct_not_allowed",
            f"{what}{issuer} is not trusted for credentials of type {vct}",
        )
    if vct not in expectation.vcts:
        raise PresentationRefused(
            "vct_not_requested", f"{what}the request did not ask for credentials of type {vct}"
        )
    key = resolver.key_for(compact, issuer, how)
    try:
        jose.jws_verify(compact, key, "the credential")
    except jose.JoseError as exc:
        code = "bad_credential_signature" if exc.code == "bad_signature" else exc.code
        raise _refuse(exc, code=code, what=what) from exc
    now = expectation.now
    issued_at, not_before, expires = (_epoch(payload, n) for n in ("iat", "nbf", "exp"))
    for moment in (issued_at, not_before):
        if moment is not None and moment > now + CLOCK_SKEW:
            raise PresentationRefused("not_yet_valid", f"{what}the credential is not valid yet")
    if expires is not None and expires <= now:
        raise PresentationRefused("expired", f"{what}the credential has expired")
    try:
        claims = sdjwt.claims_resolve(payload, presentation.disclosures)
    except jose.JoseError as exc:
        raise _refuse(exc, what=what) from exc
    confirmation = payload.get("cnf")
    holder_key = confirmation.get("jwk") if isinstance(confirmation, dict) else None
    if not isinstance(holder_key, dict):
        raise PresentationRefused(
            "no_holder_key", f"{what}the credential is not bound to a holder key (cnf.jwk)"
        )
    try:
        holder_key = jose.public_jwk(holder_key)
        sdjwt.key_binding_check(
            presentation,
            holder_key,
            sdjwt.KeyBindingExpectation(
                nonce=expectation.nonce,
                audience=expectation.audience,
                now=now,
                max_age=KB_MAX_AGE,
                clock_skew=CLOCK_SKEW,
            ),
        )
    except jose.JoseError as exc:
        raise _refuse(exc, what=what) from exc
    for path, wanted in expectation.required_claims:
        present, value = _claim(claims, path)
        if not present:
            raise PresentationRefused(
                "claim_not_disclosed", f"{what}the claim {'.'.join(path)} was not disclosed"
            )
        if value is not wanted and value != wanted:
            raise PresentationRefused(
                "claim_not_satisfied",
                f"{what}the claim {'.'.join(path)} does not have the required value",
            )
    if "status" in payload:
        _status_check(payload["status"], compact, issuer, how, resolver, status_cache_seconds, what)
    return VerifiedPresentation(
        holder=jose.did_jwk(holder_key),
        credentials=(
            VerifiedCredential(
                types=(vct,),
                issuer=issuer,
                expires_at=expires,
                digest=hashlib.sha256(compact.token.encode()).hexdigest(),
            ),
        ),
    )


def _status_check(
    status: Any,
    credential: jose.Compact,
    issuer: str,
    how: str,
    resolver: _KeyResolver,
    cache_seconds: float,
    what: str,
) -> None:
    reference = status.get("status_list") if isinstance(status, dict) else None
    if not isinstance(reference, dict):
        raise PresentationRefused(
            "status_invalid", f"{what}the credential's status is not a status_list reference"
        )
    index, uri = reference.get("idx"), reference.get("uri")
    if (
        not isinstance(index, int)
        or isinstance(index, bool)
        or index < 0
        or not isinstance(uri, str)
    ):
        raise PresentationRefused(
            "status_invalid", f"{what}the credential's status_list is malformed"
        )
    cache_key = f"token-status|{uri}|{issuer}"
    cached = statuslist.CACHE.get(cache_key)
    try:
        if cached is None:
            cached = _status_list_load(uri, issuer, how, resolver)
            statuslist.CACHE.put(cache_key, cached, seconds=min(cache_seconds, cached[2]))
        bits, data, _ttl = cached
        value = statuslist.token_status_value(data, bits, index)
    except statuslist.StatusFetchError as exc:
        raise PresentationRefused(
            "status_unavailable", f"{what}the credential's status cannot be checked: {exc}"
        ) from exc
    except statuslist.StatusError as exc:
        raise PresentationRefused(
            "status_invalid", f"{what}the credential's status list is not acceptable: {exc}"
        ) from exc
    if value == statuslist.TOKEN_STATUS_INVALID:
        raise PresentationRefused("revoked", f"{what}the credential has been revoked")
    if value == statuslist.TOKEN_STATUS_SUSPENDED:
        raise PresentationRefused("revoked", f"{what}the credential is suspended")
    if value != statuslist.TOKEN_STATUS_VALID:
        raise PresentationRefused("status_invalid", f"{what}the credential's status is not valid")


def _status_list_load(
    uri: str, issuer: str, how: str, resolver: _KeyResolver
) -> tuple[int, bytes, float]:
    body = resolver.fetch(uri, "application/statuslist+jwt")
    try:
        compact = jose.jws_decode(body.decode("utf-8").strip(), "the status list token")
    except (UnicodeDecodeError, jose.JoseError) as exc:
        raise statuslist.StatusError("the status list is not a JWT") from exc
    if compact.header.get("typ") != STATUS_LIST_TYP:
        raise statuslist.StatusError("the status list token's typ is not statuslist+jwt")
    if compact.claims.get("sub") != uri:
        raise statuslist.StatusError("the status list token is for another list (sub)")
    if compact.claims.get("iss", issuer) != issuer:
        raise statuslist.StatusError("the status list token was issued by someone else")
    try:
        _entry, token_how = resolver.entry_for(compact, issuer)
        key = resolver.key_for(compact, issuer, token_how)
        jose.jws_verify(compact, key, "the status list token")
    except (PresentationRefused, jose.JoseError) as exc:
        message = exc.detail if isinstance(exc, PresentationRefused) else exc.message
        raise statuslist.StatusError(
            f"the status list token is not signed by the credential's issuer ({message})"
        ) from exc
    now = resolver.now
    expires = compact.claims.get("exp")
    if expires is not None and (jose.epoch(expires) or now) <= now:
        raise statuslist.StatusError("the status list token has expired (or its exp is unusable)")
    listed = compact.claims.get("status_list")
    if not isinstance(listed, dict):
        raise statuslist.StatusError("the status list token has no status_list")
    bits = listed.get("bits")
    data = statuslist.token_status_decode(listed.get("lst"), bits)
    assert isinstance(bits, int)
    ttl = compact.claims.get("ttl")
    ttl_seconds = float(ttl) if isinstance(ttl, int | float) and ttl > 0 else 300.0
    return int(bits), data, ttl_seconds
