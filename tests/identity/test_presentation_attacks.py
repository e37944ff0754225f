"""Every attack of the issue is refused with a clear reason, audited, and changes nothing."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from identity import services, vc
from identity.issuer.core import Issuer
from identity.wallet.core import Wallet
from tests.identity.helpers import assert_refused

pytestmark = pytest.mark.django_db


def sign_presentation(
    wallet: Wallet,
    request_obj: dict[str, Any],
    credentials: list[Any],
    *,
    holder: str | None = "self",
    challenge: str | None = None,
    domain: str | None = None,
    jwt: bool = False,
) -> Any:
    presentation: dict[str, Any] = {
        "@context": ["https://www.w3.org/2018/credentials/v1"],
        "type": ["VerifiablePresentation"],
        "verifiableCredential": credentials,
    }
    if holder is not None:
        presentation["holder"] = wallet.did if holder == "self" else holder
    return vc.presentation_issue(
        presentation,
        key=wallet.key,
        verification_method=vc.key_verification_method(wallet.key),
        challenge=challenge if challenge is not None else request_obj["nonce"],
        domain=domain if domain is not None else request_obj["domain"],
        jwt=jwt,
    )


def test_tampered_presentation(
    trusted_issuer, issuer, wallet, presentation_request, request_object, submit
):
    vp = wallet.present(request_object, credential=issuer.issue(subject=wallet.did))
    vp["id"] = "urn:uuid:added-after-signing"
    body = assert_refused(
        submit(request_object, vp), "bad_presentation_signature", presentation_request
    )
    assert "presentation's signature does not verify" in body["detail"]


def test_tampered_embedded_credential(
    trusted_issuer, issuer, wallet, presentation_request, request_object, submit
):
    credential = issuer.issue(subject=wallet.did, claims={"ageOver18": False})
    credential["credentialSubject"]["ageOver18"] = True  # altered after issuing, then presented
    vp = wallet.present(request_object, credential=credential)
    body = assert_refused(
        submit(request_object, vp), "bad_credential_signature", presentation_request
    )
    assert body["detail"].startswith("credential 1's signature does not verify")


def test_tampered_jwt_credential(
    trusted_issuer, issuer, wallet, presentation_request, request_object, submit
):
    token = issuer.issue(subject=wallet.did, jwt=True)
    header, payload, signature = token.split(".")
    forged = ".".join(
        [header, payload, signature[:-4] + ("AAAA" if signature[-4:] != "AAAA" else "BBBB")]
    )
    vp = wallet.present(request_object, credential=forged)
    assert_refused(submit(request_object, vp), "bad_credential_signature", presentation_request)


def test_unsigned_embedded_credential(
    trusted_issuer, issuer, wallet, presentation_request, request_object, submit
):
    unsigned = issuer.credential_body(subject=wallet.did)
    vp = wallet.present(request_object, credential=unsigned)
    body = assert_refused(submit(request_object, vp), "unsigned", presentation_request)
    assert body["detail"] == "credential 1 is not signed (it has no proof)"


def test_credential_issued_to_someone_else(
    trusted_issuer, issuer, wallet, presentation_request, request_object, submit
):
    someone_else = Wallet.generate()
    vp = wallet.present(request_object, credential=issuer.issue(subject=someone_else.did))
    body = assert_refused(submit(request_object, vp), "not_bound_to_holder", presentation_request)
    assert body["detail"] == "credential 1 was issued to someone other than the holder"
    assert someone_else.did not in body["detail"]


def test_presentation_without_holder(
    trusted_issuer, issuer, wallet, presentation_request, request_object, submit
):
    vp = sign_presentation(wallet, request_object, [issuer.issue(subject=wallet.did)], holder=None)
    body = assert_refused(submit(request_object, vp), "no_holder", presentation_request)
    assert body["detail"] == "the presentation names no holder"


def test_presentation_signed_by_another_key_than_the_holder(
    trusted_issuer, issuer, wallet, presentation_request, request_object, submit
):
    thief = Wallet.generate()
    stolen = issuer.issue(subject=wallet.did)
    # didkit will not sign such a thing, so the thief edits the holder after signing.
    vp = sign_presentation(thief, request_object, [stolen])
    vp["holder"] = wallet.did
    body = assert_refused(submit(request_object, vp), "not_signed_by_holder", presentation_request)
    assert body["detail"] == "the presentation is not signed by its holder"


def test_wrong_nonce(trusted_issuer, issuer, wallet, presentation_request, request_object, submit):
    vp = sign_presentation(
        wallet, request_object, [issuer.issue(subject=wallet.did)], challenge="not-our-nonce"
    )
    body = assert_refused(submit(request_object, vp), "wrong_nonce", presentation_request)
    assert "wrong nonce" in body["detail"]


def test_nonce_of_another_request(
    trusted_issuer, issuer, wallet, presentation_request, request_object, submit
):
    other = services.presentation_request_create()
    vp = sign_presentation(
        wallet, request_object, [issuer.issue(subject=wallet.did)], challenge=other.nonce
    )
    assert_refused(submit(request_object, vp), "wrong_nonce", presentation_request)


def test_reused_nonce(trusted_issuer, issuer, wallet, presentation_request, request_object, submit):
    from cleanroom.accounts.models import Contributor

    vp = wallet.present(request_object, credential=issuer.issue(subject=wallet.did))
    assert submit(request_object, vp).status_code == 200
    again = submit(request_object, vp)
    assert again.status_code == 400
    assert again.json()["errors"][0]["code"] == "nonce_used"
    assert again.json()["detail"] == "this request was already answered: a nonce is accepted once"
    # Another wallet racing for the same request gets nothing either.
    second = Wallet.generate()
    vp2 = second.present(request_object, credential=issuer.issue(subject=second.did))
    assert submit(request_object, vp2).json()["errors"][0]["code"] == "nonce_used"
    assert Contributor.objects.count() == 1


def test_wrong_domain(trusted_issuer, issuer, wallet, presentation_request, request_object, submit):
    vp = sign_presentation(
        wallet, request_object, [issuer.issue(subject=wallet.did)], domain="https://evil.example"
    )
    body = assert_refused(submit(request_object, vp), "wrong_domain", presentation_request)
    assert "another site" in body["detail"]


def test_expired_nonce(
    trusted_issuer, issuer, wallet, presentation_request, request_object, submit
):
    vp = wallet.present(request_object, credential=issuer.issue(subject=wallet.did))
    type(presentation_request).objects.filter(pk=presentation_request.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    body = assert_refused(submit(request_object, vp), "nonce_expired", presentation_request)
    assert "expired" in body["detail"]


@pytest.mark.parametrize("jwt", [False, True])
def test_expired_credential(
    trusted_issuer, issuer, wallet, presentation_request, request_object, submit, jwt
):
    credential = issuer.issue(
        subject=wallet.did, jwt=jwt, issued_at=datetime.now(UTC) - timedelta(days=10), valid_days=1
    )
    vp = wallet.present(request_object, credential=credential)
    body = assert_refused(submit(request_object, vp), "expired", presentation_request)
    assert body["detail"] == "credential 1 has expired"


@pytest.mark.parametrize("jwt", [False, True])
def test_not_yet_valid_credential(
    trusted_issuer, issuer, wallet, presentation_request, request_object, submit, jwt
):
    credential = issuer.issue(
        subject=wallet.did, jwt=jwt, issued_at=datetime.now(UTC) + timedelta(days=1)
    )
    vp = wallet.present(request_object, credential=credential)
    body = assert_refused(submit(request_object, vp), "not_yet_valid", presentation_request)
    assert body["detail"] == "credential 1 is not valid yet"


def test_valid_until_in_the_past(
    trusted_issuer, issuer, wallet, presentation_request, request_object, submit
):
    body = issuer.credential_body(subject=wallet.did, valid_days=None)
    body["@context"].append({"validUntil": "https://www.w3.org/2018/credentials#validUntil"})
    body["validUntil"] = "2020-01-01T00:00:00Z"
    vp = wallet.present(request_object, credential=issuer.sign(body))
    assert_refused(submit(request_object, vp), "expired", presentation_request)


def test_untrusted_issuer(db, wallet, presentation_request, request_object, submit, monkeypatch):
    fetched: list[str] = []
    monkeypatch.setattr(
        "identity.statuslist.http_fetch", lambda url, policy: fetched.append(url) or b""
    )
    resolved: list[str] = []
    real_resolve = vc.did_resolve
    monkeypatch.setattr(vc, "did_resolve", lambda did: resolved.append(did) or real_resolve(did))
    stranger = Issuer.generate("Stranger")
    stranger.status_list_create(url="https://status.example/list")
    vp = wallet.present(
        request_object, credential=stranger.issue(subject=wallet.did, with_status=True)
    )
    response = submit(request_object, vp)
    body = assert_refused(response, "untrusted_issuer", presentation_request)
    assert body["type"] == "untrusted-issuer"
    assert (
        body["detail"] == f"credential 1 comes from {stranger.did}, which is not a trusted issuer"
    )
    # Trust is checked before anything is resolved or fetched.
    assert fetched == [] and resolved == []


def test_issuer_trusted_for_another_type(
    db, issuer, wallet, presentation_request, request_object, submit
):
    services.trusted_issuer_create(
        did=issuer.did, name="KYC only", credential_types=["KYCCredential"], actor=None
    )
    vp = wallet.present(request_object, credential=issuer.issue(subject=wallet.did))
    body = assert_refused(
        submit(request_object, vp), "issuer_not_trusted_for_type", presentation_request
    )
    assert body["detail"] == (
        f"credential 1 is a PersonhoodCredential from {issuer.did}, which is trusted only for KYCCredential"
    )


def test_trusted_credential_of_another_type_is_not_onboarding(
    db, issuer, wallet, presentation_request, request_object, submit
):
    services.trusted_issuer_create(
        did=issuer.did, name="KYC", credential_types=["KYCCredential"], actor=None
    )
    vp = wallet.present(
        request_object, credential=issuer.issue(subject=wallet.did, credential_type="KYCCredential")
    )
    body = assert_refused(
        submit(request_object, vp), "no_onboarding_credential", presentation_request
    )
    assert (
        body["detail"]
        == "the presentation holds no PersonhoodCredential from an issuer trusted for it"
    )


def test_unsupported_proof_type(
    trusted_issuer, issuer, wallet, presentation_request, request_object, submit
):
    vp = wallet.present(request_object, credential=issuer.issue(subject=wallet.did))
    vp["verifiableCredential"][0]["proof"]["type"] = "BbsBlsSignature2020"
    body = assert_refused(submit(request_object, vp), "unsupported_proof", presentation_request)
    assert body["type"] == "unsupported"
    assert "'BbsBlsSignature2020', which is unsupported" in body["detail"]


def test_unsupported_did_method(
    trusted_issuer, issuer, wallet, presentation_request, request_object, submit
):
    vp = sign_presentation(wallet, request_object, [issuer.issue(subject=wallet.did)])
    vp["holder"] = "did:web:holder.example"
    body = assert_refused(
        submit(request_object, vp), "unsupported_did_method", presentation_request
    )
    assert body["detail"].startswith("the holder uses the DID method 'web', which is unsupported")


def test_unsupported_issuer_did_method(db, wallet, presentation_request, request_object, submit):
    credential = {
        "@context": ["https://www.w3.org/2018/credentials/v1"],
        "type": ["VerifiableCredential", "PersonhoodCredential"],
        "issuer": "did:ion:EiClkZMDxPKqC9c-umQfTkR8vvZ9JPhl_xLDI9Nfk38w5w",
        "issuanceDate": "2024-01-01T00:00:00Z",
        "credentialSubject": {"id": wallet.did},
        "proof": {
            "type": "Ed25519Signature2018",
            "proofPurpose": "assertionMethod",
            "verificationMethod": "did:ion:EiClkZMDxPKqC9c#key-1",
            "jws": "x..y",
        },
    }
    vp = sign_presentation(wallet, request_object, [credential])
    assert_refused(submit(request_object, vp), "unsupported_did_method", presentation_request)


def test_malformed_json(db, presentation_request, request_object):
    path = urlsplit(request_object["response_uri"]).path
    response = APIClient().post(
        path, data='{"vp_token": {"holder": ', content_type="application/json"
    )
    body = assert_refused(response, "malformed", presentation_request)
    assert body["detail"].startswith("the body is not valid JSON")


@pytest.mark.parametrize("vp_token", [42, None, ["a"], "not.a.jwt!", "a.b"])
def test_vp_token_of_the_wrong_shape(db, presentation_request, request_object, submit, vp_token):
    assert_refused(submit(request_object, vp_token), "malformed", presentation_request)


def test_one_megabyte_body(db, presentation_request, request_object):
    path = urlsplit(request_object["response_uri"]).path
    huge = json.dumps({"vp_token": {"padding": "x" * (1024 * 1024)}})
    response = APIClient().post(path, data=huge, content_type="application/json")
    assert_refused(response, "too_large", presentation_request, status=413)
    assert response.json()["type"] == "payload-too-large"


def test_unknown_request(db, submit):
    response = submit(
        {
            "response_uri": "http://testserver/api/v1/identity/presentation-requests/00000000-0000-0000-0000-000000000000/response/"
        },
        {},
    )
    assert response.status_code == 404
    assert response.json()["verified"] is False


def test_several_proofs_on_the_presentation_are_refused(
    trusted_issuer, issuer, wallet, presentation_request, request_object, submit
):
    vp = wallet.present(request_object, credential=issuer.issue(subject=wallet.did))
    vp["proof"] = [vp["proof"], copy.deepcopy(vp["proof"])]
    assert_refused(submit(request_object, vp), "unsupported_proof", presentation_request)


def test_jwt_presentation_with_wrong_nonce(
    trusted_issuer, issuer, wallet, presentation_request, request_object, submit
):
    vp = sign_presentation(
        wallet,
        request_object,
        [issuer.issue(subject=wallet.did, jwt=True)],
        challenge="nope",
        jwt=True,
    )
    assert_refused(submit(request_object, vp), "wrong_nonce", presentation_request)


def test_library_error_texts_lose_dids_before_reaching_the_log():
    from identity.verification import _library_errors

    text = _library_errors(
        ["Missing verification relationship. Issuer: did:key:z6MkAbc#z6MkAbc. Proof purpose: x"]
    )
    assert "did:key" not in text and "<DID>" in text


def _with_claims(token: str, **claims) -> str:
    import base64

    header, payload, signature = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data.update(claims)
    encoded = base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
    return ".".join([header, encoded, signature])


def test_expired_jwt_presentation(
    trusted_issuer, issuer, wallet, presentation_request, request_object, submit
):
    vp = wallet.present(request_object, credential=issuer.issue(subject=wallet.did, jwt=True))
    body = assert_refused(
        submit(request_object, _with_claims(vp, exp=1_600_000_000)), "expired", presentation_request
    )
    assert body["detail"] == "the presentation has expired"


def test_jwt_presentation_with_edited_claims_fails_its_signature(
    trusted_issuer, issuer, wallet, presentation_request, request_object, submit
):
    vp = wallet.present(request_object, credential=issuer.issue(subject=wallet.did, jwt=True))
    edited = _with_claims(vp, jti="urn:uuid:edited")
    assert_refused(
        submit(request_object, edited), "bad_presentation_signature", presentation_request
    )


def test_a_body_above_the_server_limit_is_refused_unread(
    db, presentation_request, request_object, settings
):
    """Bigger than Django's own upload limit: still a clear 413, never a 500."""
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
    path = urlsplit(request_object["response_uri"]).path
    huge = json.dumps({"vp_token": "x" * (3 * 1024 * 1024)})
    response = APIClient().post(path, data=huge, content_type="application/json")
    assert_refused(response, "too_large", presentation_request, status=413)
