"""Every portal page on the demo world, in Chromium: who may open it, and how it holds up.

One ``seed_demo`` world (a small synthetic population: the pools pass their minimum) and
real objects from it: a released query of each business, the commutes query waiting for
review, an audit entry, a dataset. Then:

- **Role matrix**: every page for anonymous, a contributor, the business that owns the
  object (Acme), another business (Globex) and compliance. The allowed role gets 200 and
  sees the page's content (a marker); every other gets a redirect to sign-in, 403 or 404
  and never the marker (another organization's SQL, a contributor's data).
- **Quality, at 1366 px and 390 px wide**, for every allowed (role, page): no horizontal
  overflow, axe-core (vendored, ``portal/static/vendor/axe-core``) finds no serious or
  critical violation, no console error, and no request leaves the server's origin.

The API docs pages are third-party UIs: they are checked for the network and the console,
not by axe.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.test import Client

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROLES = ("anonymous", "contributor", "acme", "globex", "compliance")
WIDTHS = (1366, 390)
AXE = "/static/vendor/axe-core/axe.min.js"


@dataclass
class Page:
    path: str
    allowed: tuple[str, ...]
    marker: str  # text only an allowed role may see
    axe: bool = True


@pytest.fixture
def demo(live_server: Any, settings: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The demo world (150 synthetic contributors) and its real objects."""
    from audit.models import AuditEvent
    from cleanroom.accounts.models import Contributor, User
    from cleanroom.queries import demo as queries_demo
    from cleanroom.queries.models import Query

    settings.VAR_DIR = tmp_path
    settings.ALLOWED_HOSTS = ["*"]
    monkeypatch.setenv("CLEANROOM_DEMO_POPULATION", "150")
    call_command("seed_demo", stdout=open("/dev/null", "w"))  # noqa: SIM115
    acme_query = Query.objects.get(sql=queries_demo.README_HOUSEHOLDS)
    globex_query = Query.objects.get(organization__name="Globex Research")
    pending = Query.objects.get(status="pending_approval")
    wallet_contributor = (
        Contributor.objects.exclude(user__username__startswith="demo-population-")
        .order_by("pk")
        .first()
    )
    assert wallet_contributor is not None
    users = {
        "contributor": wallet_contributor.user,
        "acme": User.objects.get(username="acme"),
        "globex": User.objects.get(username="globex"),
        "compliance": User.objects.get(username="compliance"),
    }
    event = AuditEvent.objects.filter(subject=f"query:{acme_query.pk}").order_by("seq").first()
    assert event is not None
    return {
        "users": users,
        "acme_query": acme_query,
        "globex_query": globex_query,
        "pending": pending,
        "event": event,
    }


def pages(demo: dict[str, Any]) -> list[Page]:
    acme, globex, pending = demo["acme_query"], demo["globex_query"], demo["pending"]
    everyone = ("contributor", "acme", "globex", "compliance")
    business_or_compliance = ("acme", "globex", "compliance")
    return [
        # A contributor's home is their data (a redirect to /my-data/).
        Page("/", ("anonymous", "acme", "globex", "compliance"), "Clean room"),
        Page("/sign-in/", ROLES, "Sign in"),
        Page("/join/", ROLES, "Join with your wallet"),
        Page("/datasets/", everyone, "Household budgets"),
        Page("/datasets/households/", everyone, "Household budgets"),
        Page("/datasets/households/policy/", ("compliance",), "Review the changes"),
        Page("/datasets/new/", ("compliance",), "Publish a dataset"),
        Page("/my-data/", ("contributor",), "Your rights"),
        Page("/earnings/", ("contributor",), "When and how you are paid"),
        Page("/queries/", business_or_compliance, "queries"),
        Page("/queries/new/", ("acme", "globex"), "New query"),
        Page(f"/queries/{acme.pk}/", ("acme", "compliance"), acme.sql.split(" FROM")[0]),
        Page(f"/queries/{globex.pk}/", ("globex", "compliance"), "WHERE age &gt;= 65"),
        Page(f"/queries/{pending.pk}/", ("acme", "compliance"), "GROUP BY mode"),
        Page("/queries/review/", ("compliance",), f"Query {pending.pk}"),
        Page("/queries/budget/households/", ("compliance",), "households"),
        Page("/billing/", ("acme", "globex"), "Balance"),
        Page("/money/distributions/", ("compliance",), "Distributions"),
        Page("/money/settlements/", ("compliance",), "could not be paid"),
        Page("/money/payouts/", ("compliance",), "Payouts"),
        Page("/money/reconciliation/", ("compliance",), "Reconciliation"),
        Page("/compliance/trusted-issuers/", ("compliance",), "Trusted issuers"),
        Page("/audit/", ("compliance",), "Newest first"),
        Page(f"/audit/events/{demo['event'].seq}/", ("compliance",), "Inclusion proof"),
        Page(f"/audit/queries/{acme.pk}/", ("compliance",), "Who ran it"),
        Page("/audit/budget/", ("compliance",), "Budget use"),
        Page("/audit/credentials/", ("compliance",), "Credential checks"),
        Page("/audit/verify/", ("compliance",), "The log verifies."),
        Page("/api/docs/", ROLES, "swagger-ui", axe=False),
        Page("/api/redoc/", ROLES, "redoc", axe=False),
    ]


