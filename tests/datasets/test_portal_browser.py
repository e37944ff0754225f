"""A contributor in Chromium: consent, upload a CSV, see errors, dashboard, erase."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connections
from django.test import Client

from cleanroom.datasets.models import Contribution, Erasure


@pytest.fixture
def contributor_page(browser: Any, live_server: Any, consented: Any) -> Iterator[tuple[Any, Any]]:
    person = consented()
    client = Client()
    client.force_login(
        person.user
    )  # contributors sign in with a wallet; the session is what counts
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    context = browser.new_context(base_url=live_server.url)
    context.add_cookies(
        [{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": live_server.url}]
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        yield page, person
    finally:
        context.close()


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
    page.wait_for_selector("text=1 row accepted, encrypted and stored.")
    assert Contribution.objects.filter(contributor=person).count() == 1

    page.goto("/my-data/")
    assert "households" in page.inner_text("#uploads")
    page.fill("input[name=confirm]", "erase")
    page.click("#rights form button")
    page.wait_for_selector("text=Your data key was destroyed")
    assert Erasure.objects.filter(contributor=person).count() == 1
    connections.close_all()
