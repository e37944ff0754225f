"""Tampering directly in PostgreSQL, as someone with database access would: every change is
detected, and the first bad entry named, both by the in-database verifier and by the offline
verifier on an export."""

from __future__ import annotations

import json

import pytest
from django.db import connection

from audit import chain
from audit.models import AuditCheckpoint, AuditEvent
from audit.selectors import log_verify
from audit.services import checkpoint_create
from tests.audit.conftest import offline_verify, tamper

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="tampering uses PostgreSQL"),
]


@pytest.fixture
def log(every_five, compliance_user, make_log):
    """12 events (creating the officer was the first), checkpoints at 5, 10 and 12."""
    make_log(11, actor=compliance_user)
    checkpoint_create()
    assert list(AuditCheckpoint.objects.values_list("tree_size", flat=True)) == [5, 10, 12]
    return list(AuditEvent.objects.order_by("seq"))


def both(expected_first_bad: int | None) -> tuple:
    in_db, offline = log_verify(), offline_verify()
    assert in_db.first_bad_entry == expected_first_bad, in_db.problems
    assert offline.first_bad_entry == expected_first_bad, offline.problems
    assert in_db.ok is offline.ok is (expected_first_bad is None)
    return in_db, offline


def rehashed(rows: list[AuditEvent], start: int, change) -> None:
    """Rewrite entries from seq `start` on with `change(entry_dict)` and re-hash the chain so
    every stored hash is consistent (what a careful forger does)."""
    previous = bytes.fromhex(rows[start - 2].hash) if start > 1 else chain.GENESIS
    for row in rows[start - 1 :]:
        data = json.loads(row.entry)
        if row.seq == start:
            change(data)
        entry = chain.encode_entry(data)
        digest = chain.chain_hash(previous, chain.leaf_hash(entry))
        tamper(
            "UPDATE audit_auditevent SET entry = %s, payload = %s, actor_role = %s, actor_id = %s, prev_hash = %s, hash = %s WHERE seq = %s",
            [
                entry.decode(),
                json.dumps(data["payload"]),
                data["actor"]["role"],
                data["actor"]["id"],
                previous.hex(),
                digest.hex(),
                row.seq,
            ],
        )
        previous = digest


def test_an_untouched_log_verifies_in_the_database_and_offline(log) -> None:
    in_db, offline = both(None)
    assert in_db.entries == offline.entries == 12
    assert in_db.head == offline.head == log[-1].hash
    assert in_db.tree_root == offline.tree_root == AuditCheckpoint.objects.get(tree_size=12).root
    assert in_db.checkpoints_checked == offline.checkpoints_checked == 3
    assert in_db.unsigned_tail == 0


def test_an_edited_payload_is_named(log) -> None:
    data = json.loads(log[6].entry)
    data["payload"]["members"] = 999
    tamper(
        "UPDATE audit_auditevent SET payload = %s, entry = %s WHERE seq = 7",
        [json.dumps(data["payload"]), chain.encode_entry(data).decode()],
    )
    in_db, offline = both(7)
    assert in_db.reason == "entry 7: its content does not match its hash"


def test_an_edit_to_the_displayed_columns_only_is_named_in_the_database(log) -> None:
    tamper("UPDATE audit_auditevent SET actor_id = '999' WHERE seq = 4")
    report = log_verify()
    assert (report.ok, report.first_bad_entry) == (False, 4)
    assert "columns" in report.reason
    # The export carries the signed entries, so what an auditor reads offline is the original.
    assert offline_verify().ok


def test_a_deleted_event_is_named(log) -> None:
    tamper("DELETE FROM audit_auditevent WHERE seq = 7")
    in_db, offline = both(7)
    assert in_db.entries == offline.entries == 11
    assert "missing" in in_db.reason


def test_an_inserted_event_is_named_even_when_its_hash_is_right(log) -> None:
    tamper("UPDATE audit_auditevent SET seq = -seq WHERE seq >= 7")
    tamper("UPDATE audit_auditevent SET seq = 1 - seq WHERE seq < 0")
    entry = chain.encode_entry(
        chain.make_entry(
            seq=7,
            at=chain.format_time(log[6].at),
            actor_role="compliance",
            actor_id="1",
            action="cleanroom.query.approved",
            subject="query:66",
            dataset="households",
            payload={},
        )
    )
    digest = chain.chain_hash(bytes.fromhex(log[5].hash), chain.leaf_hash(entry))
    AuditEvent.objects.create(
        seq=7,
        at=log[6].at,
        actor_role="compliance",
        actor_id="1",
        action="cleanroom.query.approved",
        subject="query:66",
        dataset="households",
        payload={},
        entry=entry.decode(),
        prev_hash=log[5].hash,
        hash=digest.hex(),
    )
    in_db, offline = both(7)
    assert in_db.entries == offline.entries == 13


