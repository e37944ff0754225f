import pytest
from rest_framework.test import APIClient


@pytest.mark.django_db
def test_validation_error_names_the_field() -> None:
    response = APIClient().post("/api/v1/auth/token/", {"username": "x"}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "validation-failed"
    assert body["errors"] == [{"field": "password", "message": "This field is required."}]
    assert "password" in body["detail"]


@pytest.mark.django_db
def test_malformed_json_is_a_400_problem_not_a_500() -> None:
    response = APIClient().generic(
        "POST", "/api/v1/auth/token/", "{not json", content_type="application/json"
    )
    assert response.status_code == 400
    assert set(response.json()) == {"type", "title", "detail", "errors"}


@pytest.mark.django_db
def test_unknown_api_path_is_a_json_404() -> None:
    response = APIClient().get("/api/v1/no-such-thing/")
    assert response.status_code == 404
    assert response.json()["title"] == "Not found"


@pytest.mark.django_db
def test_wrong_method_is_405_problem() -> None:
    response = APIClient().get("/api/v1/auth/token/")
    assert response.status_code == 405
    assert response.json()["type"] == "method_not_allowed"


def test_openapi_schema_and_docs_are_served(client) -> None:
    assert client.get("/api/v1/schema/").status_code == 200
    assert client.get("/api/docs/").status_code == 200
