"""Signed checkpoints: every N events, on demand, over verified entries only."""

from __future__ import annotations

import base64

import pytest
from django.core.management import call_command

from audit import chain, keys
from audit.models import AuditCheckpoint, AuditEvent, AuditNode
from audit.services import checkpoint_create

pytestmark = pytest.mark.django_db


def leaves() -> list[bytes]:
    return [
        chain.leaf_hash(e.encode())
        for e in AuditEvent.objects.order_by("seq").values_list("entry", flat=True)
    ]


def test_a_checkpoint_is_signed_every_n_events(every_five, make_log) -> None:
    make_log(12)
    assert list(AuditCheckpoint.objects.values_list("tree_size", flat=True)) == [5, 10]
    tree = chain.MerkleTree(leaves())
    public = keys.public_key()
    for checkpoint in AuditCheckpoint.objects.all():
        assert checkpoint.root == tree.root(checkpoint.tree_size).hex()
        assert checkpoint.chain_head == AuditEvent.objects.get(seq=checkpoint.tree_size).hash
        assert checkpoint.key_id == chain.key_id(public)
        body = chain.checkpoint_body(
            size=checkpoint.tree_size,
            root=bytes.fromhex(checkpoint.root),
            chain_head=bytes.fromhex(checkpoint.chain_head),
            timestamp=checkpoint.timestamp,
        )
        assert chain.signature_is_valid(public, body, base64.b64decode(checkpoint.signature))


def test_batched_appends_that_cross_a_multiple_of_n_are_checkpointed(every_five) -> None:
    from audit.services import audit_record_many

    audit_record_many(events=[{"action": "a.b.c"} for _ in range(7)])
    assert list(AuditCheckpoint.objects.values_list("tree_size", flat=True)) == [7]


def test_on_demand_checkpoints_extend_the_stored_tree(make_log) -> None:
    assert checkpoint_create() is None  # nothing to sign yet
    for batch in (3, 1, 6, 2):
        make_log(batch)
        checkpoint = checkpoint_create()
        assert checkpoint is not None
        assert checkpoint.root == chain.MerkleTree(leaves()).root().hex()
    assert list(AuditCheckpoint.objects.values_list("tree_size", flat=True)) == [3, 4, 10, 12]
    # every perfect subtree of the 12-leaf tree is stored once: 12 + 6 + 3 + 1
    assert AuditNode.objects.count() == 22
    again = checkpoint_create()
    assert (
        again is not None and again.tree_size == 12
    )  # nothing new: the latest is returned, none added
    assert AuditCheckpoint.objects.count() == 4


def test_a_checkpoint_is_refused_over_entries_that_do_not_verify(make_log) -> None:
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("tampering uses PostgreSQL")
    from tests.audit.conftest import tamper

    make_log(4)
    tamper(
        "UPDATE audit_auditevent SET entry = replace(entry, '\"n\":2', '\"n\":20') WHERE seq = 3"
    )
    from cleanroom.errors import Conflict

    with pytest.raises(Conflict, match="Entry 3 does not verify"):
        checkpoint_create()
    assert AuditCheckpoint.objects.count() == 0 and AuditNode.objects.count() == 0


def test_the_key_is_made_once_with_private_permissions(audit_key, make_log) -> None:
    make_log(1)
    first = checkpoint_create()
    assert audit_key.exists() and oct(audit_key.stat().st_mode & 0o777) == "0o600"
    keys._load.cache_clear()
    make_log(1)
    second = checkpoint_create()
    assert first is not None and second is not None
    assert first.key_id == second.key_id


def test_checkpoint_and_public_key_commands(make_log, capsys, tmp_path) -> None:
    make_log(2)
    call_command("audit_checkpoint")
    assert '"tree_size": 2' in capsys.readouterr().out
    call_command("audit_public_key", out=str(tmp_path / "key.pem"))
    pem = (tmp_path / "key.pem").read_text()
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")
    assert chain.key_id(chain.load_public_key(pem)) == AuditCheckpoint.objects.get().key_id


def test_an_unusable_key_never_blocks_the_change_being_recorded(
    every_five, settings, make_log
) -> None:
    """The every-N checkpoint is best effort inside the caller's transaction: a key file that
    cannot be written is logged, the events are still appended, and no checkpoint is made."""
    settings.CLEANROOM_AUDIT_KEY_FILE = "/proc/no-such-dir/audit_key.pem"
    keys._load.cache_clear()
    events = make_log(6)
    assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6]
    assert AuditCheckpoint.objects.count() == 0 and AuditNode.objects.count() == 0
