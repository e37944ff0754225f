"""A contributor in Chromium: consent, upload a CSV, see errors, dashboard, erase."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connections
from django.test import Client

from cleanroom.datasets.models import Contribution, Erasure

CHROMIUM = "/usr/bin/chromium"
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture
def contributor_page(live_server: Any, consented: Any) -> Iterator[tuple[Any, Any]]:
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed")
    from playwright.sync_api import sync_playwright

    person = consented()
    client = Client()
    client.force_login(
        person.user
    )  # contributors sign in with a wallet; the session is what counts
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        context = browser.new_context(base_url=live_server.url)
        context.add_cookies(
            [{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": live_server.url}]
        )
        page = context.new_page()
        page.set_default_timeout(15_000)
        try:
            yield page, person
        finally:
            # ORM calls made while Playwright's loop runs get their own connection: close it,
            # or the test database cannot be dropped at the end of the session.
            connections.close_all()
            browser.close()


def test_contributor_uploads_and_erases_in_the_browser(
    contributor_page: tuple[Any, Any], dataset: Any, tmp_path: Path
) -> None:
    page, person = contributor_page
    bad = tmp_path / "bad.csv"
    bad.write_text("age,region,income,household_size,owns_home\n12,north,1,2,true\n")
    good = tmp_path / "good.csv"
    good.write_text("age,region,income,household_size,owns_home\n40,south,1200.5,2,false\n")

    page.goto("/datasets/households/")
    page.set_input_files("input[name=file]", str(bad))
    page.click("#upload button")
    assert "out of bounds: must be between 18 and 100" in page.inner_text("#upload-errors")
    assert Contribution.objects.count() == 0

    page.set_input_files("input[name=file]", str(good))
    page.click("#upload button")
    page.wait_for_selector("text=1 row(s) accepted, encrypted and stored.")
    assert Contribution.objects.filter(contributor=person).count() == 1

    page.goto("/my-data/")
    assert "households" in page.inner_text("#uploads")
    page.fill("input[name=confirm]", "erase")
    page.click("#rights form button")
    page.wait_for_selector("text=Your data key was destroyed")
    assert Erasure.objects.filter(contributor=person).count() == 1
    connections.close_all()
