"""POST/DELETE /api/v1/datasets/{slug}/consent/: versioned opt-in and withdrawal."""

from __future__ import annotations

from typing import Any

import pytest

from audit.models import AuditEvent
from cleanroom.datasets.models import Consent
from cleanroom.datasets.services import dataset_update

URL = "/api/v1/datasets/households/consent/"


def test_consent_is_recorded_with_the_terms_version(
    api: Any, dataset: Any, contributor: Any
) -> None:
    response = api(contributor.user).post(URL)

    assert response.status_code == 201
    body = response.json()
    assert body["dataset"] == "households"
    assert body["terms_version"] == 1
    assert body["withdrawn_at"] is None
    consent = Consent.objects.get()
    assert (consent.contributor_id, consent.dataset_id, consent.terms_version) == (
        contributor.pk,
        dataset.pk,
        1,
    )
    event = AuditEvent.objects.get(action="cleanroom.consent.given")
    assert event.subject == f"contributor:{contributor.pk}"
    assert event.dataset == "households"
    assert event.payload == {
        "terms_version": 1,
        "replaces_terms_version": None,
        "privacy_cap": None,
    }


def test_consenting_twice_changes_nothing(api: Any, dataset: Any, contributor: Any) -> None:
    client = api(contributor.user)
    client.post(URL)
    response = client.post(URL)
    assert response.status_code == 200
    assert Consent.objects.count() == 1
    assert AuditEvent.objects.filter(action="cleanroom.consent.given").count() == 1


def test_withdrawal_closes_the_consent(api: Any, dataset: Any, contributor: Any) -> None:
    client = api(contributor.user)
    detail = "/api/v1/datasets/households/"
    assert client.get(detail).json()["consent"] == "none"
    client.post(URL)
    assert client.get(detail).json()["consent"] == "current"

    response = client.delete(URL)

    assert response.status_code == 200
    assert response.json()["withdrawn_at"] is not None
    assert Consent.objects.get().withdrawn_at is not None
    # The API says what the portal says: withdrawn, not "none" (never consented).
    assert client.get(detail).json()["consent"] == "withdrawn"
    assert [d["consent"] for d in client.get("/api/v1/datasets/").json()] == ["withdrawn"]
    event = AuditEvent.objects.get(action="cleanroom.consent.withdrawn")
    assert event.payload == {"terms_version": 1}
    # Withdrawing again: nothing to withdraw, nothing changes.
    again = client.delete(URL)
    assert again.status_code == 404
    assert again.json()["detail"] == "You have no consent to dataset 'households' to withdraw."
    assert AuditEvent.objects.filter(action="cleanroom.consent.withdrawn").count() == 1


def test_new_terms_ask_again_and_keep_history(
    api: Any, dataset: Any, contributor: Any, compliance_user: Any
) -> None:
    client = api(contributor.user)
    client.post(URL)
    dataset_update(actor=compliance_user, dataset=dataset, changes={"purpose": "Other"})

    response = client.post(URL)

    assert response.status_code == 201
    assert response.json()["terms_version"] == 2
    history = list(Consent.objects.order_by("pk").values_list("terms_version", "withdrawn_at"))
    assert history[0][0] == 1 and history[0][1] is not None
    assert history[1] == (2, None)
    event = AuditEvent.objects.filter(action="cleanroom.consent.given").order_by("pk").last()
    assert event is not None
    assert event.payload == {"terms_version": 2, "replaces_terms_version": 1, "privacy_cap": None}


@pytest.mark.parametrize("role", ["business_user", "compliance_user"])
def test_only_contributors_consent(api: Any, request: Any, dataset: Any, role: str) -> None:
    user = request.getfixturevalue(role)
    assert api(user).post(URL).status_code == 403
    assert api(user).delete(URL).status_code == 403
    assert Consent.objects.count() == 0


def test_unknown_dataset(api: Any, contributor: Any, db: Any) -> None:
    response = api(contributor.user).post("/api/v1/datasets/nope/consent/")
    assert response.status_code == 404
    assert Consent.objects.count() == 0
