"""The wallet's side of OpenID4VP 1.0: check a request object before answering it.

A request object is refused unless:
- its `typ` is `oauth-authz-req+jwt`;
- its `client_id` is the one in the link that was scanned (when the link names one);
- it is signed as its client identifier prefix requires: `decentralized_identifier:<did>` by a
  key of that DID (did:jwk or did:key; `kid` names it), `x509_san_dns:<host>` by the leaf of an
  `x5c` chain that leads to a certificate the wallet trusts, whose SAN holds the host, and whose
  response_uri is on that host; `redirect_uri:<uri>` unsigned (the spec says it cannot be
  signed) and only with `uri` as its response_uri;
- it has not expired, and asks for `vp_token` over `direct_post` or `direct_post.jwt`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509

from identity import jose

REQUEST_TYP = "oauth-authz-req+jwt"


class RequestRefused(Exception):
    """The wallet will not answer this request; the message says why."""


def _unsigned_claims(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    parts = token.split(".")
    if len(parts) != 3 or parts[2]:
        raise RequestRefused("the request object is neither signed nor a plain unsigned JWT")
    try:
        header, claims = jose.b64url_json(parts[0]), jose.b64url_json(parts[1])
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestRefused("the request object is not a JWT") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise RequestRefused("the request object is not a JWT")
    return header, claims


def request_object_verify(
    token: str,
    *,
    client_id: str | None = None,
    trusted_certificates: Sequence[x509.Certificate] = (),
) -> dict[str, Any]:
    """The request's parameters, once its signature and client identifier check out."""
    token = token.strip()
    compact: jose.Compact | None = None
    if token.endswith("."):
        header, claims = _unsigned_claims(token)
        if header.get("alg") != "none":
            raise RequestRefused("the request object carries no signature")
    else:
        try:
            compact = jose.jws_decode(token, "the request object")
        except jose.JoseError as exc:
            raise RequestRefused(exc.message) from exc
        header, claims = compact.header, compact.claims
    if header.get("typ") != REQUEST_TYP:
        raise RequestRefused("the request object's typ is not oauth-authz-req+jwt")
    stated = claims.get("client_id")
    if not isinstance(stated, str) or ":" not in stated:
        raise RequestRefused("the request object has no client_id with a prefix")
    if client_id is not None and client_id != stated:
        raise RequestRefused("the request object's client_id is not the one in the link")
    prefix, _, identifier = stated.partition(":")
    response_uri = claims.get("response_uri")
    try:
        response_host = urlsplit(response_uri).hostname if isinstance(response_uri, str) else None
        scheme = urlsplit(response_uri).scheme if isinstance(response_uri, str) else ""
    except ValueError:
        response_host, scheme = None, ""
    if not response_host or scheme not in ("https", "http"):
        raise RequestRefused("the request object has no response_uri")
    if prefix == "redirect_uri":
        if compact is not None:
            raise RequestRefused("a redirect_uri client may not sign its request (OpenID4VP 1.0)")
        if identifier != response_uri:
            raise RequestRefused("the redirect_uri client_id is not its response_uri")
    elif compact is None:
        raise RequestRefused(f"a {prefix} client must sign its request")
    elif prefix == "decentralized_identifier":
        kid = header.get("kid")
        if not isinstance(kid, str) or kid.split("#", 1)[0] != identifier:
            raise RequestRefused("the request object is not signed with a key of the client's DID")
        try:
            jose.jws_verify(compact, jose.did_key_resolve(kid), "the request object")
        except jose.JoseError as exc:
            raise RequestRefused(exc.message) from exc
    elif prefix == "x509_san_dns":
        try:
            leaf, _anchor = jose.x5c_chain_verify(header.get("x5c"), trusted_certificates)
            jose.jws_verify(compact, jose.certificate_jwk(leaf), "the request object")
        except jose.JoseError as exc:
            raise RequestRefused(exc.message) from exc
        names, _ = jose.certificate_names(leaf)
        if identifier not in names:
            raise RequestRefused("the client's certificate is not for the client_id's DNS name")
        if response_host != identifier:
            raise RequestRefused("the response_uri is not on the client_id's host")
    else:
        raise RequestRefused(f"the client identifier prefix {prefix!r} is not supported")
    expires = claims.get("exp")
    if isinstance(expires, int | float) and expires < time.time():
        raise RequestRefused("the request object has expired")
    if claims.get("response_type") != "vp_token":
        raise RequestRefused("the request does not ask for a vp_token")
    if claims.get("response_mode") not in ("direct_post", "direct_post.jwt"):
        raise RequestRefused("the request's response_mode is not direct_post(.jwt)")
    if not isinstance(claims.get("nonce"), str) or not isinstance(claims.get("dcql_query"), dict):
        raise RequestRefused("the request has no nonce or no dcql_query")
    return dict(claims)


def certificates_load(pem: bytes) -> list[x509.Certificate]:
    return list(x509.load_pem_x509_certificates(pem))


def encryption_key(claims: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The verifier's key (and content encryption) for a direct_post.jwt response."""
    metadata = claims.get("client_metadata") or {}
    keys = (metadata.get("jwks") or {}).get("keys") or []
    usable = [
        k
        for k in keys
        if isinstance(k, dict) and k.get("use", "enc") == "enc" and k.get("alg") == "ECDH-ES"
    ]
    if not usable:
        raise RequestRefused("the request asks for an encrypted response but offers no key")
    encs = metadata.get("encrypted_response_enc_values_supported") or ["A128GCM"]
    enc = next((e for e in encs if e in jose.CONTENT_ENCRYPTIONS), None)
    if enc is None:
        raise RequestRefused("the request offers no content encryption we support")
    return usable[0], enc
