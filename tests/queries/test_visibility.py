"""Results are visible only to the submitting organization and to compliance."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest

from cleanroom.queries import dp
from cleanroom.queries.services import query_execute

SQL = "SELECT region, COUNT(*) AS n, AVG(income) AS m FROM households GROUP BY region"


@pytest.fixture
def released(households: Any, business_user: Any, api: Any) -> int:
    response = api(business_user).post(
        "/api/v1/queries/", {"dataset": "households", "sql": SQL, "epsilon": 0.5}, format="json"
    )
    pk = int(response.json()["id"])
    query_execute(query_id=pk)
    return pk


def test_owner_reads_result(released: int, business_user: Any, api: Any) -> None:
    body = api(business_user).get(f"/api/v1/queries/{released}/").json()
    assert set(body) >= {
        "id",
        "dataset",
        "sql",
        "epsilon",
        "status",
        "progress",
        "price",
        "result",
        "error",
    }
    assert body["status"] == "released"
    assert body["result"]["columns"] == ["region", "n", "m"]
    listing = api(business_user).get("/api/v1/queries/").json()
    assert [q["id"] for q in listing] == [released]


def test_another_organization_sees_nothing(
    released: int, other_business_user: Any, api: Any
) -> None:
    client = api(other_business_user)
    assert client.get(f"/api/v1/queries/{released}/").status_code == 404
    assert client.get(f"/api/v1/queries/{released}/result/").status_code == 404
    assert client.get("/api/v1/queries/").json() == []


def test_compliance_sees_all_and_contributors_none(
    released: int, compliance_user: Any, contributor: Any, api: Any
) -> None:
    assert api(compliance_user).get(f"/api/v1/queries/{released}/").json()["status"] == "released"
    assert [q["id"] for q in api(compliance_user).get("/api/v1/queries/").json()] == [released]
    assert api(contributor.user).get(f"/api/v1/queries/{released}/").status_code == 403
    assert api(contributor.user).get("/api/v1/queries/").status_code == 403


def test_downloads_as_csv_and_json(released: int, business_user: Any, api: Any) -> None:
    response = api(business_user).get(f"/api/v1/queries/{released}/result/?as=csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["region", "n", "n_low95", "n_high95", "m", "m_low95", "m_high95"]
    assert [r[0] for r in rows[1:]] == ["north", "south", "east", "west"]
    as_json = json.loads(
        b"".join(
            api(business_user).get(f"/api/v1/queries/{released}/result/?as=json").streaming_content
        )
    )
    assert as_json["columns"] == ["region", "n", "m"] and as_json["query"] == released
    assert api(business_user).get(f"/api/v1/queries/{released}/result/?as=xml").status_code == 400


def test_budget_summary(released: int, business_user: Any, compliance_user: Any, api: Any) -> None:
    summary = api(compliance_user).get("/api/v1/queries/budget/households/").json()
    assert summary["spent_epsilon"] == 0.5 and summary["charged_epsilon"] == 0.5
    assert summary["by_organization"] == [{"organization": "Acme", "epsilon": 0.5}]
    assert len(summary["history"]) == 1
    public = api(business_user).get("/api/v1/queries/budget/households/").json()
    assert public == {
        "total_epsilon": 10.0,
        "spent_epsilon": 0.5,
        "remaining_epsilon": 9.5,
        "total_delta": 0.0,
        "spent_delta": 0.0,
        "remaining_delta": 0.0,
        "privacy_unit": dp.PRIVACY_UNIT,
    }
