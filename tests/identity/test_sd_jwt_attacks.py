"""Attacks on SD-JWT VC sign-in: each is refused with a named reason, audited, and no one is
signed in (no contributor, no token, no credential row, the request still pending)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
from jwcrypto import jwk, jws

from audit.models import AuditEvent
from cleanroom.accounts.models import Contributor
from identity import jose, sdjwt, selectors, services
from identity.issuer.core import Issuer
from identity.models import PresentationRequest
from identity.wallet.core import Wallet

from .conftest import PID_VCT, answer, pid, post_form, sd_present
from .helpers import assert_refused

pytestmark = pytest.mark.django_db


@pytest.fixture
def row(sd_trusted):
    return services.presentation_request_create(formats=["dc+sd-jwt"])


@pytest.fixture
def request_obj(row):
    return selectors.request_object(row)


def rebind(body: str, request_obj, holder: Wallet, **claims) -> str:
    """Attach a fresh, valid KB-JWT to `body` (issuer JWT~disclosures~): the attacker holds the key."""
    kb_claims = {
        "nonce": request_obj["nonce"],
        "aud": request_obj["client_id"],
        "iat": int(datetime.now(UTC).timestamp()),
        "sd_hash": jose.digest_b64(body),
        **claims,
    }
    return body + jose.jws_sign(kb_claims, holder.holder_signing_key(), header={"alg": "ES256", "typ": "kb+jwt"})


def without_kb(presentation: str) -> str:
    return presentation[: presentation.rindex("~") + 1]


def parts(presentation: str) -> list[str]:
    return presentation.split("~")


def resign(issuer: Issuer, credential: str, *, header: dict | None = None, **changes) -> str:
    """The same SD-JWT with its issuer JWT's payload changed and signed again by the issuer."""
    token, *rest = credential.split("~")
    compact = jose.jws_decode(token, "credential")
    payload = {**compact.claims, **changes}
    payload = {k: v for k, v in payload.items() if v is not None}
    signed = jose.jws_sign(payload, issuer.sd_jwt_signing_key(), header=header or compact.header)
    return "~".join([signed, *rest])


def test_tampered_disclosure(sd_issuer, holder, row, request_obj):
    """A minor flips their own age_equal_or_over.18 from false to true."""
    minor = pid(sd_issuer, holder, birthdate=date.today().replace(year=date.today().year - 15))
    honest = without_kb(sd_present(request_obj, minor, holder))
    items = parts(honest)
    for index, disclosure in enumerate(items[1:-1], start=1):
        decoded = json.loads(jose.b64url_decode(disclosure))
        if decoded[1] == "18":
            decoded[2] = True
            items[index] = jose.b64url_encode(json.dumps(decoded).encode())
    assert_refused(answer(request_obj, rebind("~".join(items), request_obj, holder)), "unreferenced_disclosure", row)


def test_a_disclosure_not_referenced_in_sd(sd_issuer, holder, row, request_obj):
    body = without_kb(sd_present(request_obj, pid(sd_issuer, holder), holder))
    forged = sdjwt.disclosure_make("birthdate", "2001-01-01")
    assert_refused(answer(request_obj, rebind(body + forged + "~", request_obj, holder)), "unreferenced_disclosure", row)


def test_a_duplicated_disclosure(sd_issuer, holder, row, request_obj):
    items = parts(without_kb(sd_present(request_obj, pid(sd_issuer, holder), holder)))
    body = "~".join([items[0], items[1], items[1], *items[2:]])
    assert_refused(answer(request_obj, rebind(body, request_obj, holder)), "duplicate_disclosure", row)


def test_missing_key_binding(sd_issuer, holder, row, request_obj):
    body = without_kb(sd_present(request_obj, pid(sd_issuer, holder), holder))
    assert_refused(answer(request_obj, body), "no_key_binding", row)


@pytest.mark.parametrize(
    "claims, code",
    [
        ({"nonce": "not-the-request-nonce"}, "wrong_nonce"),
        ({"aud": "https://evil.example"}, "wrong_audience"),
        ({"sd_hash": jose.digest_b64("something else")}, "wrong_sd_hash"),
        ({"iat": int((datetime.now(UTC) - timedelta(minutes=30)).timestamp())}, "kb_too_old"),
        ({"iat": int((datetime.now(UTC) + timedelta(minutes=30)).timestamp())}, "kb_iat_future"),
        ({"iat": None}, "kb_no_iat"),
    ],
)
def test_wrong_key_binding_claims(sd_issuer, holder, row, request_obj, claims, code):
    body = without_kb(sd_present(request_obj, pid(sd_issuer, holder), holder))
    presentation = rebind(body, request_obj, holder, **claims)
    if claims.get("iat", 0) is None:
        kb = jose.jws_decode(presentation.rsplit("~", 1)[1], "kb")
        kb_claims = {k: v for k, v in kb.claims.items() if k != "iat"}
        presentation = body + jose.jws_sign(kb_claims, holder.holder_signing_key(), header=kb.header)
    assert_refused(answer(request_obj, presentation), code, row)


