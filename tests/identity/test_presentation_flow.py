"""The accepted path: request, request_uri, response_uri, contributor, token, what is kept."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from rest_framework.test import APIClient

from audit.models import AuditEvent
from cleanroom.accounts.models import Contributor
from identity.models import ContributorCredential, PresentationRequest

pytestmark = pytest.mark.django_db


def _query(dcql, query_id):
    return next(q for q in dcql["credentials"] if q["id"] == query_id)


def test_create_request_has_the_api_fields(db, settings):
    response = APIClient().post("/api/v1/identity/presentation-requests/")
    assert response.status_code == 201
    body = response.json()
    assert {
        "id",
        "nonce",
        "domain",
        "dcql_query",
        "request_uri",
        "response_uri",
        "expires_at",
    } <= set(body)
    assert body["domain"] == settings.CLEANROOM_ORIGIN
    assert (
        body["request_uri"]
        == f"{settings.CLEANROOM_ORIGIN}/api/v1/identity/presentation-requests/{body['id']}/"
    )
    assert body["response_uri"] == body["request_uri"] + "response/"
    assert body["response_mode"] == "direct_post"
    assert len(body["nonce"]) >= 43
    assert _query(body["dcql_query"], "onboarding_ldp")["meta"]["type_values"] == [
        ["VerifiableCredential", "PersonhoodCredential"]
    ]


def test_dcql_names_the_trusted_issuers(trusted_issuer, issuer, request_object):
    authorities = _query(request_object["dcql_query"], "onboarding_ldp")["trusted_authorities"]
    assert authorities == [{"type": "did", "values": [issuer.did]}]


def test_onboarding_type_comes_from_settings(db, settings):
    settings.CLEANROOM_ONBOARDING_CREDENTIAL = "KYCCredential"
    body = APIClient().post("/api/v1/identity/presentation-requests/").json()
    assert _query(body["dcql_query"], "onboarding_ldp")["meta"]["type_values"] == [
        ["VerifiableCredential", "KYCCredential"]
    ]


@pytest.mark.parametrize("jwt", [False, True])
def test_wallet_presentation_creates_a_contributor_with_a_token(
    trusted_issuer, issuer, wallet, presentation_request, request_object, submit, jwt
):
    credential = issuer.issue(
        subject=wallet.did, jwt=jwt, claims={"ageOver18": True, "countryOfResidence": "NL"}
    )
    response = submit(request_object, wallet.present(request_object, credential=credential))
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["verified"] is True
    assert body["did"] == wallet.did
    assert body["credentials"] == ["PersonhoodCredential"]
    contributor = Contributor.objects.get(did=wallet.did)
    presentation_request.refresh_from_db()
    assert presentation_request.status == PresentationRequest.Status.ACCEPTED
    assert presentation_request.contributor == contributor
    # The token works for the API as that contributor.
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {body['token']}")
    assert (
        client.get("/api/v1/identity/trusted-issuers/").status_code == 403
    )  # a contributor, not compliance
    # Only type, issuer, expiry and a hash are kept: no claim value anywhere.
    kept = ContributorCredential.objects.get(contributor=contributor)
    assert (kept.credential_type, kept.issuer_did) == ("PersonhoodCredential", issuer.did)
    assert kept.expires_at is not None and len(kept.digest) == 64
    event = AuditEvent.objects.get(action="identity.presentation.accepted")
    assert event.subject == f"contributor:{contributor.pk}"
    assert event.payload == {
        "reason": "verified",
        "request": str(presentation_request.pk),
        "credential_types": ["PersonhoodCredential"],
        "issuers": [issuer.did],
        "new_contributor": True,
    }
    assert "NL" not in str(event.payload) and wallet.did not in str(event.payload)


def test_the_same_did_signs_in_again(trusted_issuer, issuer, wallet, request_object, submit):
    from identity import selectors, services

    credential = issuer.issue(subject=wallet.did)
    first = submit(request_object, wallet.present(request_object, credential=credential)).json()
    second_request = selectors.request_object(services.presentation_request_create())
    second = submit(second_request, wallet.present(second_request, credential=credential)).json()
    assert second["verified"] is True and second["token"] == first["token"]
    assert Contributor.objects.count() == 1
    assert ContributorCredential.objects.count() == 1
    assert (
        AuditEvent.objects.filter(action="identity.presentation.accepted")
        .latest("pk")
        .payload["new_contributor"]
        is False
    )


def test_request_uri_cannot_be_read_once_answered(
    trusted_issuer, issuer, wallet, request_object, submit
):
    path = urlsplit(request_object["request_uri"]).path
    assert APIClient().get(path).status_code == 200
    assert APIClient().get(path).status_code == 200  # reading twice before answering is fine
    submit(
        request_object, wallet.present(request_object, credential=issuer.issue(subject=wallet.did))
    )
    response = APIClient().get(path)
    assert response.status_code == 410
    assert response.json()["detail"] == "This presentation request was already answered."


def test_unknown_or_malformed_request_uri(db):
    assert APIClient().get("/api/v1/identity/presentation-requests/not-a-uuid/").status_code == 404
    assert (
        APIClient()
        .get("/api/v1/identity/presentation-requests/00000000-0000-0000-0000-000000000000/")
        .status_code
        == 404
    )


def test_form_encoded_direct_post_is_accepted(trusted_issuer, issuer, wallet, request_object):
    import json
    from urllib.parse import urlencode

    vp = wallet.present(request_object, credential=issuer.issue(subject=wallet.did))
    path = urlsplit(request_object["response_uri"]).path
    response = APIClient().post(
        path,
        data=urlencode({"vp_token": json.dumps(vp)}),
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200, response.json()


def test_refusal_is_counted_on_the_request(
    trusted_issuer, issuer, wallet, presentation_request, request_object, submit
):
    vp = wallet.present(request_object, credential=issuer.issue(subject=Wallet_other_did()))
    submit(request_object, vp)
    presentation_request.refresh_from_db()
    assert presentation_request.refusals == 1
    assert (
        presentation_request.last_refusal
        == "credential 1 was issued to someone other than the holder"
    )


def Wallet_other_did() -> str:  # noqa: N802
    from identity.wallet.core import Wallet

    return Wallet.generate().did


def test_stale_unanswered_requests_are_purged(
    trusted_issuer, issuer, wallet, request_object, submit
):
    from datetime import timedelta

    from django.utils import timezone

    from identity import services

    answered = PresentationRequest.objects.get(pk=request_object["id"])
    submit(
        request_object, wallet.present(request_object, credential=issuer.issue(subject=wallet.did))
    )
    stale = services.presentation_request_create()
    recent = services.presentation_request_create()
    long_ago = timezone.now() - timedelta(days=2)
    PresentationRequest.objects.filter(pk__in=[stale.pk, answered.pk]).update(expires_at=long_ago)
    PresentationRequest.objects.filter(pk=recent.pk).update(
        expires_at=timezone.now() - timedelta(hours=1)
    )
    services.presentation_request_create()
    remaining = set(PresentationRequest.objects.values_list("pk", flat=True))
    assert stale.pk not in remaining
    assert {answered.pk, recent.pk} <= remaining
