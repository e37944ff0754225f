"""Security headers read from a live server, and pages the policy can serve (issue 11).

The portal's Content-Security-Policy has no 'unsafe-inline' at all: no inline script, no
<style> element, no style attribute; it forbids framing (frame-ancestors 'none');
Referrer-Policy, nosniff and X-Frame-Options come with it. Only the API docs pages
(Swagger UI, ReDoc: inline styles, a blob: worker) get a wider policy, and no other origin.
Every portal page, rendered for every role on the demo world, is checked for what the
policy would refuse: a browser would drop it silently (a bar with no width).
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from cleanroom.middleware import CONTENT_SECURITY_POLICY

ROOT = Path(__file__).resolve().parents[2]


def fetch(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.headers
    except urllib.error.HTTPError as error:
        return error.code, error.headers


def directives(policy: str) -> dict[str, list[str]]:
    out = {}
    for part in policy.split(";"):
        name, *values = part.split()
        out[name] = values
    return out


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("path", "status"),
    [("/", 200), ("/sign-in/", 200), ("/api/v1/datasets/", 401), ("/no-such-page/", 404)],
)
def test_every_response_carries_the_policy(live_server: Any, path: str, status: int) -> None:
    code, headers = fetch(live_server.url + path)
    assert code == status
    policy = directives(headers["Content-Security-Policy"])
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["object-src"] == ["'none'"] and policy["base-uri"] == ["'none'"]
    assert "'unsafe-inline'" not in headers["Content-Security-Policy"]
    assert "style-src-attr" not in policy and "style-src-elem" not in policy
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.django_db(transaction=True)
def test_api_docs_load_nothing_from_another_origin(live_server: Any) -> None:
    """Swagger UI and ReDoc come from our static files (drf-spectacular-sidecar)."""
    for path in ("/api/docs/", "/api/redoc/"):
        code, headers = fetch(live_server.url + path)
        assert code == 200, path
        policy = directives(headers["Content-Security-Policy"])
        assert policy["script-src"] == ["'self'"]
        assert not [v for values in policy.values() for v in values if "://" in v]
        assert policy["frame-ancestors"] == ["'none'"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("production", [False, True])
def test_sign_in_cookies_are_http_only_same_site_and_secure_in_production(
    live_server: Any, settings: Any, compliance_user: Any, production: bool
) -> None:
    """Read off a live sign-in: the session cookie is HttpOnly and SameSite=Lax, both
    cookies are Secure when production sets SESSION_COOKIE_SECURE / CSRF_COOKIE_SECURE
    (docker/compose.yaml does), and the CSRF cookie is SameSite=Lax."""
    import http.cookiejar
    import urllib.parse

    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = production
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    with opener.open(live_server.url + "/sign-in/", timeout=30) as page:
        html = page.read().decode()
        set_cookies = page.headers.get_all("Set-Cookie") or []
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert token is not None
    csrf = next(c for c in set_cookies if c.startswith("csrftoken="))
    cookie = csrf.split(";", 1)[0]
    form = urllib.parse.urlencode(
        {"username": "officer", "password": "officer-pass-1", "csrfmiddlewaretoken": token[1]}
    ).encode()
    request = urllib.request.Request(
        live_server.url + "/sign-in/",
        data=form,
        headers={"Cookie": cookie, "Referer": live_server.url + "/sign-in/"},
    )
    no_redirects = urllib.request.build_opener(NoRedirect)
    try:
        no_redirects.open(request, timeout=30)
        raise AssertionError("a signed-in browser is sent on")
    except urllib.error.HTTPError as answer:
        assert answer.code == 302
        session = next(c for c in answer.headers.get_all("Set-Cookie") if c.startswith("sessionid="))
    flags = {part.strip().lower() for part in session.split(";")[1:]}
    assert "httponly" in flags and "samesite=lax" in flags
    assert ("secure" in flags) is production
    csrf_flags = {part.strip().lower() for part in csrf.split(";")[1:]}
    assert "samesite=lax" in csrf_flags and ("secure" in csrf_flags) is production


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


TEMPLATES = sorted(
    path
    for folder in ("cleanroom", "audit", "payouts", "identity", "portal")
    for path in (ROOT / folder).rglob("templates/**/*.html")
)


def test_no_template_has_inline_script_or_style() -> None:
    assert len(TEMPLATES) > 20
    offenders = []
    for path in TEMPLATES:
        text = path.read_text()
        if re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text):
            offenders.append(f"{path.relative_to(ROOT)}: inline <script>")
        if re.search(r"<style\b", text):
            offenders.append(f"{path.relative_to(ROOT)}: <style> element")
        if re.search(r"\sstyle\s*=", text):
            offenders.append(f"{path.relative_to(ROOT)}: style attribute")
        if re.search(r"\son[a-z]+\s*=", text):
            offenders.append(f"{path.relative_to(ROOT)}: inline event handler")
    assert offenders == []


class InlineStyles(HTMLParser):
    """Collects the elements a policy without 'unsafe-inline' refuses to style."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "style":
            self.found.append("<style> element")
        self.found.extend(f'<{tag} style="{value}">' for name, value in attrs if name == "style")


def inline_styles(html: str) -> list[str]:
    parser = InlineStyles()
    parser.feed(html)
    parser.close()
    return parser.found


@pytest.fixture
def demo_world(settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The demo world (150 synthetic contributors), a query part-way through its run, and
    the objects the browser tests' page list needs."""
    from cleanroom.queries.models import Query
    from tests.browser.test_every_page import _demo_objects, _seed

    settings.VAR_DIR = tmp_path
    monkeypatch.setenv("CLEANROOM_DEMO_POPULATION", "150")
    _seed()
    world = _demo_objects()  # the same objects the page list names
    running = world["pending"]
    Query.objects.filter(pk=running.pk).update(status="running", progress=40)
    return world


@pytest.mark.django_db
@pytest.mark.slow
def test_no_portal_page_renders_a_style_attribute_or_element(demo_world: dict[str, Any]) -> None:
    """Every page of the browser tests' list, for every role (403 and 404 pages included),
    and the query status fragment htmx polls: whatever the portal policy serves."""
    from tests.browser.test_every_page import ROLES, pages

    running = demo_world["pending"]
    fragment = f"/queries/{running.pk}/status/"
    paths = [page.path for page in pages(demo_world)]
    checked = 0
    offenders: list[str] = []
    for role in ROLES:
        client = Client()
        if role != "anonymous":
            client.force_login(demo_world["users"][role])
        responses = [(path, client.get(path)) for path in paths]
        responses.append((fragment, client.get(fragment, HTTP_HX_REQUEST="true")))
        for path, response in responses:
            if response.get("Content-Security-Policy") != CONTENT_SECURITY_POLICY:
                continue  # the API docs pages, under their own policy
            if not response["Content-Type"].startswith("text/html"):
                continue
            checked += 1
            found = inline_styles(response.content.decode())
            offenders.extend(f"{role} {path} ({response.status_code}): {f}" for f in found)
    assert checked > 100
    assert offenders == []
    # The polled fragment still says how far the query is.
    client = Client()
    client.force_login(demo_world["users"]["acme"])
    polled = client.get(fragment, HTTP_HX_REQUEST="true").content.decode()
    assert 'role="progressbar"' in polled and 'aria-valuenow="40"' in polled
