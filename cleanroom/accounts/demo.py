"""Demo accounts: a compliance officer, a business with a token, a second business, and a
synthetic population of contributors.

The population (``DEMO_POPULATION`` people, each known by a did:key made from a freshly
generated Ed25519 key) is created through the bulk path so that the demo pools are large
enough for useful answers; the wallet-verified demo contributors come from the identity
demo, through the real presentation pipeline.
"""

from __future__ import annotations

import os
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from cleanroom.accounts.models import Contributor, User
from cleanroom.accounts.services import account_create, contributors_bulk_create, token_for

DEMO_COMPLIANCE = ("compliance", "compliance-demo-pass")
DEMO_BUSINESS = ("acme", "acme-demo-pass", "Acme Analytics")
DEMO_OTHER_BUSINESS = ("globex", "globex-demo-pass", "Globex Research")
DEMO_POPULATION = 10_000
POPULATION_PREFIX = "demo-population"
_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _base58(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    out = ""
    while number:
        number, digit = divmod(number, 58)
        out = _BASE58[digit] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def did_key_new() -> str:
    """A did:key of a new Ed25519 key (multicodec 0xed01, base58btc); the key is dropped."""
    public = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return "did:key:z" + _base58(b"\xed\x01" + public)


def population() -> list[Contributor]:
    """The synthetic demo contributors, oldest first."""
    return list(
        Contributor.objects.filter(user__username__startswith=f"{POPULATION_PREFIX}-")
        .select_related("user")
        .order_by("pk")
    )


def population_count() -> int:
    return Contributor.objects.filter(user__username__startswith=f"{POPULATION_PREFIX}-").count()


def population_size() -> int:
    """How many synthetic contributors to seed: ``CLEANROOM_DEMO_POPULATION`` or the default."""
    return int(os.environ.get("CLEANROOM_DEMO_POPULATION") or DEMO_POPULATION)


def population_ensure(size: int | None = None) -> int:
    """Create the synthetic population (once); returns how many were created now."""
    size = population_size() if size is None else size
    if Contributor.objects.filter(user__username__startswith=f"{POPULATION_PREFIX}-").exists():
        return 0
    contributors_bulk_create(
        dids=[did_key_new() for _ in range(size)], username_prefix=POPULATION_PREFIX
    )
    return size


def seed(*, stdout: Any = None) -> list[str]:
    if not User.objects.filter(username=DEMO_COMPLIANCE[0]).exists():
        account_create(role="compliance", username=DEMO_COMPLIANCE[0], password=DEMO_COMPLIANCE[1])
    if not User.objects.filter(username=DEMO_BUSINESS[0]).exists():
        account_create(
            role="business",
            username=DEMO_BUSINESS[0],
            password=DEMO_BUSINESS[1],
            organization=DEMO_BUSINESS[2],
        )
    if not User.objects.filter(username=DEMO_OTHER_BUSINESS[0]).exists():
        account_create(
            role="business",
            username=DEMO_OTHER_BUSINESS[0],
            password=DEMO_OTHER_BUSINESS[1],
            organization=DEMO_OTHER_BUSINESS[2],
        )
    created = population_ensure()
    business = User.objects.get(username=DEMO_BUSINESS[0])
    return [
        f"Compliance officer: {DEMO_COMPLIANCE[0]} / {DEMO_COMPLIANCE[1]}",
        f"Business ({DEMO_BUSINESS[2]}): {DEMO_BUSINESS[0]} / {DEMO_BUSINESS[1]}"
        f"  API token: {token_for(user=business)}",
        f"Business ({DEMO_OTHER_BUSINESS[2]}): {DEMO_OTHER_BUSINESS[0]} / {DEMO_OTHER_BUSINESS[1]}",
        f"Contributors: {population_count()} synthetic demo contributors"
        + (f" ({created} created now)" if created else "")
        + " (bulk-seeded; wallet-verified ones follow).",
    ]
