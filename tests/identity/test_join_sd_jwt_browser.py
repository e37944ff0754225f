"""In a real Chromium: a contributor with an SD-JWT VC wallet joins from the /join/ QR code's
openid4vp:// link, disclosing only the age predicate, and this browser is signed in."""

from __future__ import annotations

import json
from datetime import date

import httpx
import pytest

from cleanroom.accounts.models import Contributor
from identity import jose, sdjwt, services
from identity.issuer.core import PID_VCT, Issuer
from identity.models import ContributorCredential
from identity.wallet import core as wallet_core
from identity.wallet.core import Wallet, present_url

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_join_with_an_sd_jwt_wallet_disclosing_only_an_age_predicate(page, live_server, settings, monkeypatch):
    settings.CLEANROOM_ORIGIN = live_server.url
    issuer = Issuer.generate(name="PID issuer")
    services.trusted_issuer_create(did=issuer.sd_jwt_issuer, name="PID issuer", vcts=[PID_VCT], actor=None)
    wallet = Wallet.generate()
    wallet.credential_import(
        issuer.issue_sd_jwt(holder_jwk=wallet.holder_jwk, given_name="Ada", birthdate=date(1988, 3, 9))
    )

    page.goto("/join/")
    assert page.locator("#wallet-request svg").count() == 1
    assert page.locator("#disclosed-claims").inner_text() == "age_equal_or_over.18"
    link = page.locator("#wallet-link").get_attribute("href")
    assert link.startswith("openid4vp://authorize?client_id=decentralized_identifier%3Adid%3Ajwk%3A")
    assert page.locator("#wallet-link-command").inner_text() == f"cleanroom-wallet present '{link}'"

    sent: list[str] = []
    real_post = wallet_core.response_post

    def spy(request, vp_token, *, client):
        sent.extend(p for presentations in vp_token.values() for p in presentations)
        return real_post(request, vp_token, client=client)

    monkeypatch.setattr(wallet_core, "response_post", spy)
    with httpx.Client(timeout=30) as client:
        outcome = present_url(wallet, link, client=client)
    assert outcome.verified, outcome.body

    page.wait_for_url(live_server.url + "/my-data/", timeout=15_000)  # a contributor lands on their data
    assert page.locator(".role").inner_text() == "contributor"
    assert "you are signed in as a contributor" in page.locator(".messages").inner_text()
    # What left the wallet: the age predicate only; what the service kept: type, issuer, expiry, hash.
    [presentation] = sent
    assert {path for path, _ in sdjwt.disclosure_paths(presentation).values()} == {
        ("age_equal_or_over",),
        ("age_equal_or_over", "18"),
    }
    contributor = Contributor.objects.get()
    assert contributor.did == jose.did_jwk(wallet.holder_jwk)
    kept = ContributorCredential.objects.get()
    assert (kept.credential_type, kept.issuer_did) == (PID_VCT, issuer.sd_jwt_issuer)


def test_the_installed_wallet_command_answers_the_join_link(page, live_server, settings, tmp_path):
    """The same journey with the `cleanroom-wallet` program people run (a separate process,
    its own key file), not the library: init, import, then `present` the link the page shows."""
    import os
    import shutil
    import subprocess

    program = shutil.which("cleanroom-wallet")
    assert program, "the project installs the cleanroom-wallet command"
    settings.CLEANROOM_ORIGIN = live_server.url
    issuer = Issuer.generate(name="PID issuer")
    services.trusted_issuer_create(did=issuer.sd_jwt_issuer, name="PID issuer", vcts=[PID_VCT], actor=None)
    env = {**os.environ, "CLEANROOM_WALLET_PASSPHRASE": "correct horse battery staple"}
    home = str(tmp_path / "wallet")

    def run(*args: str) -> str:
        done = subprocess.run(
            [program, "--wallet", home, *args], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    run("init")
    holder_jwk = json.loads(run("jwk"))
    credential = tmp_path / "pid.txt"
    credential.write_text(
        issuer.issue_sd_jwt(holder_jwk=holder_jwk, given_name="Ada", birthdate=date(1988, 3, 9))
    )
    assert f"Imported credential 1: {PID_VCT}" in run("import", str(credential))

    page.goto("/join/")
    link = page.locator("#wallet-link").get_attribute("href")
    assert link.startswith("openid4vp://authorize?")
    printed = run("present", link)
    assert "Verified" in printed, printed

    page.wait_for_url(live_server.url + "/my-data/", timeout=15_000)
    assert page.locator(".role").inner_text() == "contributor"
    assert Contributor.objects.get().did == jose.did_jwk(holder_jwk)
