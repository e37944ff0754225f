import pytest
from django.test import Client
from rest_framework.test import APIClient


@pytest.mark.django_db
def test_token_is_issued_for_a_correct_password(business_user) -> None:
    response = APIClient().post(
        "/api/v1/auth/token/", {"username": "analyst", "password": "analyst-pass-1"}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["role"] == "business"
    assert len(response.json()["token"]) == 40


@pytest.mark.django_db
def test_wrong_password_gets_a_problem_body(business_user) -> None:
    response = APIClient().post(
        "/api/v1/auth/token/", {"username": "analyst", "password": "nope"}, format="json"
    )
    assert response.status_code == 401
    body = response.json()
    assert set(body) == {"type", "title", "detail", "errors"}
    assert body["detail"] == "Unknown username or wrong password."


@pytest.mark.django_db
def test_session_sign_in_shows_role_navigation(business_user) -> None:
    client = Client()
    response = client.post("/sign-in/", {"username": "analyst", "password": "analyst-pass-1"})
    assert response.status_code == 302
    page = client.get("/")
    assert page.status_code == 200
    assert b"business" in page.content
    assert b"Sign out" in page.content


@pytest.mark.django_db
def test_session_sign_in_refuses_a_wrong_password(business_user) -> None:
    response = Client().post("/sign-in/", {"username": "analyst", "password": "wrong"})
    assert response.status_code == 400
    assert b"Unknown username or wrong password." in response.content


@pytest.mark.django_db
def test_unauthenticated_api_call_is_401_problem() -> None:
    response = APIClient().get("/api/v1/datasets/")
    assert response.status_code == 401
    assert set(response.json()) == {"type", "title", "detail", "errors"}


def test_landing_page_explains_the_product_to_each_role(client) -> None:
    page = client.get("/").content.decode()
    for heading in ("For contributors", "For businesses", "For compliance officers"):
        assert heading in page
