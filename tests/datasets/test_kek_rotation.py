"""`manage.py rotate_kek`: data keys re-wrapped under the new KEK, records untouched."""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from cleanroom.datasets import storage
from cleanroom.datasets.crypto import KeyUnavailable, kek_id_of
from cleanroom.datasets.models import Contribution, ContributorKey, PoolSegment
from cleanroom.datasets.pool import pool_snapshot
from cleanroom.datasets.selectors import contributor_records
from cleanroom.datasets.services import pool_compact
from tests.datasets.conftest import record

OLD = base64.b64encode(b"o" * 32).decode()
NEW = base64.b64encode(b"n" * 32).decode()


def snapshot_state() -> dict[str, Any]:
    return {
        "keys": list(ContributorKey.objects.order_by("pk").values_list("kek_id", "wrapped")),
        "segment_keys": list(
            PoolSegment.objects.order_by("pk").values_list("kek_id", "wrapped_key")
        ),
        "records": [bytes(c) for c in Contribution.objects.values_list("ciphertext", flat=True)],
        "files": [
            storage.segment_path(name).read_bytes()
            for name in PoolSegment.objects.values_list("file_name", flat=True)
        ],
    }


def test_rotation_rewraps_keys_without_touching_records(
    dataset: Any, consented: Any, upload: Any
) -> None:
    with override_settings(CLEANROOM_KEK=OLD, CLEANROOM_KEK_PREVIOUS=[]):
        people = [consented(), consented()]
        upload(people[0], dataset, [record(age=30)])
        pool_compact(dataset_pk=dataset.pk)
        upload(people[1], dataset, [record(age=40)])  # one waiting upload too
    before = snapshot_state()
    assert {kek for kek, _ in before["keys"]} == {kek_id_of(b"o" * 32)}

    with override_settings(CLEANROOM_KEK=NEW, CLEANROOM_KEK_PREVIOUS=[OLD]):
        out = io.StringIO()
        call_command("rotate_kek", stdout=out)
        assert out.getvalue().strip() == (
            f"Re-wrapped 2 data key(s) and 1 segment key(s) under KEK {kek_id_of(b'n' * 32)}."
        )
        again = io.StringIO()
        call_command("rotate_kek", stdout=again)
        assert again.getvalue().startswith("Re-wrapped 0 data key(s) and 0 segment key(s)")

    after = snapshot_state()
    assert after["records"] == before["records"]
    assert after["files"] == before["files"]
    assert {kek for kek, _ in after["keys"]} == {kek_id_of(b"n" * 32)}
    assert all(a[1] != b[1] for a, b in zip(after["keys"], before["keys"], strict=True))
    assert {kek for kek, _ in after["segment_keys"]} == {kek_id_of(b"n" * 32)}

    # The old KEK can now be retired: everything reads with the new one alone.
    with override_settings(CLEANROOM_KEK=NEW, CLEANROOM_KEK_PREVIOUS=[]):
        snapshot = pool_snapshot(dataset=dataset)
        assert sorted(r[1] for r in snapshot.frame.collect().rows()) == [30, 40]
        assert contributor_records(contributor=people[0])[0]["records"][0]["age"] == 30


def test_rotation_without_the_old_key_changes_nothing(
    dataset: Any, consented: Any, upload: Any
) -> None:
    with override_settings(CLEANROOM_KEK=OLD, CLEANROOM_KEK_PREVIOUS=[]):
        upload(consented(), dataset, [record()])
    before = snapshot_state()
    with override_settings(CLEANROOM_KEK=NEW, CLEANROOM_KEK_PREVIOUS=[]):
        with pytest.raises(CommandError, match="CLEANROOM_KEK_PREVIOUS"):
            call_command("rotate_kek", stdout=io.StringIO())
        with pytest.raises(KeyUnavailable):
            pool_snapshot(dataset=dataset)
    assert snapshot_state() == before


def test_a_malformed_kek_is_refused(dataset: Any) -> None:
    with (
        override_settings(CLEANROOM_KEK="not-base64!"),
        pytest.raises(CommandError, match="base64 of 32 random bytes"),
    ):
        call_command("rotate_kek", stdout=io.StringIO())
