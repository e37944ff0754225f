"""The one adapter over didkit (archived upstream): keep it small so it can be replaced.

Everything didkit-specific lives here, and only signature work and DID resolution: trust,
expiry, holder binding, replay and revocation are decided by `identity.verification`.

What this module hides from callers (all checked on this machine with didkit 0.3.3):

- didkit's functions are coroutines that must be awaited inside a running event loop. We keep
  one persistent loop in a daemon thread per process and hand work to it; a fresh loop per
  call is several times slower.
- didkit must never be used in a process that later forks (its runtime's threads do not
  survive a fork: Celery prefork children and `gunicorn --preload` workers hang). So nothing
  here runs at import time: didkit itself is imported on first use, and a process that forks
  after using it gets a clear error in the child instead of a hang.
- Short-lived processes that used didkit can crash at interpreter exit. An `atexit` sleep,
  registered *before* didkit is imported so that it runs after everything else, avoids it.
- `verify_*` returns errors inside a JSON result rather than raising, and raises ValueError or
  DIDKitException on unreadable input: both become a list of error strings here.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

T = TypeVar("T")

# A didkit call that takes longer than this is treated as a backend failure (fail closed).
CALL_TIMEOUT_SECONDS = 20.0

_lock = threading.Lock()
_didkit: Any = None
_loop: asyncio.AbstractEventLoop | None = None
_loop_pid: int | None = None
_used_in_pid: int | None = None


class BackendError(Exception):
    """didkit could not be used (not a verdict on the input): callers fail closed."""


def _module() -> Any:
    global _didkit
    if _didkit is None:
        with _lock:
            if _didkit is None:
                # Registered before the import so that it runs last at exit (atexit is LIFO).
                atexit.register(time.sleep, 0.2)
                import didkit

                _didkit = didkit
    return _didkit


def _after_fork_in_child() -> None:
    global _loop, _loop_pid
    # The parent's loop thread does not exist in the child.
    _loop = None
    _loop_pid = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _event_loop() -> asyncio.AbstractEventLoop:
    global _loop, _loop_pid, _used_in_pid
    pid = os.getpid()
    if _used_in_pid is not None and _used_in_pid != pid:
        raise BackendError(
            "didkit was used in a parent process before it forked; it cannot run in the child. "
            "Do not verify credentials before forking (gunicorn --preload, Celery prefork)."
        )
    if _loop is None or _loop_pid != pid:
        with _lock:
            if _loop is None or _loop_pid != pid:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="didkit-loop", daemon=True)
                thread.start()
                _loop, _loop_pid = loop, pid
                atexit.register(_stop_loop, loop)
    _used_in_pid = pid
    return _loop


def _stop_loop(loop: asyncio.AbstractEventLoop) -> None:
    if loop.is_running():
        loop.call_soon_threadsafe(loop.stop)


def _run(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine on the persistent loop and wait for it from this (sync) thread."""
    _module()
    loop = _event_loop()

    async def wrapper() -> T:
        return await factory()

    future = asyncio.run_coroutine_threadsafe(wrapper(), loop)
    try:
        return future.result(CALL_TIMEOUT_SECONDS)
    except FutureTimeout as exc:
        future.cancel()
        raise BackendError("didkit did not answer in time.") from exc


def _errors_of(result_json: str) -> list[str]:
    result = json.loads(result_json)
    errors = result.get("errors")
    if not isinstance(errors, list):
        return ["the verification library returned no error list"]
    return [str(e) for e in errors]


def _options(purpose: str, *, jwt: bool, **extra: str) -> str:
    options: dict[str, str] = {"proofPurpose": purpose, **extra}
    if jwt:
        options["proofFormat"] = "jwt"
    return json.dumps(options)


def _serialize(document: dict[str, Any] | str) -> str:
    return document if isinstance(document, str) else json.dumps(document)


async def _verify_one(coroutine: Awaitable[str]) -> list[str]:
    try:
        return _errors_of(await coroutine)
    except Exception as exc:  # ValueError/DIDKitException: unreadable input is a failed check
        return [f"unreadable by the verification library: {exc}"]


# --- keys and DIDs -------------------------------------------------------------------------


def key_generate() -> str:
    """A new Ed25519 private key as a JWK (JSON text)."""
    return str(_module().generate_ed25519_key())


