"""The wallet's side: a request object is answered only when its signature and client
identifier check out; anything else is refused before a credential is touched."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from django.core.handlers.wsgi import WSGIHandler

from cleanroom.accounts.models import Contributor
from identity import jose, onboarding, selectors, services
from identity.wallet import openid4vp
from identity.wallet.core import WalletError, present_url

from .conftest import pid

pytestmark = pytest.mark.django_db


@pytest.fixture
def signed(db):
    row = services.presentation_request_create(formats=["dc+sd-jwt"])
    request = selectors.request_object(row)
    return selectors.request_object_jwt(row), request


def _client_id(request):
    return parse_qs(urlsplit(request["openid4vp_url"]).query)["client_id"][0]


def _resign(token, key, **changes):
    compact = jose.jws_decode(token, "jar")
    header = {**compact.header, **changes.pop("header", {})}
    return jose.jws_sign({**compact.claims, **changes}, key, header=header)


def test_a_good_request_object_is_accepted(signed):
    token, request = signed
    claims = openid4vp.request_object_verify(token, client_id=_client_id(request))
    assert claims["nonce"] == request["nonce"]


def test_a_signature_that_does_not_verify(signed):
    token, request = signed
    header, payload, signature = token.split(".")
    claims = jose.b64url_json(payload)
    claims["response_uri"] = "https://evil.example/collect"
    forged = ".".join([header, jose.b64url_encode(__import__("json").dumps(claims).encode()), signature])
    with pytest.raises(openid4vp.RequestRefused, match="signature does not verify"):
        openid4vp.request_object_verify(forged, client_id=_client_id(request))


def test_signed_by_a_key_that_is_not_the_client_ids(signed):
    token, request = signed
    stranger = jose.key_generate()
    forged = _resign(token, stranger, header={"kid": f"{jose.did_jwk(stranger)}#0"})
    with pytest.raises(openid4vp.RequestRefused, match="key of the client's DID"):
        openid4vp.request_object_verify(forged, client_id=_client_id(request))
    # Claiming the stranger's DID as client_id does not fool a wallet that scanned our link.
    claimed = _resign(
        token,
        stranger,
        header={"kid": f"{jose.did_jwk(stranger)}#0"},
        client_id=f"decentralized_identifier:{jose.did_jwk(stranger)}",
    )
    with pytest.raises(openid4vp.RequestRefused, match="not the one in the link"):
        openid4vp.request_object_verify(claimed, client_id=_client_id(request))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"header": {"typ": "JWT"}}, "typ"),
        ({"response_mode": "fragment"}, "response_mode"),
        ({"exp": int((datetime.now(UTC) - timedelta(minutes=1)).timestamp())}, "expired"),
        ({"client_id": "pre-registered"}, "prefix"),
        ({"client_id": "verifier_attestation:x"}, "not supported"),
    ],
)
def test_bad_request_objects(signed, change, message):
    token, _ = signed
    with pytest.raises(openid4vp.RequestRefused, match=message):
        openid4vp.request_object_verify(_resign(token, onboarding.verifier_key(), **change))


def test_alg_none_for_a_client_that_must_sign(signed):
    token, request = signed
    compact = jose.jws_decode(token, "jar")
    unsigned = jose.unsigned_jwt(compact.claims, header={"typ": "oauth-authz-req+jwt"})
    with pytest.raises(openid4vp.RequestRefused, match="must sign"):
        openid4vp.request_object_verify(unsigned, client_id=_client_id(request))


def test_x509_san_dns_needs_a_trusted_chain_the_right_name_and_host(settings, tmp_path, db):
    settings.VAR_DIR = tmp_path
    settings.CLEANROOM_ORIGIN = "https://cleanroom.example"
    settings.CLEANROOM_VERIFIER_CLIENT_ID_PREFIX = "x509_san_dns"
    row = services.presentation_request_create(formats=["dc+sd-jwt"])
    token = selectors.request_object_jwt(row)
    with pytest.raises(openid4vp.RequestRefused, match="trusted certificate"):
        openid4vp.request_object_verify(token)
    anchors = onboarding.verifier_certificates()
    assert openid4vp.request_object_verify(token, trusted_certificates=anchors)
    elsewhere = _resign(token, onboarding.verifier_key(), response_uri="https://evil.example/r")
    with pytest.raises(openid4vp.RequestRefused, match="client_id's host"):
        openid4vp.request_object_verify(elsewhere, trusted_certificates=anchors)
    renamed = _resign(token, onboarding.verifier_key(), client_id="x509_san_dns:evil.example")
    with pytest.raises(openid4vp.RequestRefused, match="DNS name"):
        openid4vp.request_object_verify(renamed, trusted_certificates=anchors)


def test_redirect_uri_requests_are_unsigned_and_bound_to_their_response_uri(settings, db):
    settings.CLEANROOM_VERIFIER_CLIENT_ID_PREFIX = "redirect_uri"
    row = services.presentation_request_create(formats=["dc+sd-jwt"])
    token = selectors.request_object_jwt(row)
    claims = openid4vp.request_object_verify(token)
    assert claims["client_id"] == f"redirect_uri:{claims['response_uri']}"
    compact_claims = jose.b64url_json(token.split(".")[1])
    moved = jose.unsigned_jwt({**compact_claims, "response_uri": "https://evil.example/r"}, header={"typ": "oauth-authz-req+jwt"})
    with pytest.raises(openid4vp.RequestRefused, match="not its response_uri"):
        openid4vp.request_object_verify(moved)
    signed = jose.jws_sign(compact_claims, onboarding.verifier_key(), header={"alg": "ES256", "typ": "oauth-authz-req+jwt"})
    with pytest.raises(openid4vp.RequestRefused, match="may not sign"):
        openid4vp.request_object_verify(signed)


def test_the_wallet_does_not_answer_a_forged_request(sd_issuer, sd_trusted, holder, monkeypatch):
    """End to end: a request object altered in transit makes present_url stop; nothing is posted."""
    holder.credential_import(pid(sd_issuer, holder))
    row = services.presentation_request_create(formats=["dc+sd-jwt"])
    link = selectors.wallet_link(row)
    real = selectors.request_object_jwt

    def tampered(request):
        token = real(request)
        header, payload, signature = token.split(".")
        return ".".join([header, payload[:-4] + ("AAAA" if not payload.endswith("AAAA") else "BBBB"), signature])

    monkeypatch.setattr(selectors, "request_object_jwt", tampered)
    posted: list[str] = []
    app = WSGIHandler()

    def transport(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            posted.append(str(request.url))
        return httpx.WSGITransport(app=app).handle_request(request)

    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        with httpx.Client(transport=httpx.MockTransport(transport)) as client, pytest.raises(WalletError, match="Refusing the request"):
            present_url(holder, link, client=client)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    assert posted == [] and Contributor.objects.count() == 0
