"""Checkpoints cannot stop silently (issue 11, defect 1).

A payload number that PostgreSQL's jsonb gives back in another form (1e308 comes back as a
309-digit integer) made every checkpoint refuse "Entry N does not verify" while all three
verifiers still said ok: 800+ entries stayed unsigned. The entry comparison now reads numbers
as jsonb does, and a tail of unsigned entries longer than the checkpoint interval is a problem
for `audit_verify`, `GET /api/v1/audit/verify/`, the offline verifier and the portal page.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from audit import keys
from audit.models import AuditCheckpoint, AuditEvent
from audit.selectors import export_lines, log_verify
from audit.services import audit_record, checkpoint_create
from audit.verify import main as verify_main
from audit.verify import verify_export
from cleanroom.errors import Conflict
from tests.audit.conftest import offline_verify

pytestmark = pytest.mark.django_db

# Numbers whose jsonb form reads back in Python as something else (an int for a float, or
# another float text), and ordinary ones beside them.
AWKWARD_NUMBERS = {
    "bound": 1e308,
    "negative": -1e308,
    "large": 1e23,
    "tiny": 1.5e-300,
    "near_int": 9007199254740993.0,
    "exact": 1e20,
    "fraction": 0.1,
    "integer": 10**30,
    "zero": -0.0,
}


def test_payload_numbers_jsonb_rewrites_are_still_checkpointed() -> None:
    audit_record(action="cleanroom.dataset.created", actor=None, payload={"before": 1})
    event = audit_record(
        action="cleanroom.dataset.created",
        actor=None,
        subject="dataset:huge",
        payload={"schema": {"columns": [{"name": "x", **AWKWARD_NUMBERS}]}},
    )
    stored = AuditEvent.objects.get(pk=event.pk).payload["schema"]["columns"][0]
    assert stored["bound"] == 10**308  # what jsonb gives back: an int, not the float
    checkpoint = checkpoint_create()  # refused with Conflict before the fix
    assert checkpoint is not None and checkpoint.tree_size == 2
    report = log_verify()
    assert report.ok and report.unsigned_tail == 0, report.problems
    assert offline_verify().ok


def test_a_tampered_number_still_fails_the_checkpoint(make_log) -> None:
    """Comparing numbers by value must not make a changed column pass."""
    from audit.services import same_json

    assert same_json(1e308, 10**308) and same_json(0.1, 0.1) and same_json(1e20, 10**20)
    assert not same_json(1e308, 10**308 + 1)
    assert not same_json(1e23, 10**23 + 1) and not same_json(True, 1) and not same_json(0.1, 0.2)


def _stall(make_log: Any, settings: Any, monkeypatch: Any, n: int) -> int:
    """Events up to a checkpoint, then n events the checkpointer refuses, as it refused every
    entry after a 1e308 payload (put back: the old number comparison). Returns the size of
    the last checkpoint."""
    settings.CLEANROOM_AUDIT_CHECKPOINT_EVERY = 5
    head = AuditEvent.objects.count()
    make_log(5 - head % 5)  # the append at a multiple of 5 signs a checkpoint
    signed = AuditEvent.objects.count()
    assert AuditCheckpoint.objects.order_by("-tree_size").first().tree_size == signed
    monkeypatch.setattr("audit.services.same_json", lambda a, b: a == b)
    audit_record(action="cleanroom.dataset.created", actor=None, payload={"upper": 1e308})
    make_log(n - 1)
    with pytest.raises(Conflict, match=f"Entry {signed + 1} does not verify"):
        checkpoint_create()
    monkeypatch.undo()
    assert AuditCheckpoint.objects.order_by("-tree_size").first().tree_size == signed
    return signed


def test_an_unsigned_tail_within_the_interval_verifies(make_log, settings, monkeypatch) -> None:
    _stall(make_log, settings, monkeypatch, 4)  # 4 unsigned, interval 5: normal
    report = log_verify()
    assert report.ok and report.unsigned_tail == 4 and report.checkpoint_every == 5


def test_an_unsigned_tail_longer_than_the_interval_is_reported_everywhere(
    make_log, settings, monkeypatch, compliance_user, api, capsys, tmp_path
) -> None:
    signed = _stall(make_log, settings, monkeypatch, 7)  # 7 unsigned, more than 5
    first, last = signed + 1, signed + 7
    pem = keys.public_key_pem()
    expected = f"entries {first}..{last} (7) are not covered by any signed checkpoint"

    report = log_verify()
    assert not report.ok
    assert report.first_bad_entry == first and report.unsigned_tail == 7
    assert expected in report.reason

    body = api(compliance_user).get("/api/v1/audit/verify/").json()
    assert body["ok"] is False and body["first_bad_entry"] == first
    assert body["unsigned_tail"] == 7 and body["checkpoint_every"] == 5
    assert any(expected in p for p in body["problems"])

    with pytest.raises(CommandError, match=f"first bad entry {first}: entries {first}"):
        call_command("audit_verify")
    assert expected in capsys.readouterr().out

    export = b"".join(export_lines())
    assert json.loads(export.splitlines()[0])["checkpoint_every"] == 5
    offline = verify_export(io.BytesIO(export), pem.encode())
    assert not offline.ok and offline.first_bad_entry == first and expected in offline.reason
    assert verify_export(io.BytesIO(export), pem.encode(), max_unsigned=7).ok
    (tmp_path / "log.jsonl").write_bytes(export)
    (tmp_path / "key.pem").write_text(pem)
    capsys.readouterr()
    assert verify_main([str(tmp_path / "log.jsonl"), "--key", str(tmp_path / "key.pem")]) == 1
    assert expected in capsys.readouterr().out

    portal = Client()
    portal.force_login(compliance_user)
    page = portal.get("/audit/verify/").content.decode()
    assert "The log does not verify." in page
    assert "not covered by any signed checkpoint" in page
    assert "a checkpoint is signed every 5 entries" in page
