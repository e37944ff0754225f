"""Navigation fits one line: compliance's twelve pages come in a few named groups."""

from __future__ import annotations

import re
from typing import Any

from django.test import Client


def _nav(user: Any) -> str:
    client = Client()
    client.force_login(user)
    page = client.get("/datasets/").content.decode()
    return page[page.index('<nav aria-label="Main">') : page.index("</nav>")]


def test_compliance_pages_are_grouped_and_all_still_reachable(compliance_user: Any) -> None:
    nav = _nav(compliance_user)
    groups = re.findall(r"<summary>([^<]+)</summary>", nav)
    assert groups == ["Datasets", "Queries", "Audit", "Money"]
    links = re.findall(r'<a href="([^"]+)"', nav)
    assert len(links) == 12
    for url in ("/queries/review/", "/money/settlements/", "/audit/verify/", "/datasets/new/"):
        assert url in links
    # Top level: four menus, no loose links left to wrap the bar.
    top = re.sub(r"<details.*?</details>", "", nav, flags=re.S)
    assert "<a " not in top
    assert 'class="menu active"><summary>Datasets</summary>' in nav  # on /datasets/


def test_a_business_with_few_pages_keeps_plain_links(business_user: Any) -> None:
    nav = _nav(business_user)
    assert "<details" not in nav
    assert re.findall(r">([^<]+)</a>", nav) == ["Datasets", "New query", "My queries", "Billing"]
    assert 'aria-current="page">Datasets</a>' in nav
