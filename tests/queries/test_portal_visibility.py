"""Every portal page applies the visibility its API applies (``dataset_visible_to``).

A dataset whose policy's ``allowed_organizations`` names only Acme does not exist for a
business of Rival Corp on any page: not in the new-query editor (list, schema, budget),
the catalog, the dataset page (404) or the preview (refused as a missing dataset). Each
test also shows Acme's business does see it, so no assertion can pass on an empty page.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from cleanroom.queries.models import Query
from tests.queries.conftest import POLICY, PRICE, SCHEMA

SLUG = "private_homes"
NAME = "Private homes of Acme"
# A column and a budget that appear nowhere else: either on a page means the dataset leaked.
SECRET_COLUMN = "mortgage_arrears"
SECRET_TOTAL = "7.25"
SQL = "SELECT COUNT(*) AS n, AVG(mortgage_arrears) AS m FROM private_homes"


@pytest.fixture
def restricted(compliance_user: Any, business_user: Any, other_business_user: Any) -> Any:
    """An open dataset (households) and one open to Acme only."""
    from cleanroom.datasets.services import dataset_create

    dataset_create(
        actor=compliance_user,
        slug="households",
        name="Households",
        purpose="Household budgets research",
        schema=SCHEMA,
        policy=POLICY,
        price=PRICE,
    )
    schema = {
        "columns": [
            *SCHEMA["columns"],
            {"name": SECRET_COLUMN, "type": "integer", "lower": 0, "upper": 36},
        ]
    }
    return dataset_create(
        actor=compliance_user,
        slug=SLUG,
        name=NAME,
        purpose="Arrears research for Acme",
        schema=schema,
        policy={**POLICY, "total_epsilon": SECRET_TOTAL, "allowed_organizations": ["Acme"]},
        price=PRICE,
    )


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def leaks(content: bytes) -> list[str]:
    """Which of the restricted dataset's traits a page shows."""
    text = content.decode()
    return [trait for trait in (SLUG, NAME, SECRET_COLUMN, SECRET_TOTAL) if trait in text]


def without_csrf(content: bytes) -> str:
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", content.decode())


def test_new_query_page_lists_only_visible_datasets(
    restricted: Any, business_user: Any, other_business_user: Any
) -> None:
    rival = signed_in(other_business_user).get("/queries/new/")
    assert rival.status_code == 200
    assert b'<option value="households" selected>' in rival.content
    assert leaks(rival.content) == []

    acme = signed_in(business_user).get("/queries/new/")
    assert acme.status_code == 200
    assert f'<option value="{SLUG}">{NAME} ({SLUG})</option>'.encode() in acme.content


def test_new_query_page_naming_the_dataset_reads_like_a_missing_one(
    restricted: Any, business_user: Any, other_business_user: Any
) -> None:
    client = signed_in(other_business_user)
    named = client.get(f"/queries/new/?dataset={SLUG}")
    missing = client.get("/queries/new/?dataset=no_such_set")
    assert named.status_code == missing.status_code == 200
    # Only the slug the rival typed is echoed (in the example SQL): no name, schema, budget.
    assert [trait for trait in leaks(named.content) if trait != SLUG] == []
    assert without_csrf(named.content).replace(SLUG, "no_such_set") == without_csrf(missing.content)

    acme = signed_in(business_user).get(f"/queries/new/?dataset={SLUG}")
    assert acme.status_code == 200
    assert f"Schema of <code>{SLUG}</code>".encode() in acme.content
    assert f"<code>{SECRET_COLUMN}</code>".encode() in acme.content
    assert f"Remaining budget: ε {SECRET_TOTAL}".encode() in acme.content


def test_submitting_from_the_page_is_refused_as_a_missing_dataset(
    restricted: Any, other_business_user: Any
) -> None:
    # The page echoes the SQL typed; this one names nothing but the table.
    sql = "SELECT COUNT(*) AS n FROM private_homes"
    response = signed_in(other_business_user).post(
        "/queries/new/", {"dataset": SLUG, "sql": sql, "epsilon": "0.5"}
    )
    assert response.status_code == 404
    assert f"No dataset named &#x27;{SLUG}&#x27;.".encode() in response.content
    assert [trait for trait in leaks(response.content) if trait != SLUG] == []
    assert Query.objects.count() == 0


def test_preview_is_refused_for_the_rival_and_given_to_acme(
    restricted: Any, business_user: Any, other_business_user: Any, make_contributor: Any
) -> None:
    from cleanroom.datasets.services import consent_give

    # A pool at the policy's minimum: a preview of a smaller one is refused like a submit.
    for _ in range(POLICY["min_contributors"]):
        consent_give(contributor=make_contributor(), dataset=restricted)
    body = {"dataset": SLUG, "sql": SQL, "epsilon": "0.5"}
    rival = signed_in(other_business_user)
    plain = rival.post("/queries/preview/", body)
    assert plain.status_code == 404
    fragment = rival.post("/queries/preview/", body, HTTP_HX_REQUEST="true")
    assert fragment.status_code == 200
    for response in (plain, fragment):
        assert f"No dataset named &#x27;{SLUG}&#x27;.".encode() in response.content
        assert b"Expected 95% interval" not in response.content
        assert [trait for trait in leaks(response.content) if trait != SLUG] == []

    acme = signed_in(business_user).post("/queries/preview/", body, HTTP_HX_REQUEST="true")
    assert acme.status_code == 200
    assert b"Expected 95% interval per cell" in acme.content
    assert b"<code>m</code>" in acme.content
    assert f"fits the remaining budget (ε {SECRET_TOTAL}".encode() in acme.content
    assert Query.objects.count() == 0


def test_catalog_and_dataset_page(
    restricted: Any, business_user: Any, other_business_user: Any, compliance_user: Any
) -> None:
    rival = signed_in(other_business_user)
    catalog = rival.get("/datasets/")
    assert catalog.status_code == 200 and b"Households" in catalog.content
    assert leaks(catalog.content) == []
    page = rival.get(f"/datasets/{SLUG}/")
    assert page.status_code == 404
    assert [trait for trait in leaks(page.content) if trait != SLUG] == []

    for user in (business_user, compliance_user):
        client = signed_in(user)
        assert NAME.encode() in client.get("/datasets/").content
        page = client.get(f"/datasets/{SLUG}/")
        assert page.status_code == 200
        assert NAME.encode() in page.content and SECRET_COLUMN.encode() in page.content


def test_compliance_pages_list_every_dataset(restricted: Any, compliance_user: Any) -> None:
    client = signed_in(compliance_user)
    review = client.get("/queries/review/")
    assert review.status_code == 200
    assert f'href="/queries/budget/{SLUG}/">{NAME}</a>'.encode() in review.content
    budget = client.get(f"/queries/budget/{SLUG}/")
    assert budget.status_code == 200 and SLUG.encode() in budget.content
