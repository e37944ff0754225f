"""The datasets demo seed: idempotent, through the services, pools ready for queries."""

from __future__ import annotations

from typing import Any

from cleanroom.datasets.demo import ROWS_PER_CONTRIBUTOR, seed
from cleanroom.datasets.models import Contribution, Dataset
from cleanroom.datasets.pool import pool_snapshot


def test_seed_publishes_and_fills_the_pools(compliance_user: Any, make_contributor: Any) -> None:
    people = [make_contributor() for _ in range(6)]

    lines = seed()
    again = seed()

    assert lines == [
        "Datasets: households and commutes published; 11 demo upload(s) of 8 rows by 6 "
        "wallet-verified contributor(s)."
    ]
    assert again[0].startswith("Datasets: households and commutes published; 0 demo upload(s)")
    assert sorted(Dataset.objects.values_list("slug", flat=True)) == ["commutes", "households"]
    assert Contribution.objects.count() == 11
    assert not Contribution.objects.filter(is_compacted=False).exists()
    households = pool_snapshot(dataset=Dataset.objects.get(slug="households"))
    commutes = pool_snapshot(dataset=Dataset.objects.get(slug="commutes"))
    assert households.members.tolist() == sorted(p.pk for p in people)
    assert households.frame.collect().height == 6 * ROWS_PER_CONTRIBUTOR
    assert commutes.size == 5


def test_seed_without_officer_skips(db: Any) -> None:
    assert seed() == ["Datasets: no compliance officer, skipped."]
