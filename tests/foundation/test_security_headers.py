"""Security headers read from a live server, and templates the policy can serve (issue 11).

The Content-Security-Policy allows no inline script and no <style> element, forbids
framing (frame-ancestors 'none'); Referrer-Policy, nosniff and X-Frame-Options come with
it. Only the API docs pages (Swagger UI, ReDoc: inline styles, a blob: worker) get a
wider policy, and no other origin.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

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
    assert "'unsafe-inline'" not in headers["Content-Security-Policy"].split("style-src-attr")[0]
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


TEMPLATES = sorted(
    path
    for folder in ("cleanroom", "audit", "payouts", "identity", "portal")
    for path in (ROOT / folder).rglob("templates/**/*.html")
)


def test_no_template_has_inline_script_or_style_elements() -> None:
    assert len(TEMPLATES) > 20
    offenders = []
    for path in TEMPLATES:
        text = path.read_text()
        if re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text):
            offenders.append(f"{path.relative_to(ROOT)}: inline <script>")
        if re.search(r"<style\b", text):
            offenders.append(f"{path.relative_to(ROOT)}: <style> element")
        if re.search(r"\son[a-z]+\s*=", text):
            offenders.append(f"{path.relative_to(ROOT)}: inline event handler")
    assert offenders == []
