"""Portal pages of datasets: catalog and cards, consent, uploads, dashboard, publish form."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.test import Client

from cleanroom.datasets.models import Consent, Contribution, Dataset, Erasure
from tests.datasets.conftest import HOUSEHOLDS_SCHEMA, record, state_of


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize("role", ["business_user", "compliance_user", "contributor"])
def test_catalog_and_card_for_every_role(
    request: Any, role: str, dataset: Any, consented: Any, upload: Any
) -> None:
    upload(consented(), dataset, [record()])
    value = request.getfixturevalue(role)
    client = signed_in(value.user if role == "contributor" else value)

    catalog = client.get("/datasets/")
    card = client.get("/datasets/households/")

    assert catalog.status_code == 200 and card.status_code == 200
    assert "Households" in catalog.content.decode()
    page = card.content.decode()
    assert "Household budgets research" in page
    assert "north, south, east, west" in page
    assert "18 … 100" in page
    assert "<strong>1</strong> contributor in the pool" in page
    assert "41250.5" not in page  # no contributed value on any page


def test_anonymous_is_sent_to_sign_in(db: Any) -> None:
    response = Client().get("/datasets/")
    assert response.status_code == 302
    assert response["Location"].startswith("/sign-in/")


def test_contributor_consents_uploads_and_withdraws(dataset: Any, contributor: Any) -> None:
    client = signed_in(contributor.user)
    assert (
        'action="/datasets/households/consent/"'
        in client.get("/datasets/households/").content.decode()
    )

    client.post("/datasets/households/consent/")
    assert Consent.objects.filter(contributor=contributor, withdrawn_at__isnull=True).count() == 1
    page = client.get("/datasets/households/").content.decode()
    assert 'id="upload"' in page

    csv = io.BytesIO(b"age,region,income,household_size,owns_home\n34,north,1,3,true\n")
    csv.name = "rows.csv"
    response = client.post("/datasets/households/upload/", {"file": csv}, follow=True)
    assert "1 row accepted, encrypted and stored." in response.content.decode()
    response = client.post(
        "/datasets/households/upload/",
        {
            "records": '[{"age": 40, "region": "east", '
            '"income": 2, "household_size": 1, "owns_home": false}]'
        },
        follow=True,
    )
    assert "1 row accepted" in response.content.decode()
    assert Contribution.objects.filter(contributor=contributor).count() == 2

    client.post("/datasets/households/withdraw/")
    assert not Consent.objects.filter(contributor=contributor, withdrawn_at__isnull=True).exists()


def test_upload_errors_are_shown_row_by_row(dataset: Any, consented: Any) -> None:
    client = signed_in(consented().user)
    before = state_of()
    response = client.post(
        "/datasets/households/upload/",
        {
            "records": '[{"age": 5, "region": "north", "income": 1, "household_size": 1, "owns_home": true}]'
        },
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "out of bounds: must be between 18 and 100" in page
    assert "The upload was refused and nothing was stored" in page
    assert state_of() == before
    bad_json = client.post("/datasets/households/upload/", {"records": "[{"})
    assert bad_json.status_code == 400
    assert "not valid JSON" in bad_json.content.decode()


def test_upload_page_checks_csrf(dataset: Any, consented: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(consented().user)
    before = state_of()
    response = client.post("/datasets/households/upload/", {"records": f"[{record()}]"})
    assert response.status_code == 403
    assert state_of() == before


def test_other_roles_cannot_consent_or_upload(dataset: Any, business_user: Any) -> None:
    client = signed_in(business_user)
    assert client.post("/datasets/households/consent/").status_code == 403
    assert client.post("/datasets/households/upload/", {"records": "[]"}).status_code == 403
    assert Consent.objects.count() == 0


def test_dashboard_export_and_erase(dataset: Any, consented: Any, upload: Any) -> None:
    person = consented()
    upload(person, dataset, [record(age=44)])
    client = signed_in(person.user)

    page = client.get("/my-data/").content.decode()
    assert 'id="earnings"' in page and 'id="privacy-loss"' in page and 'id="queries"' in page
    assert "households" in page

    export = client.get("/my-data/export/")
    assert export.status_code == 200
    body = json.loads(b"".join(export.streaming_content))
    assert body["contributions"][0]["records"][0]["age"] == 44

    client.post("/my-data/erase/", {"confirm": "nope"})
    assert Erasure.objects.count() == 0
    client.post("/my-data/erase/", {"confirm": "erase"})
    assert Erasure.objects.filter(contributor=person).count() == 1


def test_compliance_publishes_from_the_form(compliance_user: Any) -> None:
    client = signed_in(compliance_user)
    assert client.get("/datasets/new/").status_code == 200
    form = {
        "slug": "commutes",
        "name": "Commutes",
        "purpose": "Transport planning",
        "schema": '{"columns": [{"name": "minutes", "type": "integer", "lower": 0, "upper": 300}]}',
        "total_epsilon": "5",
        "max_query_epsilon": "0.5",
        "min_contributors": "10",
        "max_rows_per_contributor": "30",
        "auto_approve": "on",
        "currency": "EUR",
        "per_query": "2",
        "per_epsilon": "4",
        "platform_fee": "0.1",
        "retention_days": "90",
    }
    response = client.post("/datasets/new/", form)
    assert response.status_code == 302
    dataset = Dataset.objects.get(slug="commutes")
    assert dataset.policy["auto_approve"] is True
    assert dataset.retention_days == 90

    bad = client.post("/datasets/new/", {**form, "slug": "other", "schema": "{"})
    assert bad.status_code == 400
    assert "The schema is not valid JSON." in bad.content.decode()
    assert Dataset.objects.count() == 1


def test_publish_form_is_compliance_only(business_user: Any, contributor: Any) -> None:
    assert signed_in(business_user).get("/datasets/new/").status_code == 403
    assert signed_in(contributor.user).post("/datasets/new/", {"slug": "x"}).status_code == 403
    assert Dataset.objects.count() == 0
    assert HOUSEHOLDS_SCHEMA


def test_privacy_chart_scales_bars_to_the_largest_loss() -> None:
    from cleanroom.datasets.portal import _privacy_chart

    chart = _privacy_chart([{"dataset": "a", "epsilon": 0.5}, {"dataset": "b", "epsilon": 2.0}])
    assert chart == {
        "bars": [
            {"label": "a", "value": "0.5", "y": 10, "width": 90.0},
            {"label": "b", "value": "2", "y": 38, "width": 360.0},
        ],
        "height": 76,
    }
    assert _privacy_chart([]) == {"bars": [], "height": 20}