def test_two_reordered_events_are_named(log) -> None:
    tamper("UPDATE audit_auditevent SET seq = 0 WHERE seq = 7")
    tamper("UPDATE audit_auditevent SET seq = 7 WHERE seq = 8")
    tamper("UPDATE audit_auditevent SET seq = 8 WHERE seq = 0")
    both(7)


def test_a_truncated_tail_is_named_by_the_signed_checkpoint(log) -> None:
    tamper("DELETE FROM audit_auditevent WHERE seq > 10")
    in_db, offline = both(11)
    assert in_db.entries == offline.entries == 10
    assert "checkpoint 12" in in_db.reason


def test_a_rehashed_forgery_of_the_tail_is_caught_by_the_checkpoints_and_named(log) -> None:
    def change(data):
        data["actor"]["id"] = "42"  # "someone else approved it"

    rehashed(log, 8, change)
    in_db, offline = both(8)
    assert "differs from what checkpoint 10 signed" in in_db.reason


def test_a_whole_log_replaced_by_a_rehashed_forgery_is_caught(log) -> None:
    tamper("DELETE FROM audit_auditevent")
    previous = chain.GENESIS
    for event in log:  # the same story, one hour earlier, with another approver
        at = event.at.replace(hour=(event.at.hour + 23) % 24)
        data = json.loads(event.entry)
        data["at"] = chain.format_time(at)
        entry = chain.encode_entry(data)
        digest = chain.chain_hash(previous, chain.leaf_hash(entry))
        AuditEvent.objects.create(
            seq=event.seq,
            at=at,
            actor_role=event.actor_role,
            actor_id=event.actor_id,
            action=event.action,
            subject=event.subject,
            dataset=event.dataset,
            payload=event.payload,
            entry=entry.decode(),
            prev_hash=previous.hex(),
            hash=digest.hex(),
        )
        previous = digest
    in_db, offline = both(1)
    assert in_db.entries == offline.entries == 12


def test_a_forgery_with_rewritten_nodes_and_self_signed_checkpoints_is_caught(log) -> None:
    from Crypto.PublicKey import ECC

    def change(data):
        data["payload"]["amount"] = "0.000001"

    rehashed(log, 3, change)
    # The forger also rewrites the stored tree and re-signs with a key of their own.
    tamper("DELETE FROM audit_auditnode")
    tamper("DELETE FROM audit_auditcheckpoint")
    forger = ECC.generate(curve="ed25519")
    rows = list(AuditEvent.objects.order_by("seq"))
    leaves = [chain.leaf_hash(r.entry.encode()) for r in rows]
    tree = chain.MerkleTree(leaves)
    body = chain.checkpoint_body(
        size=12,
        root=tree.root(),
        chain_head=bytes.fromhex(rows[-1].hash),
        timestamp="2026-11-29T00:00:00.000000Z",
    )
    import base64

    AuditCheckpoint.objects.create(
        tree_size=12,
        root=tree.root().hex(),
        chain_head=rows[-1].hash,
        timestamp="2026-11-29T00:00:00.000000Z",
        signature=base64.b64encode(chain.sign(forger, body)).decode(),
        key_id=chain.key_id(forger.public_key()),
    )
    in_db, offline = both(1)
    assert "another key" in in_db.reason


def test_the_verify_command_and_endpoint_report_a_tampered_log(log, api, compliance_user) -> None:
    from django.core.management import CommandError, call_command

    tamper("DELETE FROM audit_auditevent WHERE seq = 3")
    with pytest.raises(CommandError, match="first bad entry 3"):
        call_command("audit_verify")
    body = api(compliance_user).get("/api/v1/audit/verify/").json()
    assert (body["ok"], body["first_bad_entry"], body["entries"]) == (False, 3, 11)


def test_an_entry_that_is_no_longer_json_is_named(log) -> None:
    tamper("UPDATE audit_auditevent SET entry = 'not json' WHERE seq = 5")
    in_db = log_verify()
    assert (in_db.ok, in_db.first_bad_entry) == (False, 5)


@pytest.mark.parametrize(
    "column_sql",
    [
        "payload = jsonb_set(payload, '{n}', 'true')",  # a number turned into a boolean
        "payload = payload || '{\"extra\": 1}'",
        "at = at + interval '1 microsecond'",
        "action = 'cleanroom.query.rejected'",
        "dataset = 'other'",
        "subject = 'query:999'",
        "actor_role = 'business'",
    ],
)
def test_every_displayed_column_is_held_to_its_entry(log, column_sql) -> None:
    tamper(f"UPDATE audit_auditevent SET {column_sql} WHERE seq = 9")  # noqa: S608 - test constants
    report = log_verify()
    assert (report.ok, report.first_bad_entry) == (False, 9), column_sql