def test_key_binding_made_with_another_key(sd_issuer, holder, row, request_obj):
    """Someone who copied the credential but not the wallet's key."""
    thief = Wallet.generate()
    presentation = sd_present(request_obj, pid(sd_issuer, holder), thief)
    assert_refused(answer(request_obj, presentation), "kb_bad_signature", row)


def test_key_binding_with_the_wrong_typ_or_alg_none(sd_issuer, holder, row, request_obj):
    body = without_kb(sd_present(request_obj, pid(sd_issuer, holder), holder))
    claims = {"nonce": request_obj["nonce"], "aud": request_obj["client_id"], "iat": int(datetime.now(UTC).timestamp()), "sd_hash": jose.digest_b64(body)}
    wrong_typ = body + jose.jws_sign(claims, holder.holder_signing_key(), header={"alg": "ES256", "typ": "JWT"})
    assert_refused(answer(request_obj, wrong_typ), "wrong_kb_typ", row)
    unsigned = body + jose.unsigned_jwt(claims, header={"typ": "kb+jwt"}).rstrip(".") + ".x"
    assert_refused(answer(request_obj, unsigned), "kb_alg_not_allowed", row)


def test_expired_credential(sd_issuer, holder, row, request_obj):
    credential = pid(sd_issuer, holder, issued_at=datetime.now(UTC) - timedelta(days=400), valid_days=365)
    assert_refused(answer(request_obj, sd_present(request_obj, credential, holder)), "expired", row)


def test_not_yet_valid_credential(sd_issuer, holder, row, request_obj):
    later = int((datetime.now(UTC) + timedelta(hours=2)).timestamp())
    credential = pid(sd_issuer, holder, extra={"nbf": later})
    assert_refused(answer(request_obj, sd_present(request_obj, credential, holder)), "not_yet_valid", row)


def test_within_the_stated_clock_skew_is_still_valid(sd_issuer, holder, row, request_obj):
    soon = int((datetime.now(UTC) + timedelta(seconds=30)).timestamp())
    credential = pid(sd_issuer, holder, extra={"nbf": soon})
    assert answer(request_obj, sd_present(request_obj, credential, holder)).status_code == 200


@pytest.fixture
def listed_issuer(status_server, sd_issuer):
    sd_issuer.token_status_create(uri=status_server.url("attack-status"), size=256)
    return sd_issuer


def test_revoked_credential(status_server, listed_issuer, holder, row, request_obj):
    credential = pid(listed_issuer, holder, with_status=True)
    listed_issuer.token_status_revoke(0)
    status_server.publish("attack-status", listed_issuer.token_status_list())
    assert_refused(answer(request_obj, sd_present(request_obj, credential, holder)), "revoked", row)


def test_status_list_unreachable(status_server, listed_issuer, holder, row, request_obj):
    credential = pid(listed_issuer, holder, with_status=True)
    status_server.unpublish("attack-status")
    body = assert_refused(answer(request_obj, sd_present(request_obj, credential, holder)), "status_unavailable", row)
    assert "cannot be checked" in body["detail"] and "HTTP 404" in body["detail"]


def test_status_list_signed_by_someone_else(status_server, listed_issuer, holder, row, request_obj):
    credential = pid(listed_issuer, holder, with_status=True)
    impostor = Issuer.generate()
    impostor.token_status_create(uri=status_server.url("attack-status"), size=256)
    status_server.publish("attack-status", impostor.token_status_list())
    assert_refused(answer(request_obj, sd_present(request_obj, credential, holder)), "status_invalid", row)


def test_untrusted_issuer(holder, row, request_obj):
    stranger = Issuer.generate()
    assert_refused(answer(request_obj, sd_present(request_obj, pid(stranger, holder), holder)), "untrusted_issuer", row)


def test_vct_not_allowed_for_the_issuer(sd_issuer, holder, row, request_obj):
    credential = pid(sd_issuer, holder, vct="urn:example:diploma")
    assert_refused(answer(request_obj, sd_present(request_obj, credential, holder)), "vct_not_allowed", row)


def test_alg_none(sd_issuer, holder, row, request_obj):
    credential = pid(sd_issuer, holder)
    token, *rest = credential.split("~")
    compact = jose.jws_decode(token, "credential")
    unsigned = jose.unsigned_jwt(compact.claims, header={"typ": "dc+sd-jwt", "kid": compact.header["kid"]})
    presentation = sd_present(request_obj, "~".join([unsigned.rstrip(".") + ".AA", *rest]), holder)
    assert_refused(answer(request_obj, presentation), "alg_not_allowed", row)


