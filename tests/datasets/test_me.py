"""GET /api/v1/me/ and /me/export/: a contributor's view of everything about them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cleanroom.datasets.services import consent_withdraw
from tests.datasets.conftest import record


def test_me_lists_consents_uploads_and_the_contract_fields(
    api: Any, dataset: Any, consented: Any, upload: Any
) -> None:
    person = consented(did="did:example:alice")
    contribution = upload(person, dataset, [record(), record()])
    consent_withdraw(contributor=person, dataset=dataset)

    response = api(person.user).get("/api/v1/me/")

    assert response.status_code == 200
    body = response.json()
    assert set(body) >= {"did", "consents", "privacy_loss", "earnings", "queries"}
    assert body["did"] == "did:example:alice"
    assert len(body["consents"]) == 1
    consent = body["consents"][0]
    assert consent["dataset"] == "households"
    assert consent["terms_version"] == 1
    assert consent["is_active"] is False
    assert consent["withdrawn_at"] is not None
    assert body["contributions"] == [
        {
            "id": contribution.pk,
            "dataset": "households",
            "rows": 2,
            "uploaded_at": body["contributions"][0]["uploaded_at"],
        }
    ]
    assert isinstance(body["privacy_loss"], list)
    assert isinstance(body["queries"], list)
    assert set(body["earnings"]) == {"balance", "currency"}
    assert body["erasures"] == []
    # /me/ shows no record contents, only the export does.
    assert "41250.5" not in response.content.decode()


def test_export_decrypts_only_their_own_records(
    api: Any, dataset: Any, consented: Any, upload: Any
) -> None:
    alice, bob = consented(), consented()
    upload(alice, dataset, [record(age=30)])
    upload(bob, dataset, [record(age=77)])

    response = api(alice.user).get("/api/v1/me/export/")

    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="my-clean-room-data.json"'
    assert response["Cache-Control"] == "no-store"
    content = b"".join(response.streaming_content)
    body = json.loads(content)
    assert [c["records"] for c in body["contributions"]] == [[record(age=30)]]
    assert body["did"] == alice.did
    assert bob.did not in content.decode()
    assert set(body) >= {"consents", "privacy_loss", "queries", "earnings", "erasures"}


@pytest.mark.parametrize("path", ["/api/v1/me/", "/api/v1/me/export/"])
def test_other_roles_have_no_me(
    api: Any, business_user: Any, compliance_user: Any, path: str
) -> None:
    assert api(business_user).get(path).status_code == 403
    assert api(compliance_user).get(path).status_code == 403
    assert api(None).get(path).status_code == 401
