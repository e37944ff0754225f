"""OpenID4VP 1.0 with SD-JWT VC, the accepted paths: the signed request object, the DCQL query
from the onboarding policy, an age predicate disclosed alone, encrypted responses, issuers
trusted by DID, URL (metadata) or certificate, the demo issuer the service publishes, and what
is kept (never a claim)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.apps import apps
from rest_framework.test import APIClient

from audit.models import AuditEvent
from cleanroom.accounts.models import Contributor
from identity import jose, onboarding, publications, sdjwt, selectors, services, statuslist
from identity.issuer.core import Issuer
from identity.models import ContributorCredential, PresentationRequest
from identity.wallet import openid4vp
from identity.wallet.core import Wallet

from .conftest import PID_VCT, answer, pid, post_form, sd_present
from .helpers import assert_refused

pytestmark = pytest.mark.django_db

JAR = "application/oauth-authz-req+jwt"


def _get_jar(request_obj):
    response = APIClient().get(urlsplit(request_obj["request_uri"]).path, HTTP_ACCEPT=JAR)
    assert response.status_code == 200
    assert response["Content-Type"].startswith(JAR)
    return response.content.decode()


def _link_client_id(request_obj):
    return parse_qs(urlsplit(request_obj["openid4vp_url"]).query)["client_id"][0]


def test_request_object_is_a_signed_jar_with_dcql_from_the_policy(sd_trusted):
    created = APIClient().post(
        "/api/v1/identity/presentation-requests/", {"format": "dc+sd-jwt"}, format="json"
    )
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["openid4vp_url"].startswith("openid4vp://authorize?")
    token = _get_jar(body)
    header = jose.jws_decode(token, "jar").header
    assert header["typ"] == "oauth-authz-req+jwt" and header["alg"] == "ES256"
    claims = openid4vp.request_object_verify(token, client_id=_link_client_id(body))
    assert claims["client_id"] == f"decentralized_identifier:{onboarding.verifier_did()}"
    assert header["kid"] == f"{onboarding.verifier_did()}#0"
    assert (claims["response_type"], claims["response_mode"]) == ("vp_token", "direct_post")
    assert claims["nonce"] == body["nonce"] and claims["state"] == body["state"]
    assert claims["response_uri"] == body["response_uri"]
    assert claims["dcql_query"] == {
        "credentials": [
            {
                "id": "onboarding_sd_jwt",
                "format": "dc+sd-jwt",
                "meta": {"vct_values": [PID_VCT]},
                "claims": [
                    {"id": "age_equal_or_over_18", "path": ["age_equal_or_over", "18"], "values": [True]}
                ],
            }
        ],
        "credential_sets": [{"options": [["onboarding_sd_jwt"]], "required": True}],
    }
    # The request names the age predicate only: never the birth date.
    assert "birthdate" not in json.dumps(claims)


def test_default_request_offers_every_format_onboarding_allows(db):
    body = APIClient().post("/api/v1/identity/presentation-requests/").json()
    assert [c["format"] for c in body["dcql_query"]["credentials"]] == [
        "dc+sd-jwt",
        "ldp_vc",
        "jwt_vc_json",
    ]


def test_an_unknown_format_is_a_clear_400(db):
    response = APIClient().post(
        "/api/v1/identity/presentation-requests/", {"format": "mso_mdoc"}, format="json"
    )
    assert response.status_code == 400
    assert "'mso_mdoc'" in response.json()["detail"]
    assert PresentationRequest.objects.count() == 0


def test_json_is_still_served_to_a_client_that_asks_for_it(sd_request):
    request = selectors.request_object(sd_request)
    response = APIClient().get(
        urlsplit(request["request_uri"]).path, HTTP_ACCEPT="application/json"
    )
    assert response.status_code == 200
    assert response.json()["nonce"] == sd_request.nonce


def test_a_pid_holder_joins_disclosing_only_an_age_predicate(sd_issuer, sd_trusted, holder, sd_request):
    holder.credential_import(pid(sd_issuer, holder))
    request = openid4vp.request_object_verify(_get_jar(selectors.request_object(sd_request)))
    vp_token = holder.answer(request)
    presented = vp_token["onboarding_sd_jwt"][0]
    disclosed = {
        path for path, _ in sdjwt.disclosure_paths(presented).values()
    }
    assert disclosed == {("age_equal_or_over",), ("age_equal_or_over", "18")}
    response = answer(request, presented)
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["verified"] is True and body["credentials"] == [PID_VCT]
    assert body["did"] == jose.did_jwk(holder.holder_jwk)
    contributor = Contributor.objects.get(did=body["did"])
    kept = ContributorCredential.objects.get(contributor=contributor)
    assert (kept.credential_type, kept.issuer_did) == (PID_VCT, sd_issuer.sd_jwt_issuer)
    assert kept.expires_at is not None and len(kept.digest) == 64
    event = AuditEvent.objects.get(action="identity.presentation.accepted")
    assert event.payload["credential_types"] == [PID_VCT]
    sd_request.refresh_from_db()
    assert sd_request.status == PresentationRequest.Status.ACCEPTED


def test_a_birth_date_presented_anyway_never_reaches_database_audit_or_logs(
    sd_issuer, sd_trusted, holder, sd_request, caplog
):
    caplog.set_level(logging.DEBUG)
    credential = pid(sd_issuer, holder, birthdate=date(1937, 2, 11), given_name="Zebedee")
    request = selectors.request_object(sd_request)
    # An over-eager wallet discloses everything it has, birth date and name included.
    presented = sd_present(
        request,
        credential,
        holder,
        paths=[("age_equal_or_over", "18"), ("birthdate",), ("given_name",), ("age_equal_or_over", "65")],
    )
    assert "1937-02-11" in json.dumps(sdjwt.claims_of(presented.rsplit("~", 1)[0] + "~"))
    response = answer(request, presented)
    assert response.status_code == 200, response.json()
    assert "1937" not in response.content.decode() and "Zebedee" not in response.content.decode()
    for model in apps.get_models():
        for row in model.objects.all().values():
            text = json.dumps(row, default=str)
            assert "1937-02-11" not in text and "Zebedee" not in text, model
    for event in AuditEvent.objects.all():
        assert "1937" not in json.dumps(event.payload) and "Zebedee" not in json.dumps(event.payload)
    assert "1937-02-11" not in caplog.text and "Zebedee" not in caplog.text


def test_the_encrypted_response_mode(sd_issuer, sd_trusted, holder):
    holder.credential_import(pid(sd_issuer, holder))
    created = APIClient().post(
        "/api/v1/identity/presentation-requests/",
        {"format": "dc+sd-jwt", "response_mode": "direct_post.jwt"},
        format="json",
    ).json()
    request = openid4vp.request_object_verify(_get_jar(created))
    assert request["response_mode"] == "direct_post.jwt"
    [key] = request["client_metadata"]["jwks"]["keys"]
    assert key["alg"] == "ECDH-ES" and "d" not in key and key["kid"]
    payload = {"vp_token": holder.answer(request), "state": request["state"]}
    encrypted = jose.jwe_encrypt(json.dumps(payload).encode(), key, enc="A256GCM")
    response = post_form(request, {"response": encrypted})
    assert response.status_code == 200, response.json()
    assert response.json()["did"] == jose.did_jwk(holder.holder_jwk)
    # Once answered, the request's decryption key is gone.
    assert PresentationRequest.objects.get(pk=created["id"]).encryption_key == ""


def test_an_encrypted_request_refuses_a_plain_answer(sd_issuer, sd_trusted, holder):
    row = services.presentation_request_create(formats=["dc+sd-jwt"], response_mode="direct_post.jwt")
    request = selectors.request_object(row)
    assert_refused(
        answer(request, sd_present(request, pid(sd_issuer, holder), holder)),
        "response_not_encrypted",
        row,
    )


def test_an_answer_encrypted_to_another_key_is_refused(sd_issuer, sd_trusted, holder):
    row = services.presentation_request_create(formats=["dc+sd-jwt"], response_mode="direct_post.jwt")
    request = selectors.request_object(row)
    other = {**jose.key_generate(algorithm="ECDH-ES"), "kid": request["client_metadata"]["jwks"]["keys"][0]["kid"]}
    payload = {"vp_token": {"onboarding_sd_jwt": [sd_present(request, pid(sd_issuer, holder), holder)]}}
    encrypted = jose.jwe_encrypt(json.dumps(payload).encode(), other)
    assert_refused(post_form(request, {"response": encrypted}), "undecryptable", row)


@pytest.mark.parametrize("prefix", ["x509_san_dns", "redirect_uri"])
def test_the_other_client_identifier_prefixes(settings, tmp_path, sd_issuer, sd_trusted, holder, prefix):
    settings.VAR_DIR = tmp_path
    settings.CLEANROOM_ORIGIN = "https://cleanroom.example"
    settings.CLEANROOM_VERIFIER_CLIENT_ID_PREFIX = prefix
    holder.credential_import(pid(sd_issuer, holder))
    created = selectors.request_object(services.presentation_request_create(formats=["dc+sd-jwt"]))
    token = _get_jar(created)
    anchors = onboarding.verifier_certificates() if prefix == "x509_san_dns" else []
    request = openid4vp.request_object_verify(
        token, client_id=_link_client_id(created), trusted_certificates=anchors
    )
    if prefix == "x509_san_dns":
        assert request["client_id"] == "x509_san_dns:cleanroom.example"
        assert jose.jws_decode(token, "jar").header["x5c"]
    else:
        assert request["client_id"] == f"redirect_uri:{created['response_uri']}"
        assert token.endswith(".")  # OpenID4VP 1.0: a redirect_uri request cannot be signed
    response = answer(request, holder.answer(request)["onboarding_sd_jwt"][0])
    assert response.status_code == 200, response.json()


def test_w3c_credentials_answer_the_same_dcql_request(trusted_issuer, issuer, wallet):
    """One pipeline: a W3C credential in a 1.0 vp_token map, signed for our client_id."""
    wallet.credential_import(issuer.issue(subject=wallet.did, jwt=True))
    created = selectors.request_object(services.presentation_request_create())
    request = openid4vp.request_object_verify(_get_jar(created))
    request.pop("domain")  # a 1.0 wallet signs for the client_id
    vp_token = wallet.answer(request)
    assert list(vp_token) == ["onboarding_jwt"]
    response = answer(request, vp_token)
    assert response.status_code == 200, response.json()
    assert response.json()["did"] == wallet.did


def test_issuer_keys_from_jwt_vc_issuer_metadata_and_its_status_list(status_server, db, holder):
    issuer = Issuer.generate(name="URL issuer")
    issuer.url = status_server.url("pid-issuer")
    issuer.token_status_create(uri=status_server.url("pid-issuer-status"), size=1024)
    (status_server.root / ".well-known" / "jwt-vc-issuer").mkdir(parents=True, exist_ok=True)
    status_server.publish(".well-known/jwt-vc-issuer/pid-issuer", issuer.metadata())
    services.trusted_issuer_create(did=issuer.url, name="URL issuer", vcts=[PID_VCT], actor=None)
    first = pid(issuer, holder, with_status=True)
    second = pid(issuer, holder, with_status=True)
    status_server.publish("pid-issuer-status", issuer.token_status_list())
    request = selectors.request_object(services.presentation_request_create(formats=["dc+sd-jwt"]))
    response = answer(request, sd_present(request, first, holder))
    assert response.status_code == 200, response.json()
    assert "/.well-known/jwt-vc-issuer/pid-issuer" in status_server.requests
    assert "/pid-issuer-status" in status_server.requests
    issuer.token_status_revoke(1)
    status_server.publish("pid-issuer-status", issuer.token_status_list())
    statuslist.CACHE.clear()
    row = services.presentation_request_create(formats=["dc+sd-jwt"])
    request = selectors.request_object(row)
    assert answer(request, sd_present(request, second, holder)).json()["errors"][0]["code"] == "revoked"


def _ca_and_leaf(dns: str, *, ca_valid: bool = True):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC) - timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test PID CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=2 if ca_valid else -1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = jose.key_generate(algorithm="ES256")
    from jwcrypto.jwk import JWK

    leaf_private = JWK(**leaf_key).get_op_key("sign")
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns)]))
        .issuer_name(ca_name)
        .public_key(leaf_private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return ca, leaf, leaf_key


def x5c_issuer(leaf_key, dns="pid.issuer.example"):
    issuer = Issuer.generate(name="x5c issuer")
    issuer.sd_jwt_key = {**leaf_key, "kid": "leaf"}
    issuer.url = f"https://{dns}"
    return issuer


def test_an_issuer_trusted_by_its_certificate(db, holder):
    ca, leaf, leaf_key = _ca_and_leaf("pid.issuer.example")
    trusted = services.trusted_issuer_create(
        name="PID CA", certificate=jose.certificate_pem(ca), vcts=[PID_VCT], actor=None
    )
    assert trusted.did == f"x509_hash:{jose.certificate_hash(ca)}"
    credential = pid(x5c_issuer(leaf_key), holder, x5c=[jose.certificate_x5c(leaf)])
    request = selectors.request_object(services.presentation_request_create(formats=["dc+sd-jwt"]))
    response = answer(request, sd_present(request, credential, holder))
    assert response.status_code == 200, response.json()
    assert ContributorCredential.objects.get().issuer_did == "https://pid.issuer.example"


def test_the_demo_issuer_is_published_by_the_service(settings, tmp_path, holder):
    settings.VAR_DIR = tmp_path
    issuer = Issuer.generate(name="Demo")
    issuer.url = publications.demo_issuer_url()
    issuer.token_status_create(uri=settings.CLEANROOM_ORIGIN + publications.STATUS_LIST_PATH)
    credential = pid(issuer, holder, with_status=True)
    issuer.save(tmp_path / "demo-issuer" / "issuer.json")
    services.trusted_issuer_create(did=issuer.url, name="Demo", vcts=[PID_VCT], actor=None)
    metadata = APIClient().get(publications.METADATA_PATH)
    assert metadata.status_code == 200 and metadata.json()["issuer"] == issuer.url
    status = APIClient().get(publications.STATUS_LIST_PATH)
    assert status["Content-Type"] == "application/statuslist+jwt"
    assert jose.jws_decode(status.content.decode(), "status").claims["sub"] == issuer.token_status.uri
    request = selectors.request_object(services.presentation_request_create(formats=["dc+sd-jwt"]))
    assert answer(request, sd_present(request, credential, holder)).status_code == 200
    # cleanroom-issuer --dir var/demo-issuer revoke --token 0: served (and refused) at once.
    issuer.token_status_revoke(0)
    issuer.save(tmp_path / "demo-issuer" / "issuer.json")
    statuslist.CACHE.clear()
    row = services.presentation_request_create(formats=["dc+sd-jwt"])
    request = selectors.request_object(row)
    assert answer(request, sd_present(request, credential, holder)).json()["errors"][0]["code"] == "revoked"


def test_trusted_issuer_api_takes_urls_certificates_formats_and_vcts(api, compliance_user):
    client = api(compliance_user)
    url_issuer = client.post(
        "/api/v1/identity/trusted-issuers/",
        {"did": "https://pid.example/issuer", "name": "PID", "vcts": [PID_VCT]},
        format="json",
    )
    assert url_issuer.status_code == 201, url_issuer.json()
    assert (url_issuer.json()["formats"], url_issuer.json()["vcts"]) == (["dc+sd-jwt"], [PID_VCT])
    ca, _, _ = _ca_and_leaf("x.example")
    by_certificate = client.post(
        "/api/v1/identity/trusted-issuers/",
        {"name": "CA", "certificate": jose.certificate_pem(ca), "vcts": [PID_VCT]},
        format="json",
    )
    assert by_certificate.status_code == 201, by_certificate.json()
    assert by_certificate.json()["did"].startswith("x509_hash:")
    for bad, word in [
        ({"did": "http://pid.example/issuer", "name": "x", "vcts": [PID_VCT]}, "https"),
        ({"did": "https://pid.example", "name": "x", "credential_types": ["PersonhoodCredential"]}, "W3C"),
        ({"did": "https://pid2.example", "name": "x", "vcts": [PID_VCT], "formats": ["mso_mdoc"]}, "mso_mdoc"),
        ({"name": "x", "certificate": "not a certificate", "vcts": [PID_VCT]}, "certificate"),
        ({"did": "https://pid3.example", "name": "x"}, "credential_types"),
    ]:
        response = client.post("/api/v1/identity/trusted-issuers/", bad, format="json")
        assert response.status_code == 400, (bad, response.json())
        assert word in response.json()["detail"], response.json()
    assert len(client.get("/api/v1/identity/trusted-issuers/").json()) == 2


def test_a_wallet_without_a_matching_credential_answers_nothing(sd_issuer, sd_trusted, sd_request):
    minor = Wallet.generate()
    minor.credential_import(pid(sd_issuer, minor, birthdate=date.today().replace(year=date.today().year - 10)))
    request = selectors.request_object(sd_request)
    from identity.wallet.core import WalletError

    with pytest.raises(WalletError, match="no credential the request accepts"):
        minor.answer(request)


def test_malformed_issuer_urls_are_400s(api, compliance_user):
    for did in ["https://[::1", "https://pid.example:99999/x", "https://pid.example/x?q=1", "ftp://pid.example"]:
        response = api(compliance_user).post(
            "/api/v1/identity/trusted-issuers/", {"did": did, "name": "x", "vcts": [PID_VCT]}, format="json"
        )
        assert response.status_code == 400, (did, response.content)
