"""Shared fixtures: accounts per role, API clients, and a real Celery worker process.

Job paths run through a real worker (`celery -A cleanroom worker`) on the broker
in CELERY_BROKER_URL (Redis in CI) against the test database: never eager mode.
Tests that use the worker need committed data, so they take `transactional_db`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from rest_framework.test import APIClient

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def fast_password_hasher(settings: Any) -> None:
    """PBKDF2 at production strength costs ~0.5 s an account; tests do not need it."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def fresh_cache(settings: Any) -> None:
    """A new in-memory cache per test: rate-limit counters never carry from one test to the
    next (the Redis cache is shared with the broker, so it is never flushed)."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": f"test-{os.getpid()}-{time.monotonic_ns()}",
        }
    }


@pytest.fixture
def compliance_user(db: Any) -> Any:
    from cleanroom.accounts.services import account_create

    return account_create(role="compliance", username="officer", password="officer-pass-1")


@pytest.fixture
def business_user(db: Any) -> Any:
    from cleanroom.accounts.services import account_create

    return account_create(
        role="business", username="analyst", password="analyst-pass-1", organization="Acme"
    )


@pytest.fixture
def other_business_user(db: Any) -> Any:
    from cleanroom.accounts.services import account_create

    return account_create(
        role="business", username="rival", password="rival-pass-1", organization="Rival Corp"
    )


@pytest.fixture
def make_contributor(db: Any) -> Any:
    """Create contributors by DID directly (the wallet flow is tested in tests/identity)."""
    from cleanroom.accounts.services import contributor_get_or_create

    counter = iter(range(1, 10**9))

    def make(did: str | None = None) -> Any:
        contributor, _ = contributor_get_or_create(
            did=did or f"did:example:contributor-{next(counter)}"
        )
        return contributor

    return make


@pytest.fixture
def contributor(make_contributor: Any) -> Any:
    return make_contributor()


def api_client_for(user: Any | None) -> APIClient:
    from cleanroom.accounts.services import token_for

    client = APIClient()
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Token {token_for(user=user)}")
    return client


@pytest.fixture
def api() -> Any:
    """`api(user)` returns a DRF test client authenticated with that user's token."""
    return api_client_for


def _database_url() -> str:
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"


class WorkerProcess:
    """A real `celery worker` subprocess; tests may kill and restart it."""

    def __init__(
        self, extra_env: dict[str, str] | None = None, extra_args: list[str] | None = None
    ) -> None:
        self.extra_env = extra_env or {}
        self.extra_args = extra_args or []  # e.g. ["-B", "-s", path]: beat inside the worker
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = Path(settings.VAR_DIR) / f"test-worker-{os.getpid()}.log"

    def start(self, **extra_env: str) -> None:
        env = {**os.environ, **self.extra_env, **extra_env, "DATABASE_URL": _database_url()}
        env["CELERY_BROKER_URL"] = settings.CELERY_BROKER_URL
        env.setdefault("CLEANROOM_TEST_WORKER", "1")
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "cleanroom",
                "worker",
                "--loglevel=INFO",
                "--concurrency=2",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--hostname",
                f"test-{os.getpid()}-{time.time_ns()}@%h",
                *self.extra_args,
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.wait_ready()

    def wait_ready(self, timeout: float = 60) -> None:
        from cleanroom.celery import app

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.poll() is None, self.log_tail()
            replies = app.control.ping(timeout=0.5)
            if replies:
                return
        raise RuntimeError(f"worker did not start:\n{self.log_tail()}")

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Kill the worker and its pool children at once (as a crashed machine would)."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


def restore_unacked() -> None:
    """What Redis does after the visibility timeout: put unacknowledged messages back,
    so a task whose worker was killed is redelivered now rather than in an hour."""
    from cleanroom.celery import app

    with app.connection_for_write() as connection:
        channel: Any = connection.default_channel
        if not hasattr(channel, "qos") or not hasattr(channel.qos, "restore_visible"):
            return  # not Redis: the broker redelivers by itself
        channel.visibility_timeout = 0
        channel.qos.restore_visible(num=1000, interval=1)


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup: Any, django_db_blocker: Any) -> Iterator[WorkerProcess]:
    """One real worker for the session, on the test database and the configured broker."""
    from cleanroom.celery import app

    app.control.purge()
    worker = WorkerProcess()
    worker.start()
    yield worker
    worker.stop()


@pytest.fixture
def worker(celery_worker_process: WorkerProcess, transactional_db: Any) -> WorkerProcess:
    """A running worker for a test that uses committed data."""
    if celery_worker_process.process is None or celery_worker_process.process.poll() is not None:
        celery_worker_process.start()
    return celery_worker_process


# ---------------------------------------------------------------- committed data and the worker


def wait_for(
    condition: Any,
    timeout: float = 30.0,
    what: str = "condition",
    worker: WorkerProcess | None = None,
) -> None:
    """Poll the database until `condition()` is true (the worker runs in another process);
    on time-out, fail with the worker's log when one is given."""
    from django.db import close_old_connections

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        close_old_connections()
        if condition():
            return
        time.sleep(0.1)
    log = f"\n{worker.log_tail()}" if worker is not None else ""
    raise AssertionError(f"timed out waiting for {what}{log}")


def _worker_busy() -> bool:
    """True while the session's worker has queued, reserved or running tasks."""
    from cleanroom.celery import app

    inspect = app.control.inspect(timeout=0.5)
    for report in (inspect.active() or {}, inspect.reserved() or {}):
        if any(report.values()):
            return True
    with app.connection_for_read() as connection:
        try:
            queued = connection.default_channel.queue_declare(
                queue=app.conf.task_default_queue, passive=True
            ).message_count
        except Exception:  # the broker has no such queue yet: nothing is waiting
            queued = 0
    return bool(queued)


@pytest.fixture(autouse=True)
def _quiet_worker_before_flush(request: Any) -> Any:
    """Let the real worker finish the jobs a committed-data test queued before the flush.

    Jobs queued on commit (compaction, erasure, audit checkpoints) would otherwise run
    while the test database is truncated, and the two deadlock.
    """
    committed = {"transactional_db", "live_server", "worker"} & set(request.fixturenames)
    if committed:
        request.getfixturevalue("transactional_db")
    yield
    if not committed:
        return
    import time

    from cleanroom.celery import app

    if not app.control.ping(timeout=0.3):
        return  # no worker in this session: the queued jobs wait in the broker
    deadline = time.monotonic() + 30
    while _worker_busy() and time.monotonic() < deadline:
        time.sleep(0.2)


CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright, one per test module.

    Playwright's sync API keeps an event loop in this thread, so Django's async-safety
    check is relaxed while (and only while) a browser module runs; a module scope keeps
    two Playwright instances from ever overlapping.
    """
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    from django.db import connections
    from playwright.sync_api import sync_playwright

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            launched = playwright.chromium.launch(
                executable_path=CHROMIUM,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )
            yield launched
            launched.close()
    finally:
        # ORM calls made while Playwright's loop ran may hold their own connections.
        connections.close_all()
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser: Any, live_server: Any) -> Iterator[Any]:
    """A fresh browser context on the live server (base_url set: `page.goto("/")`)."""
    context = browser.new_context(base_url=live_server.url)
    opened = context.new_page()
    opened.set_default_timeout(15_000)
    yield opened
    context.close()


def sign_in(page: Any, username: str, password: str) -> None:
    """Sign in through the portal form as a business or compliance user."""
    page.goto("/sign-in/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url("**/")
