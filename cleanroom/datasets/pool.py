"""The one reader of the pool: ``pool_snapshot`` materializes the consented contributors' rows.

Only this module (through ``storage``) decrypts pool data for the clean room, and it
is meant to run inside a worker. Membership is decided here, in the same database
snapshot as the rows: open consent on the current terms version, a live data key,
and at least one contribution. Rows of anyone else (withdrawn, outdated consent,
erased but not yet purged) are filtered out before the frame is returned.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa
from django.db import connection, transaction

from cleanroom.datasets import storage
from cleanroom.datasets.models import Contribution, ContributorKey, Dataset, PoolSegment
from cleanroom.datasets.selectors import pool_members_queryset

POLARS_TYPES: dict[str, type[pl.DataType]] = {
    "integer": pl.Int64,
    "float": pl.Float64,
    "string": pl.String,
    "boolean": pl.Boolean,
}


@dataclass(frozen=True)
class PoolSnapshot:
    frame: pl.LazyFrame
    members: np.ndarray
    size: int


def polars_schema(dataset: Dataset) -> dict[str, type[pl.DataType]]:
    out: dict[str, type[pl.DataType]] = {"contributor_id": pl.Int64}
    for column in dataset.schema["columns"]:
        out[column["name"]] = POLARS_TYPES[column["type"]]
    return out


def _members(dataset: Dataset) -> np.ndarray:
    queryset = (
        pool_members_queryset(dataset=dataset)
        .order_by("contributor_id")
        .values_list("contributor_id", flat=True)
    )
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))


def _tables(dataset: Dataset) -> list[pa.Table]:
    target = storage.arrow_schema(dataset, with_contributor=True)
    tables: list[pa.Table] = []
    segments = PoolSegment.objects.filter(dataset=dataset).order_by("pk")
    for kek_id, wrapped_key, ciphertext in segments.values_list(
        "kek_id", "wrapped_key", "ciphertext"
    ):
        tables.append(
            storage.segment_decrypt(
                dataset_pk=dataset.pk, kek_id=kek_id, wrapped_key=wrapped_key, ciphertext=ciphertext
            )
        )
    # Uploads not yet compacted: few by construction (compaction follows every upload).
    pending = (
        Contribution.objects.filter(dataset=dataset, is_compacted=False)
        .select_related(None)
        .order_by("contributor_id", "pk")
    )
    keys: dict[int, bytes] = {}
    for contribution in pending:
        key = keys.get(contribution.contributor_id)
        if key is None:
            record = ContributorKey.objects.get(contributor_id=contribution.contributor_id)
            if record.wrapped is None:
                continue
            key = keys[contribution.contributor_id] = storage.data_key_unwrap(record)
        table = storage.contribution_decrypt(key=key, contribution=contribution)
        ids = pa.array(np.full(table.num_rows, contribution.contributor_id, dtype=np.int64))
        tables.append(table.add_column(0, "contributor_id", ids).cast(target))
    return [t if t.schema == target else t.cast(target) for t in tables]


def _read(dataset: Dataset) -> PoolSnapshot:
    members = _members(dataset)
    tables = _tables(dataset)
    schema = polars_schema(dataset)
    if tables:
        frame = pl.from_arrow(pa.concat_tables(tables))
        assert isinstance(frame, pl.DataFrame)
        frame = frame.filter(pl.col("contributor_id").is_in(pl.Series(members)))
        frame = frame.cast(schema)  # type: ignore[arg-type]
    else:
        frame = pl.DataFrame(schema=schema)
    return PoolSnapshot(frame=frame.lazy(), members=members, size=int(members.size))


def pool_snapshot(*, dataset: Dataset) -> PoolSnapshot:
    """The pool of consented contributors' rows as of now, with sorted member pks.

    Members and rows come from one database snapshot (REPEATABLE READ on PostgreSQL
    when not already inside a transaction), so a concurrent compaction or consent
    change cannot make them disagree.
    """
    if connection.in_atomic_block or connection.vendor != "postgresql":
        with transaction.atomic():
            return _read(dataset)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        return _read(dataset)
