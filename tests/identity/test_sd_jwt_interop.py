"""Proof against code we did not write: the IETF SD-JWT reference implementation (the `sd-jwt`
package) issues and presents credentials our verifier accepts, verifies what our issuer and
wallet make, and the specifications' published examples pass as fixtures."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from jwcrypto.jwk import JWK
from sd_jwt.common import SDObj
from sd_jwt.holder import SDJWTHolder
from sd_jwt.issuer import SDJWTIssuer
from sd_jwt.verifier import SDJWTVerifier

from cleanroom.accounts.models import Contributor
from identity import jose, sd_jwt_vc, sdjwt, selectors, services, statuslist
from identity.models import ContributorCredential

from .conftest import PID_VCT, answer, pid, sd_present
from .helpers import assert_refused

VECTORS = json.loads((Path(__file__).parent / "vectors" / "sd_jwt_vc_spec_examples.json").read_text())
SHARED_VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors"


def _reference_issuance(issuer_key: JWK, holder_key: JWK, iss: str, **extra):
    now = int(datetime.now(UTC).timestamp())
    claims = {
        "iss": iss,
        "vct": PID_VCT,
        "iat": now - 60,
        "exp": now + 3600,
        SDObj("given_name"): "Erika",
        SDObj("birthdate"): "1964-08-12",
        SDObj("age_equal_or_over"): {SDObj("18"): True, SDObj("65"): False},
        **extra,
    }
    return SDJWTIssuer(
        claims,
        issuer_key,
        holder_key,
        extra_header_parameters={"typ": "dc+sd-jwt", "kid": f"{iss}#0"},
    ).sd_jwt_issuance


def test_reference_issued_and_presented_credential_is_accepted(db):
    issuer_key = JWK.generate(kty="EC", crv="P-256")
    holder_key = JWK.generate(kty="EC", crv="P-256")
    iss = jose.did_jwk(json.loads(issuer_key.export_public()))
    services.trusted_issuer_create(did=iss, name="Reference", vcts=[PID_VCT], actor=None)
    request = selectors.request_object(services.presentation_request_create(formats=["dc+sd-jwt"]))
    holder = SDJWTHolder(_reference_issuance(issuer_key, holder_key, iss))
    holder.create_presentation(
        {"age_equal_or_over": {"18": True}},
        nonce=request["nonce"],
        aud=request["client_id"],
        holder_key=holder_key,
    )
    response = answer(request, holder.sd_jwt_presentation)
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["verified"] is True and body["credentials"] == [PID_VCT]
    assert body["did"] == jose.did_jwk(json.loads(holder_key.export_public()))
    kept = ContributorCredential.objects.get()
    assert (kept.credential_type, kept.issuer_did) == (PID_VCT, iss)
    assert Contributor.objects.count() == 1


def test_reference_presentation_with_a_wrong_kb_is_refused(db):
    issuer_key = JWK.generate(kty="EC", crv="P-256")
    holder_key = JWK.generate(kty="EC", crv="P-256")
    iss = jose.did_jwk(json.loads(issuer_key.export_public()))
    services.trusted_issuer_create(did=iss, name="Reference", vcts=[PID_VCT], actor=None)
    row = services.presentation_request_create(formats=["dc+sd-jwt"])
    request = selectors.request_object(row)
    holder = SDJWTHolder(_reference_issuance(issuer_key, holder_key, iss))
    holder.create_presentation(
        {"age_equal_or_over": {"18": True}},
        nonce=request["nonce"],
        aud="https://someone-else.example",
        holder_key=holder_key,
    )
    assert_refused(answer(request, holder.sd_jwt_presentation), "wrong_audience", row)


def test_our_credentials_verify_in_the_reference_implementation(sd_issuer, holder):
    credential = pid(sd_issuer, holder)
    presented = sdjwt.present(
        credential,
        paths=[("age_equal_or_over", "18")],
        nonce="n-0S6_WzA2Mj",
        audience="https://verifier.example.org",
        holder_key=holder.holder_signing_key(),
    )
    issuer_public = JWK(**jose.public_jwk(sd_issuer.sd_jwt_signing_key()))

    def issuer_key(iss, header):
        assert iss == sd_issuer.sd_jwt_issuer and header["typ"] == "dc+sd-jwt"
        return issuer_public

    verified = SDJWTVerifier(
        presented,
        issuer_key,
        expected_aud="https://verifier.example.org",
        expected_nonce="n-0S6_WzA2Mj",
    ).get_verified_payload()
    # Only the age predicate was disclosed: no birth date, no name, no other threshold.
    assert verified["age_equal_or_over"] == {"18": True}
    assert "birthdate" not in verified and "given_name" not in verified
    assert verified["vct"] == PID_VCT
    # ...and the reference refuses a presentation we tampered with.
    tampered = presented.replace(presented.split("~")[1], presented.split("~")[1][:-2] + "AA", 1)
    with pytest.raises(Exception):  # noqa: B017 - the reference raises plain exceptions
        SDJWTVerifier(
            tampered, issuer_key, expected_aud="https://verifier.example.org", expected_nonce="n-0S6_WzA2Mj"
        ).get_verified_payload()


def _spec_expectation(now: datetime) -> sd_jwt_vc.Expectation:
    return sd_jwt_vc.Expectation(
        nonce=VECTORS["nonce"],
        audience=VECTORS["verifier"],
        vcts=(VECTORS["vct"],),
        required_claims=(),
        now=now,
    )


def _spec_fetch(url: str, accept: str) -> bytes:
    assert url == f"{VECTORS['issuer']}/.well-known/jwt-vc-issuer"
    return json.dumps({"issuer": VECTORS["issuer"], "jwks": {"keys": [VECTORS["issuer_public_jwk"]]}}).encode()


def test_openid4vp_spec_example_presentation_verifies():
    """OpenID4VP 1.0's SD-JWT VC example (dc+sd-jwt with a KB-JWT), keys from issuer metadata."""
    now = datetime.fromtimestamp(VECTORS["kb_iat"], UTC) + timedelta(seconds=30)
    trust = [sd_jwt_vc.Trust(identifier=VECTORS["issuer"], vcts=frozenset({VECTORS["vct"]}))]
    verified = sd_jwt_vc.verify(
        VECTORS["presentation"], expectation=_spec_expectation(now), trust=trust, fetch=_spec_fetch
    )
    assert verified.credentials[0].issuer == VECTORS["issuer"]
    assert verified.credentials[0].types == (VECTORS["vct"],)
    assert verified.holder == jose.did_jwk(VECTORS["verified_contents"]["cnf"]["jwk"])
    presentation = sdjwt.parse(VECTORS["presentation"])
    claims = sdjwt.claims_resolve(presentation.issuer_jwt.claims, presentation.disclosures)
    assert claims["ld"] == VECTORS["verified_contents"]["ld"]


