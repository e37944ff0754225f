"""The datasets demo seed: idempotent, wallet contributors through the services, the
synthetic population through the bulk path, pools ready for queries."""

from __future__ import annotations

from typing import Any

import pytest

from audit.models import AuditEvent
from audit.selectors import log_verify
from cleanroom.accounts import demo as accounts_demo
from cleanroom.datasets.demo import ROWS_PER_CONTRIBUTOR, seed
from cleanroom.datasets.models import Consent, Contribution, ContributorKey, Dataset, PoolSegment
from cleanroom.datasets.pool import pool_snapshot
from cleanroom.datasets.selectors import contributor_records, pool_size


def test_seed_publishes_and_fills_the_pools(
    compliance_user: Any, make_contributor: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLEANROOM_DEMO_POPULATION", "40")
    assert accounts_demo.population_ensure() == 40
    people = [make_contributor() for _ in range(6)]
    synthetic = accounts_demo.population()

    lines = seed()
    again = seed()

    assert lines == [
        "Datasets: households and commutes published; 11 demo uploads of 1 row by 6 "
        "wallet-verified contributors; 80 synthetic rows bulk-seeded for 40 synthetic "
        "contributors."
    ]
    assert again[0].startswith("Datasets: households and commutes published; 0 demo uploads")
    assert "0 synthetic rows" in again[0]
    assert sorted(Dataset.objects.values_list("slug", flat=True)) == ["commutes", "households"]
    assert Contribution.objects.count() == 11 + 80
    assert not Contribution.objects.filter(is_compacted=False).exists()
    households = Dataset.objects.get(slug="households")
    commutes = Dataset.objects.get(slug="commutes")
    snapshot = pool_snapshot(dataset=households)
    assert snapshot.members.tolist() == sorted(p.pk for p in [*people, *synthetic])
    assert snapshot.frame.collect().height == 46 * ROWS_PER_CONTRIBUTOR
    assert pool_snapshot(dataset=commutes).size == 45
    # The trigger-kept counter agrees with the members (the bulk path goes through it).
    assert (pool_size(dataset=households), pool_size(dataset=commutes)) == (46, 45)
    # Real data keys, one per contributor, and audited consents and uploads.
    assert ContributorKey.objects.filter(contributor__in=synthetic).count() == 40
    assert AuditEvent.objects.filter(action="cleanroom.consent.given").count() == 11 + 80
    assert AuditEvent.objects.filter(action="cleanroom.contribution.uploaded").count() == 11 + 80
    assert log_verify().ok
    # A synthetic contributor's own copy decrypts under their key (export), and each row
    # is in the pool once.
    uploads = contributor_records(contributor=synthetic[0])
    assert sorted((upload["dataset"], len(upload["records"])) for upload in uploads) == [
        ("commutes", 1),
        ("households", 1),
    ]
    assert snapshot.frame.collect().get_column("contributor_id").is_duplicated().sum() == 0
    assert PoolSegment.objects.filter(dataset=households).exists()
    assert Consent.objects.filter(contributor__in=synthetic, dataset=commutes).count() == 40


def test_seed_without_officer_skips(db: Any) -> None:
    assert seed() == ["Datasets: no compliance officer, skipped."]
