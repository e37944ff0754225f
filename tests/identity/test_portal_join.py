"""Portal: join with a wallet (QR, live status, signed in) and the trusted-issuer registry page."""

from __future__ import annotations

import pytest
from django.test import Client

from identity import selectors
from identity.models import PresentationRequest, TrustedIssuer

pytestmark = pytest.mark.django_db


def _start(client: Client) -> tuple[PresentationRequest, str]:
    response = client.get("/join/")
    assert response.status_code == 200
    html = response.content.decode()
    request = PresentationRequest.objects.latest("created_at")
    return request, html


def test_join_page_shows_a_qr_code_and_the_links(db):
    client = Client()
    request, html = _start(client)
    assert "<svg" in html and "<?xml" not in html
    assert selectors.wallet_link(request).replace("&", "&amp;") in html
    assert f"cleanroom-wallet present '{selectors.request_uri(request)}'" in html
    assert f'hx-get="/join/{request.pk}/status/"' in html and 'hx-trigger="every 2s"' in html


def test_polling_waits_then_signs_this_browser_in(trusted_issuer, issuer, wallet, submit):
    browser = Client()
    request, _ = _start(browser)
    waiting = browser.get(f"/join/{request.pk}/status/")
    assert waiting.status_code == 200 and "Waiting for your wallet" in waiting.content.decode()
    request_obj = selectors.request_object(request)
    assert (
        submit(
            request_obj, wallet.present(request_obj, credential=issuer.issue(subject=wallet.did))
        ).status_code
        == 200
    )
    done = browser.get(f"/join/{request.pk}/status/")
    assert done.status_code == 200 and done["HX-Redirect"] == "/"
    home = browser.get("/")
    assert home.wsgi_request.user.is_authenticated
    assert home.wsgi_request.user.contributor.did == wallet.did


def test_another_browser_cannot_take_the_sign_in(trusted_issuer, issuer, wallet, submit):
    browser = Client()
    request, _ = _start(browser)
    request_obj = selectors.request_object(request)
    submit(request_obj, wallet.present(request_obj, credential=issuer.issue(subject=wallet.did)))
    intruder = Client()
    assert intruder.get(f"/join/{request.pk}/status/").status_code == 404
    assert not intruder.get("/").wsgi_request.user.is_authenticated
    # The right browser still can, once.
    assert browser.get(f"/join/{request.pk}/status/")["HX-Redirect"] == "/"


def test_a_refusal_is_shown_while_waiting(trusted_issuer, issuer, wallet, submit):
    from identity.wallet.core import Wallet

    browser = Client()
    request, _ = _start(browser)
    request_obj = selectors.request_object(request)
    submit(
        request_obj,
        wallet.present(request_obj, credential=issuer.issue(subject=Wallet.generate().did)),
    )
    html = browser.get(f"/join/{request.pk}/status/").content.decode()
    assert "issued to someone other than the holder" in html and "every 2s" in html


def test_registry_page_is_for_compliance_only(compliance_user, business_user, make_contributor):
    anonymous = Client().get("/compliance/trusted-issuers/")
    assert anonymous.status_code == 302
    business = Client()
    business.force_login(business_user)
    assert business.get("/compliance/trusted-issuers/").status_code == 403
    officer = Client()
    officer.force_login(compliance_user)
    assert officer.get("/compliance/trusted-issuers/").status_code == 200


def test_compliance_trusts_and_removes_an_issuer_from_the_page(compliance_user, issuer):
    officer = Client()
    officer.force_login(compliance_user)
    response = officer.post(
        "/compliance/trusted-issuers/",
        {
            "did": issuer.did,
            "name": "Gov ID",
            "credential_types": "PersonhoodCredential, KYCCredential",
        },
    )
    assert response.status_code == 302
    trusted = TrustedIssuer.objects.get()
    assert trusted.credential_types == ["PersonhoodCredential", "KYCCredential"]
    page = officer.get("/compliance/trusted-issuers/").content.decode()
    assert "Gov ID" in page and "Trusted issuers" in page
    bad = officer.post(
        "/compliance/trusted-issuers/",
        {"did": "not-a-did", "name": "X", "credential_types": "PersonhoodCredential"},
    )
    assert bad.status_code == 400 and "did must be a DID" in bad.content.decode()
    assert TrustedIssuer.objects.count() == 1
    assert officer.post(f"/compliance/trusted-issuers/{trusted.pk}/remove/").status_code == 302
    assert TrustedIssuer.objects.count() == 0
