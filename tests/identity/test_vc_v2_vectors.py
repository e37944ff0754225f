"""VC Data Model 2.0 documents (W3C vc-di-eddsa vectors) are refused as unsupported, never crash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.identity.helpers import assert_refused

VECTORS = Path(__file__).resolve().parents[2].parent / "shared" / "vectors" / "vc-v2"
NAMES = ["signedDataInt.json", "signedEdSig.json", "signedJCS.json"]

pytestmark = pytest.mark.django_db


def vector(name: str) -> dict:
    if not (VECTORS / name).exists():
        pytest.skip("the vc-v2 vectors are not available")
    return json.loads((VECTORS / name).read_text())


@pytest.mark.parametrize("name", NAMES)
def test_v2_credential_inside_a_presentation_is_unsupported(
    trusted_issuer, wallet, presentation_request, request_object, submit, name
):
    credential = vector(name)
    credential["credentialSubject"]["id"] = wallet.did
    from identity import vc

    # Signed around the v2 document as an opaque member would fail in didkit, so the attacker
    # edits a signed presentation to carry it.
    vp = wallet.present(request_object, credential=_placeholder(wallet, trusted_issuer))
    vp["verifiableCredential"] = [credential]
    body = assert_refused(
        submit(request_object, vp), "unsupported_data_model", presentation_request
    )
    assert body["type"] == "unsupported"
    assert (
        body["detail"]
        == "credential 1 uses the VC Data Model 2.0, which is unsupported here (only 1.1 is)"
    )
    assert vc is not None


@pytest.mark.parametrize("name", NAMES)
def test_v2_document_as_the_presentation_is_unsupported(
    db, presentation_request, request_object, submit, name
):
    body = assert_refused(
        submit(request_object, vector(name)), "unsupported_data_model", presentation_request
    )
    assert "unsupported" in body["detail"]


def _placeholder(wallet, trusted_issuer):
    from identity.issuer.core import Issuer

    return Issuer.generate().issue(subject=wallet.did)