def test_hs256_with_the_issuers_public_key(sd_issuer, holder, row, request_obj):
    """The classic confusion: an HMAC "signed" with the issuer's public key as the secret."""
    credential = pid(sd_issuer, holder)
    token, *rest = credential.split("~")
    compact = jose.jws_decode(token, "credential")
    public = json.dumps(jose.public_jwk(sd_issuer.sd_jwt_signing_key()))
    secret = jwk.JWK(kty="oct", k=jose.b64url_encode(public.encode()))
    forged = jws.JWS(json.dumps(compact.claims).encode())
    forged.add_signature(secret, alg="HS256", protected=json.dumps({**compact.header, "alg": "HS256"}))
    presentation = sd_present(request_obj, "~".join([forged.serialize(compact=True), *rest]), holder)
    assert_refused(answer(request_obj, presentation), "alg_not_allowed", row)


def test_issuer_signature_does_not_verify(sd_issuer, holder, row, request_obj):
    credential = pid(sd_issuer, holder)
    token, *rest = credential.split("~")
    header, payload, signature = token.split(".")
    claims = json.loads(jose.b64url_decode(payload))
    claims["vct"] = PID_VCT  # same value, new bytes: the signature no longer covers them
    claims["iat"] += 1
    bad = ".".join([header, jose.b64url_encode(json.dumps(claims).encode()), signature])
    assert_refused(answer(request_obj, sd_present(request_obj, "~".join([bad, *rest]), holder)), "bad_credential_signature", row)


def test_wrong_typ(sd_issuer, holder, row, request_obj):
    credential = resign(sd_issuer, pid(sd_issuer, holder), header={"alg": "ES256", "typ": "JWT", "kid": f"{sd_issuer.sd_jwt_issuer}#0"})
    assert_refused(answer(request_obj, sd_present(request_obj, credential, holder)), "wrong_typ", row)


def test_no_holder_key(sd_issuer, holder, row, request_obj):
    credential = resign(sd_issuer, pid(sd_issuer, holder), cnf=None)
    assert_refused(answer(request_obj, sd_present(request_obj, credential, holder)), "no_holder_key", row)


def test_required_claim_not_disclosed(sd_issuer, holder, row, request_obj):
    presentation = sd_present(request_obj, pid(sd_issuer, holder), holder, paths=[("given_name",)])
    assert_refused(answer(request_obj, presentation), "claim_not_disclosed", row)


def test_a_minor_is_refused(sd_issuer, holder, row, request_obj):
    minor = pid(sd_issuer, holder, birthdate=date.today().replace(year=date.today().year - 15))
    assert_refused(answer(request_obj, sd_present(request_obj, minor, holder)), "claim_not_satisfied", row)


def test_replayed_response(sd_issuer, holder, row, request_obj):
    presentation = sd_present(request_obj, pid(sd_issuer, holder), holder)
    assert answer(request_obj, presentation).status_code == 200
    again = answer(request_obj, presentation)
    assert again.status_code == 400 and again.json()["errors"][0]["code"] == "nonce_used"
    assert Contributor.objects.count() == 1
    assert AuditEvent.objects.filter(action="identity.presentation.accepted").count() == 1
    # ...and the same presentation sent to a fresh request is bound to the old nonce.
    fresh = services.presentation_request_create(formats=["dc+sd-jwt"])
    fresh_obj = selectors.request_object(fresh)
    replay = answer(fresh_obj, presentation)
    assert replay.status_code == 400 and replay.json()["errors"][0]["code"] == "wrong_nonce"
    fresh.refresh_from_db()
    assert fresh.status == PresentationRequest.Status.PENDING and Contributor.objects.count() == 1