def _cookie(user: Any) -> str:
    client = Client()
    client.force_login(user)
    return str(client.cookies[django_settings.SESSION_COOKIE_NAME].value)


@pytest.fixture
def contexts(browser: Any, live_server: Any, demo: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """One browser context per role, signed in (contributors sign in with a wallet: the
    session is what counts)."""
    made = {}
    for role in ROLES:
        context = browser.new_context(base_url=live_server.url)
        if role != "anonymous":
            context.add_cookies(
                [
                    {
                        "name": django_settings.SESSION_COOKIE_NAME,
                        "value": _cookie(demo["users"][role]),
                        "url": live_server.url,
                    }
                ]
            )
        made[role] = context
    yield made
    for context in made.values():
        context.close()


def test_role_matrix_on_every_page(contexts: dict[str, Any], demo: dict[str, Any]) -> None:
    problems = []
    for page in pages(demo):
        for role in ROLES:
            response = contexts[role].request.get(page.path, max_redirects=0)
            text = response.text()
            if role in page.allowed:
                if response.status != 200 or page.marker not in text:
                    problems.append(f"{role} {page.path}: {response.status}, marker missing")
            else:
                redirect_to_sign_in = response.status == 302 and response.headers.get(
                    "location", ""
                ).startswith("/sign-in/")
                expected = (
                    redirect_to_sign_in
                    if role == "anonymous"
                    else response.status
                    in (
                        302,
                        403,
                        404,
                    )
                )
                if not expected or page.marker in text:
                    problems.append(f"{role} {page.path}: {response.status} shows it")
    assert problems == []


def _check(page: Any, path: str, *, axe: bool, origin: str) -> list[str]:
    """Overflow, axe, console and network problems of one page as it is."""
    problems = []
    width = page.evaluate("document.documentElement.scrollWidth")
    viewport = page.evaluate("window.innerWidth")
    if width > viewport:
        wide = page.evaluate(
            """() => [...document.querySelectorAll('body *')]
                .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
                .slice(0, 3).map(e => e.tagName + '.' + e.className + '#' + e.id)"""
        )
        problems.append(f"{path} @{viewport}: {width} px wide ({wide})")
    if axe:
        page.add_script_tag(url=origin + AXE)
        found = page.evaluate(
            """async () => (await axe.run(document)).violations
                .filter(v => ['serious', 'critical'].includes(v.impact))
                .map(v => v.id + ': ' + v.nodes.slice(0, 2).map(n => n.target.join(' ')).join(' | '))"""
        )
        problems.extend(f"{path} @{viewport} axe {v}" for v in found)
    return problems


def _listen(page: Any, errors: list[str], origin: str) -> None:
    """Console errors, uncaught exceptions and any request to another origin."""

    def console(message: Any) -> None:
        if message.type == "error":
            errors.append(message.text)

    def request(sent: Any) -> None:
        if not sent.url.startswith((origin, "data:", "blob:", "about:")):
            errors.append(f"network: {sent.url}")

    page.on("console", console)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("request", request)


def test_every_page_fits_passes_axe_and_stays_offline_without_console_errors(
    contexts: dict[str, Any], demo: dict[str, Any], live_server: Any
) -> None:
    problems: list[str] = []
    for role in ROLES:
        browser_page = contexts[role].new_page()
        browser_page.set_default_timeout(20_000)
        errors: list[str] = []
        _listen(browser_page, errors, live_server.url)
        for page in pages(demo):
            if role not in page.allowed or (role != "compliance" and page.path.startswith("/api/")):
                continue  # the docs once, as compliance
            for width in WIDTHS:
                browser_page.set_viewport_size({"width": width, "height": 900})
                errors.clear()
                response = browser_page.goto(page.path, wait_until="networkidle")
                assert response is not None and response.status == 200, (role, page.path)
                problems.extend(
                    f"{role} {p}"
                    for p in _check(browser_page, page.path, axe=page.axe, origin=live_server.url)
                )
                problems.extend(f"{role} {page.path} @{width}: {e}" for e in errors)
        browser_page.close()
    assert problems == [], json.dumps(problems, indent=1)


def test_three_journeys_on_the_demo(
    browser: Any, live_server: Any, demo: dict[str, Any], contexts: dict[str, Any]
) -> None:
    """A business asks, compliance reviews and tightens a policy, a contributor withdraws:
    through the pages, in Chromium, on the demo world."""
    from cleanroom.datasets.models import Dataset
    from cleanroom.datasets.selectors import pool_size
    from cleanroom.queries.models import Query
    from tests.conftest import sign_in

    # Business: signs in with its password, lands on its overview, asks of commutes.
    business = browser.new_context(base_url=live_server.url).new_page()
    business.set_default_timeout(20_000)
    sign_in(business, "acme", "acme-demo-pass")
    assert "€" in business.inner_text("#overview-balance")
    business.goto("/queries/new/")
    business.select_option("select[name=dataset]", "commutes")
    business.wait_for_url("**/queries/new/?dataset=commutes")
    sql = business.input_value("textarea[name=sql]")
    assert "FROM commutes" in sql and "income" not in sql
    business.click("text=Preview cost and accuracy")
    business.wait_for_selector("#preview table")
    assert "Expected relative error" in business.inner_text("#preview")
    business.click("button[type=submit]")
    business.wait_for_selector(".status-pending_approval")
    asked = Query.objects.order_by("-pk").first()
    assert asked is not None and asked.status == "pending_approval"
    assert asked.sql.replace("\r\n", "\n") == sql  # a form sends CRLF line ends

    # Compliance: approves it from the review queue, then lowers a cap in the policy editor.
    officer = browser.new_context(base_url=live_server.url).new_page()
    officer.set_default_timeout(20_000)
    sign_in(officer, "compliance", "compliance-demo-pass")
    officer.goto("/queries/review/")
    officer.locator(f"form[action='/queries/{asked.pk}/approve/'] button").click()
    officer.wait_for_selector(f"text=Query {asked.pk} approved and queued.")
    asked.refresh_from_db()
    assert asked.status in ("queued", "running", "released")
    households = Dataset.objects.get(slug="households")
    pool = pool_size(dataset=households)
    officer.goto("/datasets/households/policy/")
    officer.fill("input[name='policy.max_query_epsilon']", "0.5")
    officer.click("text=Review the changes")
    review = officer.inner_text("#policy-review")
    assert "policy.max_query_epsilon" in review and "no new consent" in review
    officer.click("text=Apply")
    officer.wait_for_selector("text=Every contributor stays in the pool.")
    households.refresh_from_db()
    assert households.policy["max_query_epsilon"] == "0.5"
    assert pool_size(dataset=households) == pool

    # Contributor: withdraws behind the confirmation; the catalog then says so.
    person = contexts["contributor"].new_page()
    person.goto("/datasets/households/")
    person.click("#withdraw summary")
    assert "no query of Household budgets sees your rows" in person.inner_text("#withdraw")
    person.click("text=Yes, withdraw my consent")
    person.wait_for_selector("text=Consent withdrawn")
    person.goto("/datasets/")
    assert "withdrawn" in person.inner_text("table")
