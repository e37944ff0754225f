"""audit_record: chained, canonical, in the caller's transaction, never a personal detail."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.db import transaction

from audit import chain
from audit.models import AuditEvent
from audit.services import audit_record, audit_record_many

pytestmark = pytest.mark.django_db


def test_events_are_numbered_and_chained(compliance_user) -> None:
    start = AuditEvent.objects.count()  # creating the officer was itself recorded
    first = audit_record(
        action="cleanroom.query.approved",
        actor=compliance_user,
        subject="query:9",
        dataset="households",
        payload={"reason": "fine"},
    )
    second = audit_record(
        action="cleanroom.query.released", actor=None, subject="query:9", dataset="households"
    )
    assert (first.seq, second.seq) == (start + 1, start + 2)
    assert second.prev_hash == first.hash
    previous = chain.GENESIS
    for event in AuditEvent.objects.order_by("seq"):
        assert event.prev_hash == previous.hex()
        expected = chain.chain_hash(previous, chain.leaf_hash(event.entry.encode()))
        assert event.hash == expected.hex()
        previous = expected


def test_the_entry_holds_role_and_id_never_a_name(compliance_user) -> None:
    event = audit_record(
        action="cleanroom.query.approved",
        actor=compliance_user,
        subject="query:9",
        payload={"reason": "fine"},
    )
    entry = json.loads(event.entry)
    assert entry == {
        "seq": event.seq,
        "at": chain.format_time(event.at),
        "actor": {"role": "compliance", "id": str(compliance_user.pk)},
        "action": "cleanroom.query.approved",
        "subject": "query:9",
        "dataset": "",
        "payload": {"reason": "fine"},
    }
    assert compliance_user.username not in event.entry
    assert (event.actor_role, event.actor_id, event.actor) == (
        "compliance",
        str(compliance_user.pk),
        f"compliance:{compliance_user.pk}",
    )


def test_the_system_is_an_actor_without_id() -> None:
    event = audit_record(action="payouts.settlement.completed", actor=None, subject="settlement:1")
    assert (event.actor_role, event.actor_id, event.actor) == ("system", "", "system")


def test_decimals_become_strings_as_stored_and_hashed() -> None:
    event = audit_record(
        action="cleanroom.budget.charged",
        actor=None,
        dataset="d",
        payload={"epsilon": Decimal("0.250000000000")},
    )
    event.refresh_from_db()
    assert event.payload == {"epsilon": "0.250000000000"}
    assert json.loads(event.entry)["payload"] == {"epsilon": "0.250000000000"}


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"action": "approved"}, ValueError),
        ({"action": ""}, ValueError),
        ({"action": "a.b", "payload": {"x": float("nan")}}, ValueError),
        ({"action": "a.b", "payload": ["not", "a", "dict"]}, TypeError),
        ({"action": "a.b", "payload": {"x": "nul\x00"}}, ValueError),
    ],
)
def test_a_malformed_event_is_refused_and_nothing_is_appended(kwargs, error) -> None:
    before = AuditEvent.objects.count()
    with pytest.raises(error):
        audit_record(actor=None, **kwargs)
    assert AuditEvent.objects.count() == before


def test_no_event_without_its_change(business_user) -> None:
    """The event is part of the caller's transaction: when the change rolls back, so does it."""
    before = AuditEvent.objects.count()
    name = business_user.first_name
    with pytest.raises(RuntimeError), transaction.atomic():
        business_user.first_name = "changed"
        business_user.save()
        audit_record(
            action="accounts.account.updated", actor=None, subject=f"user:{business_user.pk}"
        )
        raise RuntimeError("the change failed after the event was written")
    business_user.refresh_from_db()
    assert business_user.first_name == name
    assert AuditEvent.objects.count() == before
    # and the chain carries on from the last committed event
    event = audit_record(action="accounts.account.updated", actor=None)
    assert event.seq == before + 1


def test_no_change_without_its_event(business_user) -> None:
    """A failing append fails the caller's transaction: the change does not commit alone."""
    before = AuditEvent.objects.count()
    with pytest.raises(ValueError), transaction.atomic():
        business_user.first_name = "changed"
        business_user.save()
        audit_record(action="not-namespaced", actor=None)
    business_user.refresh_from_db()
    assert business_user.first_name == ""
    assert AuditEvent.objects.count() == before


def test_batched_appends_chain_like_single_ones() -> None:
    events = audit_record_many(events=[{"action": "a.b.c", "payload": {"i": i}} for i in range(5)])
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    stored = list(AuditEvent.objects.order_by("seq"))
    assert [e.hash for e in stored] == [e.hash for e in events]
    assert all(b.prev_hash == a.hash for a, b in zip(stored, stored[1:], strict=False))
    assert audit_record_many(events=[]) == []


def test_the_entry_is_exactly_the_canonical_encoding_of_its_fields(compliance_user) -> None:
    """On PostgreSQL the database splices seq and time into the entry: it must still be the
    canonical encoding, whatever the payload holds (unicode, nested keys named like ours)."""
    payload = {
        "seq": 5,
        "subject": "x",
        "at": "\\u0000at\\u0000",
        "note": 'é "quoted" \\ 😀',
        "nested": {"seq": [1, 2]},
    }
    event = audit_record(
        action="cleanroom.dataset.updated",
        actor=compliance_user,
        subject='dataset:"odd"',
        dataset="d",
        payload=payload,
    )
    stored = AuditEvent.objects.get(seq=event.seq)
    expected = chain.encode_entry(
        chain.make_entry(
            seq=stored.seq,
            at=chain.format_time(stored.at),
            actor_role="compliance",
            actor_id=str(compliance_user.pk),
            action="cleanroom.dataset.updated",
            subject='dataset:"odd"',
            dataset="d",
            payload=payload,
        )
    )
    assert stored.entry.encode() == expected
    assert (event.seq, event.hash, event.entry, event.at) == (
        stored.seq,
        stored.hash,
        stored.entry,
        stored.at,
    )
    assert stored.payload == payload


def test_times_follow_the_sequence(make_log) -> None:
    make_log(20)
    times = list(AuditEvent.objects.order_by("seq").values_list("at", flat=True))
    assert times == sorted(times)
