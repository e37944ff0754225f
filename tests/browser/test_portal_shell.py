import pytest

from tests.conftest import sign_in

pytestmark = pytest.mark.browser


def test_landing_page_explains_the_product_and_signs_in(page, business_user) -> None:
    page.goto("/")
    assert page.locator("#intro-business h2").inner_text() == "For businesses"
    sign_in(page, "analyst", "analyst-pass-1")
    assert page.locator(".role").inner_text() == "business"
    page.screenshot(path="var/screenshot-landing.png")


def test_wrong_password_shows_the_reason(page, business_user) -> None:
    page.goto("/sign-in/")
    page.fill("input[name=username]", "analyst")
    page.fill("input[name=password]", "wrong")
    page.click("button[type=submit]")
    assert page.locator("[role=alert]").inner_text() == "Unknown username or wrong password."
