"""The trusted-issuer registry API: compliance only, validated, audited."""

from __future__ import annotations

import pytest

from audit.models import AuditEvent
from identity.models import TrustedIssuer

pytestmark = pytest.mark.django_db
URL = "/api/v1/identity/trusted-issuers/"
DID = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"


def test_compliance_adds_and_lists(api, compliance_user):
    response = api(compliance_user).post(
        URL,
        {"did": DID, "name": "Gov ID", "credential_types": ["PersonhoodCredential"]},
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["did"], body["name"], body["credential_types"]) == (
        DID,
        "Gov ID",
        ["PersonhoodCredential"],
    )
    listed = api(compliance_user).get(URL).json()
    assert [i["did"] for i in listed] == [DID]
    event = AuditEvent.objects.get(action="identity.issuer.trusted")
    assert event.payload == {
        "did": DID,
        "name": "Gov ID",
        "credential_types": ["PersonhoodCredential"],
        "formats": ["ldp_vc", "jwt_vc_json"],
        "vcts": [],
    }
    assert event.actor_id == str(compliance_user.pk)


@pytest.mark.parametrize("who", ["business_user", "contributor"])
def test_other_roles_are_refused(api, request, who):
    user = request.getfixturevalue(who)
    user = getattr(user, "user", user)
    assert api(user).get(URL).status_code == 403
    assert (
        api(user)
        .post(
            URL,
            {"did": DID, "name": "X", "credential_types": ["PersonhoodCredential"]},
            format="json",
        )
        .status_code
        == 403
    )
    assert TrustedIssuer.objects.count() == 0


def test_anonymous_is_refused(api, db):
    assert api(None).get(URL).status_code == 401


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (
            {"did": "issuer-1", "name": "X", "credential_types": ["PersonhoodCredential"]},
            "did must be a DID",
        ),
        ({"did": DID, "name": "X", "credential_types": []}, "credential_types"),
        ({"did": DID, "name": "X", "credential_types": ["VerifiableCredential"]}, "too general"),
        (
            {"did": DID, "name": "X", "credential_types": ["has space"]},
            "is not a credential type name",
        ),
        ({"did": DID, "credential_types": ["PersonhoodCredential"]}, "name"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(api, compliance_user, payload, message):
    response = api(compliance_user).post(URL, payload, format="json")
    assert response.status_code == 400
    assert message in response.json()["detail"]
    assert TrustedIssuer.objects.count() == 0
    assert not AuditEvent.objects.filter(action="identity.issuer.trusted").exists()


def test_duplicate_is_a_conflict(api, compliance_user):
    payload = {"did": DID, "name": "Gov ID", "credential_types": ["PersonhoodCredential"]}
    api(compliance_user).post(URL, payload, format="json")
    response = api(compliance_user).post(URL, payload, format="json")
    assert response.status_code == 409
    assert TrustedIssuer.objects.count() == 1


def test_update_and_remove(api, compliance_user):
    created = (
        api(compliance_user)
        .post(
            URL,
            {"did": DID, "name": "Gov ID", "credential_types": ["PersonhoodCredential"]},
            format="json",
        )
        .json()
    )
    updated = api(compliance_user).put(
        f"{URL}{created['id']}/",
        {"name": "Gov ID v2", "credential_types": ["KYCCredential"]},
        format="json",
    )
    assert updated.status_code == 200 and updated.json()["credential_types"] == ["KYCCredential"]
    assert api(compliance_user).delete(f"{URL}{created['id']}/").status_code == 204
    assert TrustedIssuer.objects.count() == 0
    assert (
        AuditEvent.objects.filter(action="identity.issuer.removed", payload__did=DID).count() == 1
    )
    assert api(compliance_user).delete(f"{URL}{created['id']}/").status_code == 404
