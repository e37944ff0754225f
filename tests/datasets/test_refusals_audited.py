"""Refusals leave an audit event, without the password, the SQL or the data (issue 11, defect 5).

Wrong passwords are covered in tests/foundation/test_throttling.py; here: refused SQL,
refused uploads, access refused (403, 404 on another organization's or a made-up id),
the per-minute allowance that keeps a flood out of the log, and the compliance filter.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from audit.models import AuditEvent


def refusals(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("seq"))


@pytest.mark.django_db
def test_refused_sql_is_audited_with_the_construct_not_the_query(
    api: Any, dataset: Any, business_user: Any
) -> None:
    sql = "SELECT age FROM households WHERE region = 'zz-secret-literal'"
    response = api(business_user).post(
        "/api/v1/queries/preview/", {"dataset": "households", "sql": sql}, format="json"
    )
    assert response.status_code == 400
    [event] = refusals("cleanroom.query.refused")
    assert event.actor_id == str(business_user.pk)
    assert event.dataset == "households"
    assert event.payload["status"] == 400
    assert event.payload["type"] == response.json()["type"]
    assert event.payload["detail"] == response.json()["detail"]
    assert "zz-secret-literal" not in event.entry

    submitted = api(business_user).post(
        "/api/v1/queries/", {"dataset": "households", "sql": sql}, format="json"
    )
    assert submitted.status_code == 400
    assert len(refusals("cleanroom.query.refused")) == 2


@pytest.mark.django_db
def test_refused_upload_is_audited_without_the_values(api: Any, consented: Any) -> None:
    person = consented()
    response = api(person.user).post(
        "/api/v1/datasets/households/contributions/",
        {"records": [{"age": 4242, "region": "zz-secret-region", "income": 1.0}]},
        format="json",
    )
    assert response.status_code == 400
    [event] = refusals("cleanroom.contribution.refused")
    assert event.actor_id == str(person.user.pk)
    assert event.dataset == "households"
    assert event.payload == {
        "status": 400,
        "type": "validation-failed",
        "errors": len(response.json()["errors"]),
    }
    assert "4242" not in event.entry and "zz-secret-region" not in event.entry


@pytest.mark.django_db
def test_access_refused_to_a_signed_in_user_is_audited(
    api: Any, dataset: Any, business_user: Any, contributor: Any
) -> None:
    assert api(contributor.user).get("/api/v1/billing/").status_code == 403
    assert api(business_user).get("/api/v1/queries/987654/").status_code == 404
    assert api(None).get("/api/v1/billing/").status_code == 401  # nobody to name: not logged
    client = Client()
    client.force_login(business_user)
    assert client.get("/my-data/").status_code == 403  # a contributor's page
    events = refusals("cleanroom.access.refused")
    assert [(e.actor_id, e.payload["status"], e.payload["path"]) for e in events] == [
        (str(contributor.user.pk), 403, "/api/v1/billing/"),
        (str(business_user.pk), 404, "/api/v1/queries/987654/"),
        (str(business_user.pk), 403, "/my-data/"),
    ]


@pytest.mark.django_db
def test_a_flood_of_refusals_is_recorded_20_a_minute_then_summarized(
    api: Any, dataset: Any, business_user: Any
) -> None:
    client = api(business_user)
    for _ in range(25):
        response = client.post(
            "/api/v1/queries/preview/",
            {"dataset": "households", "sql": "SELECT * FROM households"},
            format="json",
        )
        assert response.status_code == 400
    assert len(refusals("cleanroom.query.refused")) == 20
    [suppressed] = refusals("cleanroom.refusals.suppressed")
    assert suppressed.payload == {
        "refused_action": "cleanroom.query.refused",
        "recorded": 20,
        "per_seconds": 60,
    }


@pytest.mark.django_db
def test_compliance_filters_refusals(
    api: Any, dataset: Any, business_user: Any, compliance_user: Any
) -> None:
    api(business_user).post(
        "/api/v1/queries/preview/",
        {"dataset": "households", "sql": "SELECT * FROM households"},
        format="json",
    )
    api(None).post("/api/v1/auth/token/", {"username": "analyst", "password": "no"}, format="json")
    everything = api(compliance_user).get("/api/v1/audit/events/?page_size=500").json()
    only = api(compliance_user).get("/api/v1/audit/events/?refused=1").json()
    assert everything["count"] > only["count"]
    assert [e["action"] for e in only["results"]] == [
        "cleanroom.query.refused",
        "accounts.sign_in.refused",
    ]
    client = Client()
    client.force_login(compliance_user)
    page = client.get("/audit/?refused=1").content.decode()
    assert "<td>accounts.sign_in.refused</td>" in page
    assert "<td>cleanroom.query.refused</td>" in page
    assert "<td>cleanroom.dataset.created</td>" not in page
    assert 'name="refused" value="1" checked' in page
