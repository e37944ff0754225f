"""In a real Chromium: the join page shows the QR code, polls, and signs in when the wallet answers."""

from __future__ import annotations

import httpx
import pytest

from identity import services
from identity.issuer.core import Issuer
from identity.wallet.core import Wallet, present_url

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_join_with_a_wallet_in_the_browser(page, live_server, settings):
    settings.CLEANROOM_ORIGIN = live_server.url
    issuer = Issuer.generate()
    services.trusted_issuer_create(
        did=issuer.did, name="Demo", credential_types=["PersonhoodCredential"], actor=None
    )
    wallet = Wallet.generate()
    wallet.credential_import(issuer.issue(subject=wallet.did))

    page.goto("/join/")
    assert page.locator("#wallet-request svg").count() == 1
    assert page.locator("#join-status").inner_text().startswith("Waiting for your wallet")
    command = page.locator("#wallet-command").inner_text()
    request_uri = command.split("'")[1]
    assert request_uri.startswith(live_server.url + "/api/v1/identity/presentation-requests/")

    with httpx.Client(timeout=30) as client:
        outcome = present_url(wallet, request_uri, client=client)
    assert outcome.verified, outcome.body

    page.wait_for_url(live_server.url + "/my-data/", timeout=15_000)  # a contributor lands on their data
    assert page.locator(".role").inner_text() == "contributor"
    assert "you are signed in as a contributor" in page.locator(".messages").inner_text()
