"""Portal pages: editor with preview, status with live progress, result with chart, review."""

from __future__ import annotations

from typing import Any

from django.test import Client

from cleanroom.queries.models import Query
from cleanroom.queries.services import query_execute
from tests.queries.conftest import budget_state

SQL = "SELECT region, COUNT(*) AS n, AVG(income) AS m FROM households GROUP BY region"


def browser(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_editor_preview_and_submit(households: Any, business_user: Any) -> None:
    client = browser(business_user)
    page = client.get("/queries/new/?dataset=households")
    assert page.status_code == 200
    assert b"Preview cost and accuracy" in page.content and b"hx-post" in page.content
    before = budget_state(households)
    preview = client.post(
        "/queries/preview/",
        {"dataset": "households", "sql": SQL, "epsilon": "0.5"},
        HTTP_HX_REQUEST="true",
    )
    assert preview.status_code == 200
    assert b"Expected 95% interval per cell" in preview.content
    assert b"6.500000 EUR" in preview.content
    assert budget_state(households) == before
    refused = client.post(
        "/queries/preview/",
        {"dataset": "households", "sql": "SELECT * FROM households"},
        HTTP_HX_REQUEST="true",
    )
    assert b"SELECT *" in refused.content
    response = client.post("/queries/new/", {"dataset": "households", "sql": SQL, "epsilon": "0.5"})
    query = Query.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/queries/{query.pk}/"
    bad = client.post(
        "/queries/new/", {"dataset": "households", "sql": "SELECT age FROM households"}
    )
    assert bad.status_code == 400 and b"Bare column" in bad.content
    assert Query.objects.count() == 1


def test_status_page_polls_until_released_then_shows_table_chart_downloads(
    households: Any, business_user: Any, other_business_user: Any
) -> None:
    client = browser(business_user)
    client.post("/queries/new/", {"dataset": "households", "sql": SQL, "epsilon": "0.5"})
    query = Query.objects.get()
    page = client.get(f"/queries/{query.pk}/")
    assert b'hx-trigger="every 1s"' in page.content
    assert b"Queued" in page.content
    query_execute(query_id=query.pk)
    fragment = client.get(f"/queries/{query.pk}/status/", HTTP_HX_REQUEST="true")
    assert fragment["HX-Refresh"] == "true"
    page = client.get(f"/queries/{query.pk}/")
    assert b"hx-trigger" not in page.content
    assert b"<svg" in page.content and b"error-bar" in page.content
    # One chart per aggregate with a released value (small multiples). The count is always
    # released; a mean whose noisy count is below 1 is not, and on this six-person pool every
    # region's mean can be withheld, so the mean's chart is expected exactly when one is released.
    query.refresh_from_db()
    columns, rows = query.result["columns"], query.result["rows"]
    means_released = any(row[columns.index("m")] is not None for row in rows)
    assert page.content.count(b'<svg class="chart"') == 1 + means_released
    assert b">n (95% interval)</text>" in page.content
    assert (b">m (95% interval)</text>" in page.content) == means_released
    assert page.content.count(b'class="bar"') >= 4
    assert b"Download CSV" in page.content
    csv_download = client.get(f"/queries/{query.pk}/download.csv")
    assert csv_download.status_code == 200
    assert b"".join(csv_download.streaming_content).startswith(b"region,n,n_low95")
    assert client.get(f"/queries/{query.pk}/download.exe").status_code == 404
    rival = browser(other_business_user)
    assert rival.get(f"/queries/{query.pk}/").status_code == 404
    assert rival.get(f"/queries/{query.pk}/download.csv").status_code == 404
    assert b"Your organization" in client.get("/queries/").content


def test_review_queue_approve_and_reject(
    pool_dataset: Any, business_user: Any, compliance_user: Any
) -> None:
    pool_dataset(policy={"auto_approve": False})
    business = browser(business_user)
    for _ in range(2):
        business.post("/queries/new/", {"dataset": "households", "sql": SQL, "epsilon": "0.5"})
    first, second = Query.objects.order_by("pk")
    officer = browser(compliance_user)
    queue = officer.get("/queries/review/")
    assert queue.status_code == 200 and queue.content.count(b"Approve</button>") == 2
    officer.post(f"/queries/{first.pk}/approve/", {"reason": "fine"})
    officer.post(f"/queries/{second.pk}/reject/", {"reason": ""})
    assert Query.objects.get(pk=second.pk).status == "pending_approval"
    officer.post(f"/queries/{second.pk}/reject/", {"reason": "too narrow"})
    assert [q.status for q in Query.objects.order_by("pk")] == ["queued", "rejected"]
    assert business.get("/queries/review/").status_code == 403
    assert business.post(f"/queries/{first.pk}/approve/").status_code == 403
    budget_page = officer.get("/queries/budget/households/")
    assert budget_page.status_code == 200 and b"Acme" in budget_page.content


def test_pages_need_sign_in(households: Any) -> None:
    response = Client().get("/queries/new/")
    assert response.status_code == 302 and "/sign-in/" in response["Location"]


def test_the_editor_proposes_examples_from_the_chosen_datasets_schema(
    pool_dataset: Any, business_user: Any
) -> None:
    """Switching dataset must not keep a query that names the other dataset's columns."""
    from django.test import Client

    pool_dataset()
    pool_dataset(
        slug="commutes",
        schema={
            "columns": [
                {"name": "mode", "type": "string", "categories": ["car", "bike"]},
                {"name": "minutes", "type": "integer", "lower": 0, "upper": 120},
            ]
        },
        records=[[{"mode": "car", "minutes": 20}] for _ in range(6)],
    )
    client = Client()
    client.force_login(business_user)

    households = client.get("/queries/new/?dataset=households").context
    commutes = client.get("/queries/new/?dataset=commutes").context

    assert households["sql"] == (
        "SELECT region, COUNT(*) AS n, AVG(income) AS mean_income\nFROM households\nGROUP BY region"
    )
    assert commutes["sql"] == (
        "SELECT mode, COUNT(*) AS n, AVG(minutes) AS mean_minutes\nFROM commutes\nGROUP BY mode"
    )
    assert all("FROM commutes" in e["sql"] for e in commutes["examples"])
    assert not any(
        name in e["sql"] for e in commutes["examples"] for name in ("income", "region", "age")
    )
    second = client.get("/queries/new/?dataset=commutes&example=1").context
    assert second["sql"] == commutes["examples"][1]["sql"]
    # Every example compiles under the dataset's policy (a preview accepts each).
    for example in commutes["examples"]:
        response = client.post(
            "/queries/preview/",
            {"dataset": "commutes", "sql": example["sql"], "epsilon": "1"},
            HTTP_HX_REQUEST="true",
        )
        assert b"Expected 95% interval per cell" in response.content, example
