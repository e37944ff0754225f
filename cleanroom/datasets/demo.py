"""Demo data of datasets for `manage.py seed_demo` (idempotent).

Publishes two datasets (one auto-approved, one reviewed by compliance). The contributors
that the identity demo admitted through their wallets consent and upload through the
same services as the API; the synthetic population (accounts demo) joins both pools
through the bulk path (``cleanroom.datasets.bulk``: real data keys, consents and
encrypted uploads, audited). The pools are then compacted for the queries demo.

Sizes are chosen so the README's queries answer usefully at the default epsilon: with
one row per contributor and 10,000 contributors, each of the four regions holds about
2,500 people, so a count is within about +-12 (0.5%) and a mean within about 2-3%.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cleanroom.accounts.demo import POPULATION_PREFIX
from cleanroom.accounts.models import Contributor, User
from cleanroom.datasets.bulk import BulkUpload, contributions_bulk_seed
from cleanroom.datasets.models import Consent, Contribution, Dataset
from cleanroom.datasets.services import (
    consent_give,
    contribution_upload,
    dataset_create,
    pool_compact,
)

REGIONS = ["north", "south", "east", "west"]
MODES = ["car", "bike", "bus", "train", "walk"]
ROWS_PER_CONTRIBUTOR = 1

DATASETS: list[dict[str, Any]] = [
    {
        "slug": "households",
        "name": "Household budgets",
        "purpose": "Research on household budgets and housing by region: aggregate "
        "statistics only, for housing policy and product planning.",
        "schema": {
            "columns": [
                {"name": "age", "type": "integer", "lower": 18, "upper": 100},
                {"name": "region", "type": "string", "categories": REGIONS},
                {"name": "income", "type": "float", "lower": 0, "upper": 150000},
                {"name": "household_size", "type": "integer", "lower": 1, "upper": 10},
                {"name": "visits", "type": "integer", "lower": 0, "upper": 60},
                {"name": "owns_home", "type": "boolean"},
            ]
        },
        "policy": {
            "total_epsilon": "20",
            "max_query_epsilon": "1",
            "min_contributors": 100,
            "max_rows_per_contributor": ROWS_PER_CONTRIBUTOR,
            "auto_approve": True,
            "default_privacy_cap": "5",
        },
        "price": {
            "currency": "EUR",
            "per_query": "2.00",
            "per_epsilon": "8.00",
            "platform_fee": "0.20",
        },
        "retention_days": 365,
    },
    {
        "slug": "commutes",
        "name": "Daily commutes",
        "purpose": "How people travel to work, for transport planning. Every query is "
        "reviewed by a compliance officer.",
        "schema": {
            "columns": [
                {"name": "region", "type": "string", "categories": REGIONS},
                {"name": "mode", "type": "string", "categories": MODES},
                {"name": "minutes", "type": "integer", "lower": 0, "upper": 120},
            ]
        },
        "policy": {
            "total_epsilon": "10",
            "max_query_epsilon": "1",
            "min_contributors": 100,
            "max_rows_per_contributor": ROWS_PER_CONTRIBUTOR,
            "auto_approve": False,
        },
        "price": {
            "currency": "EUR",
            "per_query": "5.00",
            "per_epsilon": "20.00",
            "platform_fee": "0.15",
        },
        "retention_days": 180,
    },
]


def _columns(slug: str, rng: np.random.Generator, n: int) -> dict[str, Any]:
    """n synthetic rows of a demo dataset: skewed incomes, small households, gamma commutes."""
    regions = np.array(REGIONS)[rng.choice(len(REGIONS), n, p=[0.3, 0.25, 0.25, 0.2])]
    if slug == "households":
        return {
            "age": np.clip(rng.normal(45, 14, n).round(), 18, 100).astype(np.int64),
            "region": regions,
            "income": np.clip(rng.lognormal(10.4, 0.5, n), 0, 150000).round(2),
            "household_size": np.clip(rng.poisson(1.5, n) + 1, 1, 10).astype(np.int64),
            "visits": np.clip(rng.poisson(5, n), 0, 60).astype(np.int64),
            "owns_home": rng.random(n) < 0.6,
        }
    return {
        "region": regions,
        "mode": np.array(MODES)[rng.choice(len(MODES), n, p=[0.4, 0.15, 0.2, 0.15, 0.1])],
        "minutes": np.clip(rng.gamma(3, 9, n).round(), 0, 120).astype(np.int64),
    }


def _records(slug: str, rng: np.random.Generator) -> list[dict[str, Any]]:
    columns = _columns(slug, rng, ROWS_PER_CONTRIBUTOR)
    names = list(columns)
    return [
        dict(zip(names, values, strict=True))
        for values in zip(*(columns[name].tolist() for name in names), strict=True)
    ]


def seed(*, stdout: Any = None) -> list[str]:
    officer = User.objects.filter(role="compliance").order_by("pk").first()
    if officer is None:
        return ["Datasets: no compliance officer, skipped."]
    for definition in DATASETS:
        if not Dataset.objects.filter(slug=definition["slug"]).exists():
            dataset_create(actor=officer, **definition)
    everyone = list(Contributor.objects.select_related("user").order_by("pk"))
    synthetic = [c for c in everyone if c.user.username.startswith(f"{POPULATION_PREFIX}-")]
    # Contributors admitted through a verified presentation (the identity demo).
    wallets = [c for c in everyone if not c.user.username.startswith(f"{POPULATION_PREFIX}-")]
    rng = np.random.default_rng(7)
    uploads = 0
    bulk = 0
    for slug in ("households", "commutes"):
        dataset = Dataset.objects.get(slug=slug)
        # The last demo contributor stays out of the commutes pool, to show a choice.
        members = wallets if slug == "households" else wallets[:-1]
        for contributor in members:
            if Contribution.objects.filter(dataset=dataset, contributor=contributor).exists():
                continue
            consent_give(contributor=contributor, dataset=dataset)
            contribution_upload(
                contributor=contributor, dataset=dataset, records=_records(slug, rng)
            )
            uploads += 1
        pool_compact(dataset_pk=dataset.pk)
    # The synthetic population joins both pools at once (one data key each), through the
    # bulk path; only those not in any pool yet (a second run adds no one).
    joined = set(Consent.objects.values_list("contributor_id", flat=True))
    newcomers = [c for c in synthetic if c.pk not in joined]
    if newcomers:
        bulk = contributions_bulk_seed(
            contributors=newcomers,
            uploads=[
                BulkUpload(
                    dataset=Dataset.objects.get(slug=slug),
                    columns=_columns(slug, rng, len(newcomers) * ROWS_PER_CONTRIBUTOR),
                    rows=ROWS_PER_CONTRIBUTOR,
                )
                for slug in ("households", "commutes")
            ],
        )
    return [
        f"Datasets: households and commutes published; {_count(uploads, 'demo upload')} of "
        f"{_count(ROWS_PER_CONTRIBUTOR, 'row')} by "
        f"{_count(len(wallets), 'wallet-verified contributor')}; "
        f"{_count(bulk, 'synthetic row')} bulk-seeded for "
        f"{_count(len(synthetic), 'synthetic contributor')}."
    ]


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"
