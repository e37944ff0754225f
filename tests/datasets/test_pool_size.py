"""pool_size is one row read yet exact: every way membership can change keeps it right.

The reference is the counting query (``pool_members_queryset``) and the snapshot the
queries read; the database's triggers must agree with both after each step, including
writes that bypass the services (bulk inserts, queryset updates and deletes).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from cleanroom.datasets.models import Consent, Contribution, PoolCount
from cleanroom.datasets.pool import pool_snapshot
from cleanroom.datasets.selectors import pool_members_queryset, pool_size
from cleanroom.datasets.services import (
    consent_give,
    consent_withdraw,
    contributions_expire,
    contributor_erase_request,
    contributor_erase_run,
    dataset_update,
    pool_compact,
)
from cleanroom.errors import DomainError, Forbidden
from tests.datasets.conftest import HOUSEHOLDS_POLICY, record


def check(dataset: Any, expected: int) -> None:
    assert pool_size(dataset=dataset) == expected
    assert pool_members_queryset(dataset=dataset).count() == expected
    assert pool_snapshot(dataset=dataset).size == expected
    if connection.vendor == "postgresql":  # the counter, not the fallback, answered
        row = PoolCount.objects.filter(dataset=dataset).first()
        assert (row.members if row else 0) == expected


def test_every_membership_change_keeps_the_count_exact(
    dataset: Any,
    make_dataset: Any,
    consented: Any,
    make_contributor: Any,
    upload: Any,
    compliance_user: Any,
) -> None:
    other = make_dataset(slug="commutes", name="Commutes")
    check(dataset, 0)
    a, b, c = consented(), consented(), consented()
    check(dataset, 0)  # consent without data
    upload(a, dataset, [record()])
    upload(a, dataset, [record(age=40)])  # a second upload counts once
    upload(b, dataset, [record()])
    check(dataset, 2)
    consent_give(contributor=c, dataset=other)
    upload(c, other, [record()])
    check(dataset, 2)
    check(other, 1)

    consent_withdraw(contributor=b, dataset=dataset)
    check(dataset, 1)
    consent_give(contributor=b, dataset=dataset)  # back, with the data already held
    check(dataset, 2)

    # New terms: nobody is on them until they consent again.
    dataset_update(
        actor=compliance_user,
        dataset=dataset,
        changes={"policy": {**HOUSEHOLDS_POLICY, "total_epsilon": "20"}},
    )
    dataset.refresh_from_db()
    check(dataset, 0)
    consent_give(contributor=a, dataset=dataset)
    check(dataset, 1)
    with pytest.raises(Forbidden):  # c's consent is on the old terms
        upload(c, dataset, [record()])
    check(dataset, 1)
    consent_give(contributor=c, dataset=dataset)
    upload(c, dataset, [record()])
    check(dataset, 2)

    # Bulk writes that bypass the services are counted too.
    d = make_contributor()
    consent_give(contributor=d, dataset=dataset)
    d_upload = upload(d, dataset, [record()])
    check(dataset, 3)
    Contribution.objects.filter(pk=d_upload.pk).delete()
    check(dataset, 2)
    Contribution.objects.bulk_create(  # one statement, the same contributor three times
        [
            Contribution(dataset=dataset, contributor=d, rows=1, ciphertext=d_upload.ciphertext)
            for _ in range(3)
        ]
    )
    check(dataset, 3)
    Contribution.objects.filter(contributor=d, dataset=dataset).delete()  # all three at once
    check(dataset, 2)
    Consent.objects.filter(dataset=dataset, contributor=c, withdrawn_at__isnull=True).update(
        withdrawn_at=timezone.now()
    )
    check(dataset, 1)
    consent_give(contributor=c, dataset=dataset)
    check(dataset, 2)

    # Retention: a's older uploads expire, the newer one keeps a in the pool; then all go.
    pool_compact(dataset_pk=dataset.pk)
    a_uploads = list(Contribution.objects.filter(contributor=a, dataset=dataset).order_by("pk"))
    Contribution.objects.filter(pk=a_uploads[0].pk).update(
        created_at=timezone.now() - timedelta(days=400)
    )
    assert contributions_expire() == 1
    check(dataset, 2)
    Contribution.objects.filter(contributor=a, dataset=dataset).update(
        created_at=timezone.now() - timedelta(days=400)
    )
    assert contributions_expire() == 1
    check(dataset, 1)

    # Erasure: out at the request, still out after the purge, everywhere.
    contributor_erase_request(contributor=c)
    check(dataset, 0)
    check(other, 0)
    erasure = c.erasures.get()
    contributor_erase_run(erasure_pk=erasure.pk)
    check(dataset, 0)
    check(other, 0)
    assert not Contribution.objects.filter(contributor=c).exists()


def test_failed_upload_leaves_the_count_alone(dataset: Any, consented: Any, upload: Any) -> None:
    person = consented()
    with pytest.raises(DomainError):
        upload(person, dataset, [record(age=5)])  # below the column's lower bound
    check(dataset, 0)
    upload(person, dataset, [record()])
    check(dataset, 1)
