"""Demo data of identity for `manage.py seed_demo`: a trusted demo issuer and contributors who
signed in through the real wallet and verification code (in-process), plus the commands a
person runs to join with their own wallet.

Idempotent: the demo issuer's key and the demo wallets' keys live under var/, so a second run
signs the same DIDs in again instead of creating new contributors.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from django.conf import settings

DEMO_CONTRIBUTORS = 6
COUNTRIES = ["NL", "DE", "FR", "BE", "ES", "IT"]


def _issuer_dir() -> Path:
    return Path(settings.VAR_DIR) / "demo-issuer"


def seed(*, stdout: Any = None) -> list[str]:
    from identity import publications, selectors, services
    from identity.issuer.core import PID_VCT, Issuer
    from identity.wallet.core import Wallet

    issuer_path = _issuer_dir() / "issuer.json"
    if issuer_path.exists():
        issuer = Issuer.load(issuer_path)
    else:
        issuer = Issuer.generate("Clean room demo personhood issuer")
        issuer.save(issuer_path)
    credential_type = settings.CLEANROOM_ONBOARDING_CREDENTIAL
    services.trusted_issuer_ensure(
        did=issuer.did, name=issuer.name, credential_types=[credential_type]
    )
    # The same demo issuer issues PID-like SD-JWT VCs as the service's /demo-issuer, which
    # publishes its metadata and Token Status List (identity.publications).
    if issuer.url != publications.demo_issuer_url() or issuer.token_status is None:
        issuer.url = publications.demo_issuer_url()
        issuer.token_status_create(
            uri=settings.CLEANROOM_ORIGIN.rstrip("/") + publications.STATUS_LIST_PATH
        )
        issuer.save(issuer_path)
    services.trusted_issuer_ensure(
        did=issuer.url, name=f"{issuer.name} (SD-JWT VC)", vcts=[PID_VCT]
    )

    keys_path = Path(settings.VAR_DIR) / "demo-wallet-keys.json"
    keys: list[str] = json.loads(keys_path.read_text()) if keys_path.exists() else []
    while len(keys) < DEMO_CONTRIBUTORS:
        keys.append(Wallet.generate().key)
    fd = os.open(keys_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(keys, handle)

    admitted = 0
    for number, key in enumerate(keys[:DEMO_CONTRIBUTORS]):
        wallet = Wallet(key=key)
        credential = issuer.issue(
            subject=wallet.did,
            credential_type=credential_type,
            claims={"ageOver18": True, "countryOfResidence": COUNTRIES[number % len(COUNTRIES)]},
            jwt=number % 2 == 1,  # both formats go through the pipeline
        )
        request = services.presentation_request_create()
        vp_token = wallet.present(selectors.request_object(request), credential=credential)
        services.presentation_submit(
            request_id=request.pk,
            body=json.dumps({"vp_token": vp_token}).encode(),
            content_type="application/json",
        )
        admitted += 1

    directory = _issuer_dir()
    origin = settings.CLEANROOM_ORIGIN
    return [
        f"Identity: {admitted} demo contributors signed in with their wallets; demo issuer "
        f"{issuer.did} is trusted for {credential_type} and, as {issuer.url}, for SD-JWT VC "
        f"{PID_VCT} (its keys: {directory}).",
        "Join as a new contributor with the command-line wallet:",
        "  export CLEANROOM_WALLET=var/my-wallet CLEANROOM_WALLET_PASSPHRASE='choose-a-passphrase'",
        "  cleanroom-wallet init",
        "  SD-JWT VC (OpenID4VP 1.0, discloses only age_equal_or_over.18):",
        f"  cleanroom-issuer --dir {directory} issue --format dc+sd-jwt --holder-jwk "
        f"\"$(cleanroom-wallet jwk)\" --given-name Ada --birthdate 1990-05-01 --status "
        f"--out var/my-pid.txt && cleanroom-wallet import var/my-pid.txt && cleanroom-wallet "
        f"login {origin}",
        "  W3C (JSON-LD):",
        f"  cleanroom-issuer --dir {directory} issue --subject "
        f"$(cleanroom-wallet did) --out var/my-credential.json && cleanroom-wallet import "
        f"var/my-credential.json && cleanroom-wallet login {origin}",
        f"  (or open {origin}/join/ and run `cleanroom-wallet present '<the openid4vp:// link>'`; "
        f"revoke with `cleanroom-issuer --dir {directory} revoke --token INDEX`)",
    ]