def key_did(jwk: str) -> str:
    """The did:key of a JWK."""
    return str(_module().key_to_did("key", jwk))


def key_verification_method(jwk: str) -> str:
    """The verification method id (did#fragment) of a JWK's did:key."""
    didkit = _module()
    return str(_run(lambda: didkit.key_to_verification_method("key", jwk)))


@lru_cache(maxsize=4096)
def did_resolve(did: str) -> dict[str, Any]:
    """The DID document (did:key resolution is local: no network). Raises BackendError."""
    didkit = _module()

    async def resolve() -> str:
        return str(await didkit.resolve_did(did, "{}"))

    try:
        document = json.loads(_run(resolve))
    except BackendError:
        raise
    except Exception as exc:
        raise BackendError(f"could not resolve {did}: {exc}") from exc
    if not isinstance(document, dict):
        raise BackendError(f"could not resolve {did}")
    return document


# --- issuing (wallet and issuer) -----------------------------------------------------------


def credential_issue(
    credential: dict[str, Any], *, key: str, verification_method: str, jwt: bool = False
) -> dict[str, Any] | str:
    """Sign a credential: a JSON-LD document with a proof, or a JWT string."""
    didkit = _module()
    options = _options("assertionMethod", jwt=jwt, verificationMethod=verification_method)
    signed = str(_run(lambda: didkit.issue_credential(json.dumps(credential), options, key)))
    return signed if jwt else json.loads(signed)


def presentation_issue(
    presentation: dict[str, Any],
    *,
    key: str,
    verification_method: str,
    challenge: str,
    domain: str,
    jwt: bool = False,
) -> dict[str, Any] | str:
    """Sign a presentation for a verifier's challenge (nonce) and domain."""
    didkit = _module()
    options = _options(
        "authentication",
        jwt=jwt,
        verificationMethod=verification_method,
        challenge=challenge,
        domain=domain,
    )
    signed = str(_run(lambda: didkit.issue_presentation(json.dumps(presentation), options, key)))
    return signed if jwt else json.loads(signed)


# --- verifying -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SignatureReport:
    """Errors per document; an empty list means the signature checked out."""

    presentation: list[str]
    credentials: list[list[str]]

    @property
    def ok(self) -> bool:
        return not self.presentation and not any(self.credentials)


def signatures_verify(
    *,
    presentation: dict[str, Any] | str,
    challenge: str,
    domain: str,
    credentials: list[dict[str, Any] | str],
) -> SignatureReport:
    """Check the presentation's proof (always with challenge and domain) and every credential's.

    didkit's verify_presentation does not check the credentials inside, so each is verified
    separately; all calls run concurrently in one hop to the loop.
    """
    didkit = _module()

    async def verify_all() -> SignatureReport:
        jobs = [
            _verify_one(
                didkit.verify_presentation(
                    _serialize(presentation),
                    _options(
                        "authentication",
                        jwt=isinstance(presentation, str),
                        challenge=challenge,
                        domain=domain,
                    ),
                )
            )
        ]
        for credential in credentials:
            jobs.append(
                _verify_one(
                    didkit.verify_credential(
                        _serialize(credential),
                        _options("assertionMethod", jwt=isinstance(credential, str)),
                    )
                )
            )
        results = await asyncio.gather(*jobs)
        return SignatureReport(presentation=results[0], credentials=list(results[1:]))

    return _run(verify_all)


def credential_verify(credential: dict[str, Any] | str) -> list[str]:
    """Errors of one credential's signature (empty when it checks out)."""
    didkit = _module()
    options = _options("assertionMethod", jwt=isinstance(credential, str))
    return _run(lambda: _verify_one(didkit.verify_credential(_serialize(credential), options)))


def presentation_verify_bare(
    presentation: dict[str, Any] | str, *, challenge: str, domain: str
) -> list[str]:
    """didkit's own presentation check alone (the bench baseline; not enough by itself)."""
    didkit = _module()
    options = _options(
        "authentication", jwt=isinstance(presentation, str), challenge=challenge, domain=domain
    )
    return _run(lambda: _verify_one(didkit.verify_presentation(_serialize(presentation), options)))


def is_loaded() -> bool:
    """Whether didkit was imported in this process (tests check imports stay lazy)."""
    return _didkit is not None