@pytest.mark.parametrize(
    "change, code",
    [
        (lambda p: p.replace("~eyJhbGciOiAiRVMyNTYiLCAidHlwIjogImtiK2p3dCJ9", "~eyJhbGciOiAiRVMyNTYiLCAidHlwIjogImtiK2p3dCJ9", 1), None),
        (lambda p: p.split("~")[0] + "~~" + p.split("~")[-1], "malformed"),
        (lambda p: "~".join([p.split("~")[0], p.split("~")[1], p.split("~")[1], p.split("~")[2]]), "duplicate_disclosure"),
        (lambda p: p[: p.rindex("~") + 1], "no_key_binding"),
    ],
)
def test_spec_example_breaks_as_it_should(change, code):
    now = datetime.fromtimestamp(VECTORS["kb_iat"], UTC) + timedelta(seconds=30)
    trust = [sd_jwt_vc.Trust(identifier=VECTORS["issuer"], vcts=frozenset({VECTORS["vct"]}))]
    call = lambda: sd_jwt_vc.verify(  # noqa: E731
        change(VECTORS["presentation"]), expectation=_spec_expectation(now), trust=trust, fetch=_spec_fetch
    )
    if code is None:
        call()
        return
    with pytest.raises(sd_jwt_vc.PresentationRefused) as refused:
        call()
    assert refused.value.code == code


def test_spec_example_is_refused_when_the_kb_jwt_is_stale():
    now = datetime.fromtimestamp(VECTORS["kb_iat"], UTC) + sd_jwt_vc.KB_MAX_AGE + timedelta(seconds=1)
    trust = [sd_jwt_vc.Trust(identifier=VECTORS["issuer"], vcts=frozenset({VECTORS["vct"]}))]
    with pytest.raises(sd_jwt_vc.PresentationRefused) as refused:
        sd_jwt_vc.verify(VECTORS["presentation"], expectation=_spec_expectation(now), trust=trust, fetch=_spec_fetch)
    assert refused.value.code == "kb_too_old"


@pytest.mark.parametrize("name", ["one_bit", "two_bits"])
def test_token_status_list_spec_examples(name):
    vector = VECTORS["token_status_list"][name]
    data = statuslist.token_status_decode(vector["lst"], vector["bits"])
    assert [statuslist.token_status_value(data, vector["bits"], i) for i in range(len(vector["statuses"]))] == vector["statuses"]
    encoded = statuslist.token_status_encode(
        dict(enumerate(vector["statuses"])), size=len(vector["statuses"]), bits=vector["bits"]
    )
    assert encoded == vector["lst"]


@pytest.mark.parametrize("file", ["didkey-nist-curves.json", "didkey-ed25519-x25519.json"])
def test_did_key_vectors_resolve_to_their_keys(file):
    path = SHARED_VECTORS / file
    if not path.exists():
        pytest.skip("shared vectors are not beside this checkout")
    checked = 0
    for did, entry in json.loads(path.read_text()).items():
        expected = (entry.get("verificationMethod") or {}).get("publicKeyJwk")
        base58 = (entry.get("verificationKeyPair") or {}).get("publicKeyBase58")
        if base58 and did.startswith("did:key:z6Mk"):
            expected = {
                "crv": "Ed25519",
                "kty": "OKP",
                "x": jose.b64url_encode(jose._base58_decode(base58)),
            }
        if not expected or expected.get("crv") not in ("P-256", "Ed25519"):
            continue
        assert jose.did_key_resolve(did) == jose.public_jwk(expected), did
        checked += 1
    assert checked >= 1


def test_our_wallet_presentation_passes_the_spec_checks_of_our_verifier(sd_issuer, sd_trusted, holder, sd_request):
    request = selectors.request_object(sd_request)
    response = answer(request, sd_present(request, pid(sd_issuer, holder), holder))
    assert response.status_code == 200, response.json()


def test_spec_disclosure_digests_and_resolution():
    vector = VECTORS["disclosures"]
    for item in vector["items"]:
        assert jose.digest_b64(item["disclosure"]) == item["digest"]
        assert item["digest"] in vector["payload"]["_sd"]
    claims = sdjwt.claims_resolve(vector["payload"], [i["disclosure"] for i in vector["items"]])
    assert {name: claims[name] for name, _ in (i["claim"] for i in vector["items"])} == {
        name: value for name, value in (i["claim"] for i in vector["items"])
    }
    assert "_sd" not in claims and "_sd_alg" not in claims
    # Only the three published disclosures are resolvable: the other digests stay hidden.
    assert set(claims) - {"given_name", "family_name", "birthdate"} == {"iss", "iat", "exp", "vct", "cnf"}
