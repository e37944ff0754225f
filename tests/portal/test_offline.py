"""Nothing in the portal fetches from the network at run time: the API docs (Swagger UI,
ReDoc) come from vendored static files, every page's scripts, styles and icons are ours."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from django.contrib.staticfiles import finders
from django.test import Client

ROOT = Path(__file__).resolve().parents[2]
EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["'](?:https?:)?//""", re.I)


def test_swagger_ui_and_redoc_are_served_from_our_static_files(db: Any) -> None:
    client = Client()
    docs = client.get("/api/docs/").content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in docs
    assert not EXTERNAL.search(docs), EXTERNAL.search(docs)
    script = client.get("/api/docs/?script=")
    assert script["Content-Type"].startswith("application/javascript")
    assert b"SwaggerUIBundle" in script.content and b"/api/v1/schema/" in script.content
    redoc = client.get("/api/redoc/").content.decode()
    assert '<script src="/api-reference/redoc.js">' in redoc
    assert not EXTERNAL.search(redoc) and "fonts.googleapis" not in redoc
    bundle = client.get("/api-reference/redoc.js").content
    assert b"Redoc" in bundle and b"cdn.redoc.ly" not in bundle
    for name in (
        "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js",
        "drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js",
        "portal/favicon.svg",
    ):
        assert finders.find(name), name


def test_no_template_loads_a_script_style_or_image_from_another_origin() -> None:
    offenders = []
    for folder in ("cleanroom", "audit", "payouts", "identity", "portal"):
        for path in (ROOT / folder).rglob("templates/**/*.html"):
            for line in path.read_text().splitlines():
                tag = re.search(r"<(script|link|img|iframe)\b[^>]*>", line, re.I)
                if tag and EXTERNAL.search(tag.group(0)):
                    offenders.append(f"{path.relative_to(ROOT)}: {tag.group(0)}")
    assert offenders == []


def test_every_page_has_the_favicon(db: Any) -> None:
    assert 'rel="icon" href="/static/portal/favicon.svg"' in Client().get("/").content.decode()
