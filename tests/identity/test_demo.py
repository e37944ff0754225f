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
    issuer = TrustedIssuer.objects.get()
    assert issuer.credential_types == ["PersonhoodCredential"]
    assert any("cleanroom-wallet login http://" in line for line in lines)
    assert any(f"cleanroom-issuer --dir {tmp_path / 'demo-issuer'}" in line for line in lines)
    demo.seed()
    assert Contributor.objects.count() == demo.DEMO_CONTRIBUTORS
    assert TrustedIssuer.objects.count() == 1
