"""Two valid answers racing for one request: exactly one is accepted (the conditional update)."""

from __future__ import annotations

import json
import threading

import pytest
from django.db import connection

from cleanroom.accounts.models import Contributor
from identity import selectors, services
from identity.issuer.core import Issuer
from identity.models import PresentationRequest
from identity.wallet.core import Wallet


@pytest.mark.django_db(transaction=True)
def test_only_one_of_two_concurrent_answers_wins():
    issuer = Issuer.generate()
    services.trusted_issuer_create(
        did=issuer.did, name="Demo", credential_types=["PersonhoodCredential"], actor=None
    )
    request = services.presentation_request_create()
    request_obj = selectors.request_object(request)
    wallets = [Wallet.generate() for _ in range(4)]
    bodies = [
        json.dumps(
            {"vp_token": w.present(request_obj, credential=issuer.issue(subject=w.did))}
        ).encode()
        for w in wallets
    ]
    barrier = threading.Barrier(len(bodies))
    outcomes: list[str] = []

    def answer(body: bytes) -> None:
        barrier.wait()
        try:
            services.presentation_submit(
                request_id=request.pk, body=body, content_type="application/json"
            )
            outcomes.append("accepted")
        except Exception as exc:  # noqa: BLE001 - the refusal reason is what we assert on
            outcomes.append(getattr(exc, "code", repr(exc)))
        finally:
            connection.close()

    threads = [threading.Thread(target=answer, args=(b,)) for b in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(outcomes) == ["accepted", "nonce_used", "nonce_used", "nonce_used"]
    assert Contributor.objects.count() == 1
    request.refresh_from_db()
    assert request.status == PresentationRequest.Status.ACCEPTED
    assert request.contributor.did in {w.did for w in wallets}
