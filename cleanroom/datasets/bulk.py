"""The bulk path into a pool: many contributors' consents and uploads in a few statements.

For synthetic populations only (the demo's and the benchmarks'). It writes what the
services write one upload at a time: a consent on the current terms, one data key per
contributor wrapped by the KEK, each upload encrypted under its contributor's key
(the contributor's own copy, for export and erasure), and, unless ``audit=False``, the
same ``cleanroom.consent.given`` and ``cleanroom.contribution.uploaded`` events. Since
it holds the plaintext, it also writes the pool segments itself (what compaction would
decrypt the uploads again to build): the uploads are stored ``is_compacted`` in the
same transaction as the segment that holds their rows, under the pool's lock, so each
row is in exactly one place of the pool, as compaction guarantees (compaction merges the
small segments later).

It does not validate values: the caller builds them from the schema (Arrow checks the
types) within the policy's ``max_rows_per_contributor``. Contributors passed must not
have consented to, nor hold rows in, the datasets they are seeded into.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
from django.db import transaction

from audit.services import audit_record_many
from cleanroom.accounts.models import Contributor
from cleanroom.datasets import crypto, storage
from cleanroom.datasets.models import Consent, Contribution, ContributorKey, Dataset
from cleanroom.datasets.services import _pool_lock, _segments_write
from cleanroom.errors import Conflict, ValidationFailed

BATCH = 1000


@dataclass(frozen=True)
class BulkUpload:
    """One dataset's rows for every contributor: ``rows`` values each, in contributor order."""

    dataset: Dataset
    columns: dict[str, Any]
    rows: int


def _keys_for(contributors: list[Contributor]) -> dict[int, bytes]:
    """Each contributor's data key: unwrapped if they have one, created and wrapped if not."""
    existing = {
        record.contributor_id: record
        for record in ContributorKey.objects.filter(contributor__in=contributors)
    }
    keys: dict[int, bytes] = {}
    new_records = []
    for contributor in contributors:
        record = existing.get(contributor.pk)
        if record is not None:
            keys[contributor.pk] = storage.data_key_unwrap(record)
            continue
        key = crypto.new_key()
        kek_id, wrapped = crypto.wrap(key, f"contributor-key:{contributor.pk}".encode())
        new_records.append(ContributorKey(contributor=contributor, wrapped=wrapped, kek_id=kek_id))
        keys[contributor.pk] = key
    ContributorKey.objects.bulk_create(new_records, batch_size=BATCH)
    return keys


def _table(upload: BulkUpload, contributors: int) -> pa.Table:
    dataset = upload.dataset
    limit = int(dataset.policy["max_rows_per_contributor"])
    if not 1 <= upload.rows <= limit:
        raise ValidationFailed(
            f"rows per contributor must be from 1 to the policy's {limit} ({dataset.slug})."
        )
    schema = storage.arrow_schema(dataset, with_contributor=False)
    table = pa.table(
        {
            name: pa.array(upload.columns[name], type=schema.field(name).type)
            for name in schema.names
        },
        schema=schema,
    )
    if table.num_rows != contributors * upload.rows:
        raise ValidationFailed(f"columns must hold {upload.rows} row(s) per contributor.")
    return table


def _events(
    dataset: Dataset, people: list[Contributor], stored: list[Contribution], rows: int
) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for contributor, upload in zip(people, stored, strict=True):
        subject = f"contributor:{contributor.pk}"
        events.append(
            {
                "action": "cleanroom.consent.given",
                "actor": contributor.user,
                "subject": subject,
                "dataset": dataset.slug,
                "payload": {
                    "terms_version": dataset.terms_version,
                    "replaces_terms_version": None,
                    "privacy_cap": None,
                },
            }
        )
        events.append(
            {
                "action": "cleanroom.contribution.uploaded",
                "actor": contributor.user,
                "subject": subject,
                "dataset": dataset.slug,
                "payload": {"contribution": upload.pk, "rows": rows},
            }
        )
    return events


def _frame(
    table: pa.Table, contributors: list[Contributor], stored: list[Contribution], rows: int
) -> pl.DataFrame:
    """The rows as compaction lays them out: owner, provenance (the upload), then columns."""
    owners = np.repeat(np.asarray([c.pk for c in contributors], dtype=np.int64), rows)
    origins = np.repeat(np.asarray([s.pk for s in stored], dtype=np.int64), rows)
    with_ids = table.add_column(0, storage.PROVENANCE, pa.array(origins))
    frame = pl.from_arrow(with_ids.add_column(0, "contributor_id", pa.array(owners)))
    assert isinstance(frame, pl.DataFrame)
    return frame


def contributions_bulk_seed(
    *,
    contributors: list[Contributor],
    uploads: list[BulkUpload],
    audit: bool = True,
    compacted: bool = True,
) -> int:
    """Consent every contributor to each upload's dataset and store their rows.

    Returns the rows stored. Each batch of ``BATCH`` contributors is one transaction (the
    pool counter's trigger updates one row per new member: a long transaction would
    drag an ever longer chain of its versions). ``compacted=False`` leaves the uploads
    waiting for ``pool_compact`` (the pool benchmark measures that step).
    """
    tables = [_table(upload, len(contributors)) for upload in uploads]
    if Consent.objects.filter(
        contributor__in=contributors, dataset__in=[u.dataset for u in uploads]
    ).exists():
        raise Conflict("Some of these contributors already consented to one of the datasets.")
    for start in range(0, len(contributors), BATCH):
        _batch_seed(
            contributors[start : start + BATCH],
            [
                (upload, table.slice(start * upload.rows, BATCH * upload.rows))
                for upload, table in zip(uploads, tables, strict=True)
            ],
            audit=audit,
            compacted=compacted,
        )
    return sum(table.num_rows for table in tables)


@transaction.atomic
def _batch_seed(
    people: list[Contributor],
    uploads: list[tuple[BulkUpload, pa.Table]],
    *,
    audit: bool,
    compacted: bool,
) -> None:
    keys = _keys_for(people)
    for upload, table in uploads:
        dataset, rows = upload.dataset, upload.rows
        with _pool_lock(dataset.pk):
            Consent.objects.bulk_create(
                [
                    Consent(contributor=c, dataset=dataset, terms_version=dataset.terms_version)
                    for c in people
                ]
            )
            stored = Contribution.objects.bulk_create(
                [
                    Contribution(
                        dataset=dataset,
                        contributor=contributor,
                        rows=rows,
                        is_compacted=compacted,
                        ciphertext=storage.contribution_encrypt(
                            key=keys[contributor.pk],
                            dataset=dataset,
                            contributor=contributor,
                            table=table.slice(number * rows, rows),
                        ),
                    )
                    for number, contributor in enumerate(people)
                ]
            )
            if compacted:
                _segments_write(dataset, _frame(table, people, stored, rows))
            if audit:
                audit_record_many(events=_events(dataset, people, stored, rows))