def test_a_response_to_an_expired_request(sd_issuer, holder, row, request_obj):
    presentation = sd_present(request_obj, pid(sd_issuer, holder), holder)
    PresentationRequest.objects.filter(pk=row.pk).update(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert_refused(answer(request_obj, presentation), "nonce_expired", row)


def test_wrong_state(sd_issuer, holder, row, request_obj):
    presentation = sd_present(request_obj, pid(sd_issuer, holder), holder)
    assert_refused(answer(request_obj, presentation, state="someone-elses-state"), "wrong_state", row)


def test_an_answer_to_a_query_we_did_not_ask(sd_issuer, holder, row, request_obj):
    presentation = sd_present(request_obj, pid(sd_issuer, holder), holder)
    assert_refused(answer(request_obj, {"my_credential": [presentation]}), "unknown_credential_query", row)


def test_a_format_the_request_did_not_ask_for(sd_issuer, sd_trusted, holder):
    row = services.presentation_request_create(formats=["ldp_vp"])
    request_obj = selectors.request_object(row)
    presentation = sd_present(request_obj, pid(sd_issuer, holder), holder)
    response = post_form(request_obj, {"vp_token": presentation, "state": request_obj["state"]})
    assert_refused(response, "format_not_requested", row)


def test_oversized_token(sd_issuer, holder, row, request_obj):
    body = without_kb(sd_present(request_obj, pid(sd_issuer, holder), holder))
    huge = rebind(body + sdjwt.disclosure_make("padding", "x" * 70_000) + "~", request_obj, holder)
    assert_refused(answer(request_obj, huge), "too_large", row, status=413)


def test_too_many_disclosures(sd_issuer, holder, row, request_obj):
    body = without_kb(sd_present(request_obj, pid(sd_issuer, holder), holder))
    padded = body + "~".join(sdjwt.disclosure_make(None, i) for i in range(120)) + "~"
    assert_refused(answer(request_obj, rebind(padded, request_obj, holder)), "too_large", row)


def test_certificate_chain_to_an_untrusted_ca(db, holder):
    from .test_sd_jwt_flow import _ca_and_leaf, x5c_issuer

    trusted_ca, _, _ = _ca_and_leaf("pid.issuer.example")
    services.trusted_issuer_create(name="CA", certificate=jose.certificate_pem(trusted_ca), vcts=[PID_VCT], actor=None)
    _, rogue_leaf, rogue_key = _ca_and_leaf("pid.issuer.example")
    row = services.presentation_request_create(formats=["dc+sd-jwt"])
    request_obj = selectors.request_object(row)
    credential = pid(x5c_issuer(rogue_key), holder, x5c=[jose.certificate_x5c(rogue_leaf)])
    assert_refused(answer(request_obj, sd_present(request_obj, credential, holder)), "untrusted_issuer", row)


def test_certificate_for_another_name(db, holder):
    from .test_sd_jwt_flow import _ca_and_leaf, x5c_issuer

    ca, leaf, key = _ca_and_leaf("other.example")
    services.trusted_issuer_create(name="CA", certificate=jose.certificate_pem(ca), vcts=[PID_VCT], actor=None)
    row = services.presentation_request_create(formats=["dc+sd-jwt"])
    request_obj = selectors.request_object(row)
    credential = pid(x5c_issuer(key, dns="pid.issuer.example"), holder, x5c=[jose.certificate_x5c(leaf)])
    body = assert_refused(answer(request_obj, sd_present(request_obj, credential, holder)), "untrusted_issuer", row)
    assert "subject alternative names" in body["detail"]


def test_issuer_metadata_unreachable(status_server, holder):
    issuer = Issuer.generate()
    issuer.url = status_server.url("nowhere-issuer")
    services.trusted_issuer_create(did=issuer.url, name="URL", vcts=[PID_VCT], actor=None)
    row = services.presentation_request_create(formats=["dc+sd-jwt"])
    request_obj = selectors.request_object(row)
    assert_refused(answer(request_obj, sd_present(request_obj, pid(issuer, holder), holder)), "issuer_keys_unavailable", row)


def test_garbage_is_a_clear_400_never_a_500(row, request_obj):
    for vp_token in ["~", "a.b.c~", "eyJ~eyJ~", "x" * 100 + "~~", json.dumps({"onboarding_sd_jwt": ["~~~"]})]:
        response = post_form(request_obj, {"vp_token": vp_token, "state": request_obj["state"]})
        assert response.status_code == 400, (vp_token, response.content)
        assert response.json()["verified"] is False and response.json()["detail"]
    assert Contributor.objects.count() == 0


def test_numbers_and_nesting_that_could_crash_a_parser_are_400s(sd_issuer, holder, row, request_obj):
    nested = "[" * 5_000 + "]" * 5_000
    response = post_form(request_obj, {"vp_token": nested, "state": request_obj["state"]})
    assert response.status_code == 400 and response.json()["errors"][0]["code"] == "malformed"
    from urllib.parse import urlsplit

    from rest_framework.test import APIClient

    raw = APIClient().post(urlsplit(request_obj["response_uri"]).path, data='{"vp_token": ' + nested + "}", content_type="application/json")
    assert raw.status_code == 400
    huge_exp = resign(sd_issuer, pid(sd_issuer, holder), exp=1e300)
    assert_refused(answer(request_obj, sd_present(request_obj, huge_exp, holder)), "malformed", row)
    body = without_kb(sd_present(request_obj, pid(sd_issuer, holder), holder))
    assert_refused(answer(request_obj, rebind(body, request_obj, holder, iat=float("nan"))), "kb_no_iat", row)
