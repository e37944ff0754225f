"""Demo data of datasets for `manage.py seed_demo` (idempotent).

Publishes two datasets (one auto-approved, one reviewed by compliance) and, for the
contributors that the identity demo admitted through their wallets, consents and
uploads synthetic household records through the same services as the API, then
compacts the pools so they are ready for the queries demo.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cleanroom.accounts.models import Contributor, User
from cleanroom.datasets.models import Contribution, Dataset
from cleanroom.datasets.services import (
    consent_give,
    contribution_upload,
    dataset_create,
    pool_compact,
)

REGIONS = ["north", "south", "east", "west"]
MODES = ["car", "bike", "bus", "train", "walk"]
ROWS_PER_CONTRIBUTOR = 8

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
                {"name": "income", "type": "float", "lower": 0, "upper": 250000},
                {"name": "household_size", "type": "integer", "lower": 1, "upper": 10},
                {"name": "visits", "type": "integer", "lower": 0, "upper": 60},
                {"name": "owns_home", "type": "boolean"},
            ]
        },
        "policy": {
            "total_epsilon": "10",
            "max_query_epsilon": "1",
            "min_contributors": 5,
            "max_rows_per_contributor": 50,
            "auto_approve": True,
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
                {"name": "minutes", "type": "integer", "lower": 0, "upper": 180},
            ]
        },
        "policy": {
            "total_epsilon": "5",
            "max_query_epsilon": "0.5",
            "min_contributors": 5,
            "max_rows_per_contributor": 30,
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


def _records(slug: str, rng: np.random.Generator) -> list[dict[str, Any]]:
    rows = []
    for _ in range(ROWS_PER_CONTRIBUTOR):
        if slug == "households":
            rows.append(
                {
                    "age": int(np.clip(rng.normal(45, 14), 18, 100)),
                    "region": REGIONS[int(rng.integers(len(REGIONS)))],
                    "income": round(float(np.clip(rng.lognormal(10.4, 0.5), 0, 250000)), 2),
                    "household_size": int(np.clip(rng.poisson(1.5) + 1, 1, 10)),
                    "visits": int(np.clip(rng.poisson(5), 0, 60)),
                    "owns_home": bool(rng.random() < 0.6),
                }
            )
        else:
            rows.append(
                {
                    "region": REGIONS[int(rng.integers(len(REGIONS)))],
                    "mode": MODES[int(rng.integers(len(MODES)))],
                    "minutes": int(np.clip(rng.gamma(3, 9), 0, 180)),
                }
            )
    return rows


def seed(*, stdout: Any = None) -> list[str]:
    officer = User.objects.filter(role="compliance").order_by("pk").first()
    if officer is None:
        return ["Datasets: no compliance officer, skipped."]
    for definition in DATASETS:
        if not Dataset.objects.filter(slug=definition["slug"]).exists():
            dataset_create(actor=officer, **definition)
    # Only contributors admitted through a verified presentation (the identity demo).
    contributors = list(Contributor.objects.select_related("user").order_by("pk"))
    rng = np.random.default_rng(7)
    uploads = 0
    for slug in ("households", "commutes"):
        dataset = Dataset.objects.get(slug=slug)
        # The last demo contributor stays out of the commutes pool, to show a choice.
        members = contributors if slug == "households" else contributors[:-1]
        for contributor in members:
            if Contribution.objects.filter(dataset=dataset, contributor=contributor).exists():
                continue
            consent_give(contributor=contributor, dataset=dataset)
            contribution_upload(
                contributor=contributor, dataset=dataset, records=_records(slug, rng)
            )
            uploads += 1
        pool_compact(dataset_pk=dataset.pk)
    return [
        f"Datasets: households and commutes published; {uploads} demo upload(s) of "
        f"{ROWS_PER_CONTRIBUTOR} rows by {len(contributors)} wallet-verified contributor(s)."
    ]
