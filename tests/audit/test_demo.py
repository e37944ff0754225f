"""The demo seed signs a checkpoint and leaves the key for the offline verifier."""

from __future__ import annotations

import pytest

from audit import demo
from audit.models import AuditCheckpoint

pytestmark = pytest.mark.django_db


def test_demo_seed_signs_what_the_other_seeds_recorded(make_log, settings, tmp_path) -> None:
    settings.VAR_DIR = tmp_path
    assert demo.seed() == ["Audit log: empty, nothing signed yet."]
    make_log(4)
    lines = demo.seed()
    assert lines[0].startswith("Audit log: 4 entries, verifies; checkpoint 4 signed by key ")
    assert "python -m audit.verify" in lines[1]
    assert (tmp_path / "audit_public_key.pem").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert AuditCheckpoint.objects.count() == 1
