"""The demo seed: a trusted issuer and contributors admitted through the real pipeline."""

from __future__ import annotations

import pytest

from audit.models import AuditEvent
from cleanroom.accounts.models import Contributor
from identity import demo
from identity.models import TrustedIssuer

pytestmark = pytest.mark.django_db


def test_seed_is_idempotent_and_uses_the_pipeline(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    lines = demo.seed()
    assert Contributor.objects.count() == demo.DEMO_CONTRIBUTORS
    assert (
        AuditEvent.objects.filter(action="identity.presentation.accepted").count()
        == demo.DEMO_CONTRIBUTORS
    )
    w3c, sd_jwt = TrustedIssuer.objects.order_by("pk")
    assert w3c.credential_types == ["PersonhoodCredential"]
    assert (sd_jwt.did, sd_jwt.vcts, sd_jwt.formats) == (
        settings.CLEANROOM_ORIGIN + "/demo-issuer",
        ["urn:eudi:pid:1"],
        ["dc+sd-jwt"],
    )
    assert any("cleanroom-wallet login http://" in line for line in lines)
    assert any(f"cleanroom-issuer --dir {tmp_path / 'demo-issuer'}" in line for line in lines)
    assert any("--format dc+sd-jwt --holder-jwk" in line for line in lines)
    demo.seed()
    assert Contributor.objects.count() == demo.DEMO_CONTRIBUTORS
    assert TrustedIssuer.objects.count() == 2
