"""Rate limits on what anyone may try: sign-in and anonymous presentation requests.

Counters live in Django's cache, which is Redis whenever the broker is (or ``CACHE_URL``
says so), so a limit holds across every gunicorn worker; each counter is a fixed window
(``limit.window`` seconds) keyed by a hash of what it counts (a client address, an
account name), so no address or name is written to the cache in the clear.

A request over a limit answers 429 with ``Retry-After`` (``Throttled``, a DomainError);
the first refusal of a window is the moment a lockout begins, which callers audit.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

from cleanroom.errors import DomainError


@dataclass(frozen=True)
class Limit:
    scope: str
    attempts: int
    window: int  # seconds


# Wrong passwords from one client address: the 11th in a minute is refused.
SIGN_IN_PER_CLIENT = Limit("sign-in:client", 10, 60)
# Wrong passwords for one account from anywhere: high enough that an attacker at one
# address cannot lock the owner out, low enough to stop a guessing botnet.
SIGN_IN_PER_ACCOUNT = Limit("sign-in:account", 50, 600)
# Anonymous presentation requests (each stores a nonce) from one client address.
PRESENTATION_REQUESTS_PER_CLIENT = Limit("presentation-request:client", 30, 60)


class Throttled(DomainError):
    status_code = 429
    title = "Too many requests"
    type = "throttled"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


def client_address(request: HttpRequest) -> str:
    """The client's address: REMOTE_ADDR, or the header a trusted proxy sets
    (``CLEANROOM_CLIENT_ADDRESS_HEADER``, e.g. HTTP_X_REAL_IP), never a client's claim."""
    header = getattr(settings, "CLEANROOM_CLIENT_ADDRESS_HEADER", "")
    if header and request.META.get(header):
        return str(request.META[header]).split(",")[0].strip()
    return str(request.META.get("REMOTE_ADDR") or "unknown")


def client_tag(address: str) -> str:
    """A keyed hash of a client address: refusals from one client can be told apart in
    the audit log without the log holding the address (personal data)."""
    key = settings.SECRET_KEY.encode()
    return "client:" + hmac.new(key, address.encode(), hashlib.sha256).hexdigest()[:16]


def _now() -> float:
    """The clock windows are counted on (tests hold it mid-window)."""
    return time.time()


def _key(limit: Limit, subject: str, now: float) -> tuple[str, int]:
    digest = hashlib.sha256(f"{limit.scope}\0{subject}".encode()).hexdigest()[:32]
    window = int(now // limit.window)
    retry_after = max(1, int((window + 1) * limit.window - now + 0.999))
    return f"throttle:{limit.scope}:{digest}:{window}", retry_after


def throttle_wait(limit: Limit, subject: str) -> int:
    """Seconds until `subject` may try again under `limit`; 0 if it may now."""
    key, retry_after = _key(limit, subject, _now())
    return retry_after if int(cache.get(key) or 0) >= limit.attempts else 0


def throttle_hit(limit: Limit, subject: str) -> int:
    """Count one attempt; returns the count in this window (limit.attempts + 1 and above
    are refused by `throttle_wait`)."""
    key, _ = _key(limit, subject, _now())
    cache.add(key, 0, timeout=limit.window + 1)
    try:
        return int(cache.incr(key))
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=limit.window + 1)
        return 1


def throttle_first_refusal(limit: Limit, subject: str) -> bool:
    """True once per window, for the first refused attempt: when a lockout begins."""
    key, _ = _key(limit, subject, _now())
    return bool(cache.add(key + ":locked", 1, timeout=limit.window + 1))


def throttle_request(request: HttpRequest, limit: Limit) -> None:
    """Count this request against `limit` for its client address: ``Throttled`` (429) once
    over it. The first refusal of a window is audited as ``cleanroom.throttle.locked``."""
    from audit.services import audit_record

    address = client_address(request)
    wait = throttle_wait(limit, address)
    if wait:
        if throttle_first_refusal(limit, address):
            audit_record(
                action="cleanroom.throttle.locked",
                actor=None,
                payload={"limit": limit.scope, "client": client_tag(address), "retry_after": wait},
            )
        raise Throttled(f"Too many requests; try again in {wait} seconds.", retry_after=wait)
    throttle_hit(limit, address)
