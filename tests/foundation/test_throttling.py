"""Abuse: sign-in and anonymous presentation requests are rate-limited (issue 11).

Per client address and per account, 429 with Retry-After, lockouts audited; the 11th
wrong password in a minute from one address is refused while the right user from another
address still gets in. Run on both cache backends: the in-process one and Redis (what
gunicorn workers share).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.test import Client
from rest_framework.test import APIClient

from audit.models import AuditEvent
from cleanroom.throttling import SIGN_IN_PER_ACCOUNT, client_tag

TOKEN = "/api/v1/auth/token/"
ATTACKER, OWNER = "203.0.113.7", "198.51.100.20"


@pytest.fixture(autouse=True)
def clock_mid_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows are fixed: a test running across a window's edge would see its counters
    reset halfway (about one run in a hundred). The limiter's clock stands mid-window,
    30 s into a minute and 330 s into ten minutes."""
    import cleanroom.throttling

    monkeypatch.setattr(cleanroom.throttling, "_now", lambda: 600.0 * 3_000_000 + 330)


@pytest.fixture(params=["locmem", "redis"])
def cache_backend(request: Any, settings: Any) -> str:
    if request.param == "redis":
        broker = django_settings.CELERY_BROKER_URL
        if not broker.startswith("redis://"):
            pytest.skip("the broker is not Redis")
        settings.CACHES = {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": broker,
                "KEY_PREFIX": f"test-throttle-{uuid.uuid4().hex}",
            }
        }
    return str(request.param)


def token(address: str, username: str, password: str) -> Any:
    return APIClient(REMOTE_ADDR=address).post(
        TOKEN, {"username": username, "password": password}, format="json"
    )


@pytest.mark.django_db
def test_the_11th_wrong_password_in_a_minute_is_refused_and_the_owner_still_gets_in(
    cache_backend: str, business_user: Any
) -> None:
    for _ in range(10):
        assert token(ATTACKER, "analyst", "guess").status_code == 401

    refused = token(ATTACKER, "analyst", "guess")
    assert refused.status_code == 429
    assert refused["Content-Type"] == "application/problem+json"
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert refused.json()["type"] == "throttled"
    assert "try again in" in refused.json()["detail"]
    # Locked means locked: the right password from the attacker's address is refused too.
    assert token(ATTACKER, "analyst", "analyst-pass-1").status_code == 429

    owner = token(OWNER, "analyst", "analyst-pass-1")
    assert owner.status_code == 200
    assert owner.json()["role"] == "business"

    refusals = AuditEvent.objects.filter(action="accounts.sign_in.refused")
    assert refusals.count() == 10
    assert {e.subject for e in refusals} == {f"user:{business_user.pk}"}
    assert {e.payload["client"] for e in refusals} == {client_tag(ATTACKER)}
    assert {e.payload["reason"] for e in refusals} == {"wrong password"}
    lockouts = AuditEvent.objects.filter(action="accounts.sign_in.locked")
    assert lockouts.count() == 1  # the start of the lockout, not every refused attempt
    assert lockouts.get().payload["limit"] == "sign-in:client"
    entries = " ".join(e.entry for e in AuditEvent.objects.all())
    assert "guess" not in entries and "analyst-pass-1" not in entries
    assert ATTACKER not in entries


@pytest.mark.django_db
def test_portal_sign_in_is_limited_and_says_when_to_retry(business_user: Any) -> None:
    attacker = Client(REMOTE_ADDR=ATTACKER)
    for _ in range(10):
        page = attacker.post("/sign-in/", {"username": "analyst", "password": "guess"})
        assert page.status_code == 400
    refused = attacker.post("/sign-in/", {"username": "analyst", "password": "guess"})
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert "Too many failed sign-ins; try again in" in refused.content.decode()

    owner = Client(REMOTE_ADDR=OWNER).post(
        "/sign-in/", {"username": "analyst", "password": "analyst-pass-1"}
    )
    assert owner.status_code == 302
    channels = AuditEvent.objects.filter(action="accounts.sign_in.refused").values_list(
        "payload__channel", flat=True
    )
    assert list(channels) == ["portal"] * 10


@pytest.mark.django_db
def test_one_account_guessed_from_many_addresses_is_locked(business_user: Any) -> None:
    for number in range(SIGN_IN_PER_ACCOUNT.attempts):
        assert token(f"10.0.{number // 200}.{number % 200}", "analyst", "guess").status_code == 401
    assert token("10.9.9.9", "analyst", "analyst-pass-1").status_code == 429
    assert token("10.9.9.9", "officer-unknown", "whatever").status_code == 401
    locked = AuditEvent.objects.get(action="accounts.sign_in.locked")
    assert locked.payload["limit"] == "sign-in:account"
    assert locked.subject == f"user:{business_user.pk}"


@pytest.mark.django_db
def test_an_unknown_username_is_audited_without_the_name(db: Any) -> None:
    assert token(ATTACKER, "my-secret-password", "x").status_code == 401
    event = AuditEvent.objects.get(action="accounts.sign_in.refused")
    assert event.subject == "" and event.payload["reason"] == "unknown username"
    assert "my-secret-password" not in event.entry


@pytest.mark.django_db
def test_anonymous_presentation_requests_are_limited_per_address(cache_backend: str) -> None:
    client = APIClient(REMOTE_ADDR=ATTACKER)
    for _ in range(30):
        assert (
            client.post("/api/v1/identity/presentation-requests/", {}, format="json").status_code
            == 201
        )
    refused = client.post("/api/v1/identity/presentation-requests/", {}, format="json")
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60
    other = APIClient(REMOTE_ADDR=OWNER).post(
        "/api/v1/identity/presentation-requests/", {}, format="json"
    )
    assert other.status_code == 201
    assert AuditEvent.objects.filter(action="cleanroom.throttle.locked").count() == 1


@pytest.mark.django_db
def test_the_join_page_counts_against_the_same_limit(cache_backend: str) -> None:
    """Each visit to /join/ stores a presentation request: the page and the API share one
    counter per address, so neither is a way around the other."""
    from identity.models import PresentationRequest

    browser = Client(REMOTE_ADDR=ATTACKER)
    api = APIClient(REMOTE_ADDR=ATTACKER)
    for _ in range(15):
        assert browser.get("/join/").status_code == 200
        assert api.post("/api/v1/identity/presentation-requests/", {}, format="json").status_code == 201
    stored = PresentationRequest.objects.count()
    assert stored == 30
    refused = browser.get("/join/")
    assert refused.status_code == 429 and b"Too many" in refused.content
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert api.post("/api/v1/identity/presentation-requests/", {}, format="json").status_code == 429
    assert PresentationRequest.objects.count() == stored
    assert Client(REMOTE_ADDR=OWNER).get("/join/").status_code == 200
