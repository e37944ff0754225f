"""Who may upload where: consent, current terms, row limits, roles, erasure in progress."""

from __future__ import annotations

import io
from typing import Any

import pytest

from cleanroom.datasets.services import (
    consent_withdraw,
    contributor_erase_request,
    dataset_update,
)
from tests.datasets.conftest import record, state_of

URL = "/api/v1/datasets/households/contributions/"


def test_upload_without_consent(api: Any, dataset: Any, contributor: Any) -> None:
    before = state_of()
    response = api(contributor.user).post(URL, {"records": [record()]}, format="json")
    assert response.status_code == 403
    assert response.json()["detail"] == (
        "You have not consented to dataset 'households'; consent before uploading."
    )
    assert state_of() == before


def test_upload_after_withdrawal(api: Any, dataset: Any, consented: Any) -> None:
    contributor = consented()
    consent_withdraw(contributor=contributor, dataset=dataset)
    before = state_of()
    response = api(contributor.user).post(URL, {"records": [record()]}, format="json")
    assert response.status_code == 403
    assert state_of() == before


def test_upload_on_outdated_terms(
    api: Any, dataset: Any, consented: Any, compliance_user: Any
) -> None:
    contributor = consented()
    dataset_update(actor=compliance_user, dataset=dataset, changes={"purpose": "Changed"})
    before = state_of()
    response = api(contributor.user).post(URL, {"records": [record()]}, format="json")
    assert response.status_code == 403
    assert response.json()["detail"] == (
        "The terms of dataset 'households' changed (version 2); consent to the new terms "
        "before uploading."
    )
    assert state_of() == before


def test_consent_to_one_dataset_does_not_open_another(
    api: Any, dataset: Any, make_dataset: Any, consented: Any
) -> None:
    make_dataset(slug="commutes", name="Commutes")
    contributor = consented()  # consented to households only
    before = state_of()
    response = api(contributor.user).post(
        "/api/v1/datasets/commutes/contributions/", {"records": [record()]}, format="json"
    )
    assert response.status_code == 403
    assert response.json()["detail"] == (
        "You have not consented to dataset 'commutes'; consent before uploading."
    )
    assert state_of() == before


def test_unknown_dataset(api: Any, contributor: Any, db: Any) -> None:
    response = api(contributor.user).post(
        "/api/v1/datasets/nope/contributions/", {"records": [record()]}, format="json"
    )
    assert response.status_code == 404


@pytest.mark.parametrize("role", ["business_user", "compliance_user"])
def test_business_and_compliance_tokens_cannot_upload(
    api: Any, request: Any, dataset: Any, role: str
) -> None:
    client = api(request.getfixturevalue(role))
    before = state_of()
    response = client.post(URL, {"records": [record()]}, format="json")
    assert response.status_code == 403
    assert response.json()["detail"] == "Only contributors may do this."
    csv = io.BytesIO(b"age,region,income,household_size,owns_home\n34,north,1,3,true\n")
    assert client.post(URL, {"file": csv}, format="multipart").status_code == 403
    assert state_of() == before


def test_anonymous_cannot_upload(api: Any, dataset: Any) -> None:
    assert api(None).post(URL, {"records": [record()]}, format="json").status_code == 401


def test_rows_per_contributor_are_capped_across_uploads(
    api: Any, dataset: Any, consented: Any
) -> None:
    client = api(consented().user)
    assert client.post(URL, {"records": [record()] * 15}, format="json").status_code == 201
    before = state_of()

    response = client.post(URL, {"records": [record()] * 6}, format="json")

    assert response.status_code == 400
    assert response.json()["errors"] == [
        {
            "row": 6,
            "column": None,
            "message": "too many rows: at most 5 rows per contributor in this dataset",
        }
    ]
    assert state_of() == before
    assert client.post(URL, {"records": [record()] * 5}, format="json").status_code == 201
    full = client.post(URL, {"records": [record()]}, format="json")
    assert full.status_code == 400
    assert full.json()["detail"] == (
        "You already hold the maximum of 20 rows in dataset 'households'."
    )


def test_upload_while_erasure_is_pending(api: Any, dataset: Any, consented: Any) -> None:
    contributor = consented()
    contributor_erase_request(contributor=contributor)
    before = state_of()
    response = api(contributor.user).post(URL, {"records": [record()]}, format="json")
    assert response.status_code == 409
    assert response.json()["detail"] == (
        "Your data is being erased; upload again once the erasure is complete."
    )
    assert state_of() == before
    consent = api(contributor.user).post("/api/v1/datasets/households/consent/")
    assert consent.status_code == 409
    assert consent.json()["detail"] == (
        "Your data is being erased; consent again once the erasure is complete."
    )
    assert state_of() == before


def test_records_and_file_together_are_refused(api: Any, dataset: Any, consented: Any) -> None:
    client = api(consented().user)
    before = state_of()
    csv = io.BytesIO(b"age,region,income,household_size,owns_home\n34,north,1,3,true\n")
    response = client.post(URL, {"file": csv, "records": "[]"}, format="multipart")
    # The multipart form carries the file; a stray field is ignored, not merged.
    assert response.status_code == 201
    assert state_of()["contributions"] == before["contributions"] + 1
