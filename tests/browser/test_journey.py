"""The whole product in one real Chromium run, through a real worker.

A business previews and submits SQL, watches it run, reads noisy results with
intervals and a chart; a compliance officer then reads that query's full story
(who ran it, the budget charge, the release, the money) and sees the log verify.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.conftest import sign_in
from tests.queries.conftest import pool_dataset  # noqa: F401 (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.worker]

SQL = "SELECT region, COUNT(*) AS n, AVG(income) AS mean_income FROM households GROUP BY region"


def test_business_query_to_compliance_story(
    browser: Any,
    live_server: Any,
    worker: Any,
    pool_dataset: Any,  # noqa: F811
    business_user: Any,
    compliance_user: Any,
    tmp_path: Any,
) -> None:
    from cleanroom.queries.models import Query

    pool_dataset(contributors=12)

    business = browser.new_context(base_url=live_server.url).new_page()
    business.set_default_timeout(30_000)
    sign_in(business, "analyst", "analyst-pass-1")
    business.click("nav >> text=New query")
    business.fill("textarea[name=sql]", SQL)
    business.fill("input[name=epsilon]", "1")
    business.click("text=Preview cost and accuracy")
    business.wait_for_selector("#preview table, #preview .error")
    preview = business.inner_text("#preview")
    assert "€11.50" in preview  # price: 1.50 + 10 x epsilon 1
    assert Query.objects.count() == 0  # a preview spends nothing

    business.click("button[type=submit]")
    business.wait_for_url(re.compile(r".*/queries/\d+/$"))
    business.wait_for_selector(".status-released")
    rows = business.locator("table.result tbody tr")
    assert rows.count() == 4
    assert business.locator("table.result small").count() >= 8  # an interval per cell
    assert business.locator(".multiples svg").count() == 2  # a chart per aggregate (n, mean)
    business.screenshot(path=str(tmp_path / "result.png"), full_page=True)
    query = Query.objects.get()
    assert query.status == "released"

    officer = browser.new_context(base_url=live_server.url).new_page()
    officer.set_default_timeout(30_000)
    sign_in(officer, "officer", "officer-pass-1")
    officer.goto(f"/audit/queries/{query.pk}/")
    story = officer.inner_text("main")
    for step in ("submitted", "budget", "released", "charged"):
        assert step in story.lower(), step
    officer.goto("/audit/verify/")
    verdict = officer.inner_text("main")
    assert "The log verifies." in verdict and "does not verify" not in verdict
