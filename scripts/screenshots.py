"""Take the README's screenshots of the main pages of each role, on the demo world.

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots] [--population 10000]

Runs on a throwaway database made like the test database (from DATABASE_URL; PostgreSQL
recommended), seeds it with ``manage.py seed_demo``, serves it from a live server thread
and drives Debian's Chromium (/usr/bin/chromium) with Playwright at 1366 x 900. Signs in
each role with a session (the contributor is one of the demo's wallet-verified people).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"

# (file name, role, path, what to wait for)
SHOTS = [
    ("business-overview.png", "acme", "/", "#overview-balance"),
    ("business-new-query.png", "acme", "/queries/new/?dataset=households", "#query-form"),
    ("business-result.png", "acme", "/queries/{released}/", ".multiples svg"),
    ("business-catalog.png", "acme", "/datasets/", "table"),
    ("compliance-overview.png", "compliance", "/", "#overview-review"),
    ("compliance-policy-editor.png", "compliance", "/datasets/households/policy/", "#policy-form"),
    ("compliance-audit-log.png", "compliance", "/audit/", "table.events"),
    ("compliance-settlements.png", "compliance", "/money/settlements/", "#unpaid-explained"),
    ("contributor-dataset.png", "contributor", "/datasets/households/", "#consent"),
    ("contributor-my-data.png", "contributor", "/my-data/", "#rights"),
    ("contributor-earnings.png", "contributor", "/earnings/", "#how-paid"),
    ("join.png", "anonymous", "/join/", "#wallet-request"),
]


def main() -> None:
    parser = argparse.ArgumentParser(prog="scripts/screenshots.py")
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    parser.add_argument("--population", type=int, default=10_000)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cleanroom.settings")
    os.environ["CLEANROOM_DEMO_POPULATION"] = str(args.population)
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's loop
    import django

    django.setup()
    from django.conf import settings
    from django.test.utils import setup_databases, teardown_databases

    database = settings.DATABASES["default"]
    if not database["ENGINE"].endswith("sqlite3"):
        database.setdefault("TEST", {})["NAME"] = f"screenshots_{database['NAME']}"
    settings.ALLOWED_HOSTS = ["*"]
    config = setup_databases(verbosity=0, interactive=False)
    try:
        with tempfile.TemporaryDirectory() as var:
            settings.VAR_DIR = Path(var)
            shoot(Path(args.out))
    finally:
        teardown_databases(config, verbosity=0)


def shoot(out: Path) -> None:
    from django.conf import settings
    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.core.management import call_command
    from django.db import connections
    from django.test import Client
    from django.test.testcases import LiveServerThread
    from playwright.sync_api import sync_playwright

    from cleanroom.accounts.models import Contributor, User
    from cleanroom.queries import demo as queries_demo
    from cleanroom.queries.models import Query

    with open(os.devnull, "w") as quiet:
        call_command("seed_demo", stdout=quiet, stderr=quiet)
    released = Query.objects.get(sql=queries_demo.README_HOUSEHOLDS).pk
    contributor = (
        Contributor.objects.exclude(user__username__startswith="demo-population-")
        .order_by("pk")
        .first()
    )
    assert contributor is not None
    users = {
        "acme": User.objects.get(username="acme"),
        "compliance": User.objects.get(username="compliance"),
        "contributor": contributor.user,
    }
    cookies = {}
    for role, user in users.items():
        client = Client()
        client.force_login(user)
        cookies[role] = client.cookies[settings.SESSION_COOKIE_NAME].value
    connections.close_all()
    server = LiveServerThread("127.0.0.1", StaticFilesHandler)
    server.daemon = True
    server.start()
    server.is_ready.wait()
    if server.error:
        raise server.error
    base = f"http://127.0.0.1:{server.port}"
    out.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
            )
            for name, role, path, ready in SHOTS:
                context = browser.new_context(
                    base_url=base, viewport={"width": 1366, "height": 900}
                )
                if role in cookies:
                    context.add_cookies(
                        [
                            {
                                "name": settings.SESSION_COOKIE_NAME,
                                "value": cookies[role],
                                "url": base,
                            }
                        ]
                    )
                page = context.new_page()
                page.goto(path.format(released=released), wait_until="networkidle")
                page.wait_for_selector(ready)
                page.screenshot(path=str(out / name), full_page=False)
                context.close()
                print(f"{out / name}")
            browser.close()
    finally:
        server.terminate()


if __name__ == "__main__":
    main()
