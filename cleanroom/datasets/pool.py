"""The one reader of the pool: ``pool_snapshot`` materializes the consented contributors' rows.

This is the only way the clean room (the DP engine, inside a worker) reads contributed
rows. Everything else that decrypts is the pool's own upkeep or the contributor's own
right: compaction, erasure and retention jobs (``services``) rewrite segments, and the
export decrypts a contributor's uploads for that contributor only. Membership is decided here, in the same database
snapshot as the rows: open consent on the current terms version (hence a live data
key) and at least one row. Rows of anyone else (withdrawn, outdated consent,
erased but not yet purged) are filtered out before the frame is returned.

Erasure and crypto-shredding: destroying a contributor's data key makes their uploads
(``Contribution``, encrypted under that key) unreadable at once, but NOT their rows in
compacted segments, which are encrypted under per-segment keys. Those rows are excluded
here from the moment of the request (the erasure closes their consents) and are
physically removed only when the erasure job rewrites the segments; the job retries and
a reaper re-queues stuck erasures (see ``services`` module docstring).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from django.db import connection, transaction

from cleanroom.datasets import storage
from cleanroom.datasets.models import Consent, Contribution, ContributorKey, Dataset, PoolSegment

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


def _excluded(dataset: Dataset) -> np.ndarray:
    """Contributors with a consent record here but no open consent on the current terms.

    Everyone whose rows are stored consented when they uploaded (an upload needs an open
    current consent and consent records are never deleted), so the pool is the stored
    contributors minus these: withdrawn, erased (erasure closes every consent in the
    transaction that destroys the key, and no consent is accepted while it is pending),
    or still on older terms. The query costs what the exceptions cost, not the pool size.
    """
    # Three index-only reads (see the partial indexes on Consent), each as small as the
    # exceptions, so the plan stays cheap whatever the table statistics say.
    closed = Consent.objects.filter(dataset=dataset, withdrawn_at__isnull=False)
    older = Consent.objects.filter(
        dataset=dataset, withdrawn_at__isnull=True, terms_version__lt=dataset.terms_version
    )
    candidates = set(closed.values_list("contributor_id", flat=True)) | set(
        older.values_list("contributor_id", flat=True)
    )
    if not candidates:
        return np.empty(0, dtype=np.int64)
    current = set(
        Consent.objects.filter(
            dataset=dataset,
            withdrawn_at__isnull=True,
            terms_version=dataset.terms_version,
            contributor_id__in=candidates,
        ).values_list("contributor_id", flat=True)
    )
    return np.array(sorted(candidates - current), dtype=np.int64)


def _present(frames: list[pl.DataFrame]) -> np.ndarray:
    """Sorted distinct contributor ids of the frames (segments are sorted by contributor)."""
    parts = []
    for frame in frames:
        ids = frame.get_column("contributor_id").to_numpy()
        if ids.size and not bool(np.all(ids[1:] >= ids[:-1])):
            ids = np.sort(ids)
        parts.append(ids[np.r_[True, ids[1:] != ids[:-1]]] if ids.size else ids)
    if len(parts) == 1:
        return parts[0].astype(np.int64, copy=False)
    return np.unique(np.concatenate(parts)).astype(np.int64, copy=False)


def _segment_rows(dataset: Dataset) -> list[tuple[str, Any, str]]:
    """(kek_id, wrapped_key, file_name) of the dataset's segments."""
    return list(
        PoolSegment.objects.filter(dataset=dataset)
        .order_by("pk")
        .values_list("kek_id", "wrapped_key", "file_name")
    )


def _frames(dataset: Dataset) -> list[pl.DataFrame]:
    frames: list[pl.DataFrame] = []
    columns = list(polars_schema(dataset))
    for kek_id, wrapped_key, file_name in _segment_rows(dataset):
        frames.append(
            storage.segment_decrypt(
                dataset_pk=dataset.pk,
                kek_id=kek_id,
                wrapped_key=wrapped_key,
                file_name=file_name,
                columns=columns,
            )
        )
    # Uploads not yet compacted: few by construction (compaction follows every upload).
    pending = Contribution.objects.filter(dataset=dataset, is_compacted=False).order_by(
        "contributor_id", "pk"
    )
    keys: dict[int, bytes | None] = {}
    for contribution in pending:
        if contribution.contributor_id not in keys:
            record = ContributorKey.objects.get(contributor_id=contribution.contributor_id)
            keys[contribution.contributor_id] = (
                None if record.wrapped is None else storage.data_key_unwrap(record)
            )
        key = keys[contribution.contributor_id]
        if key is None:
            continue  # erased: unreadable, and purged by the erasure job
        frames.append(storage.contribution_frame(key=key, contribution=contribution))
    return frames


def _read(dataset: Dataset) -> PoolSnapshot:
    schema = polars_schema(dataset)
    excluded = _excluded(dataset)
    frames = [frame.select(list(schema)) for frame in _frames(dataset)]
    if not frames:
        empty = pl.DataFrame(schema=schema)
        return PoolSnapshot(frame=empty.lazy(), members=np.empty(0, dtype=np.int64), size=0)
    present = _present(frames)
    frame = pl.concat(frames, how="vertical", rechunk=False) if len(frames) > 1 else frames[0]
    members = np.setdiff1d(present, excluded, assume_unique=True) if excluded.size else present
    if members.size < present.size:
        # Someone withdrew, is on older terms, or was erased: drop their rows.
        frame = frame.filter(
            ~pl.col("contributor_id").is_in(pl.Series(excluded, dtype=pl.Int64).implode())
        )
    frame = frame.cast(schema)  # type: ignore[arg-type]
    return PoolSnapshot(frame=frame.lazy(), members=members, size=int(members.size))


def pool_without(snapshot: PoolSnapshot, excluded: np.ndarray) -> PoolSnapshot:
    """The snapshot without these members' rows (e.g. those a recovered run was not
    charged for)."""
    members = np.setdiff1d(snapshot.members, excluded, assume_unique=True)
    frame = snapshot.frame.filter(
        ~pl.col("contributor_id").is_in(pl.Series(excluded, dtype=pl.Int64).implode())
    )
    return PoolSnapshot(frame=frame, members=members, size=int(members.size))


def pool_snapshot(*, dataset: Dataset) -> PoolSnapshot:
    """The pool of consented contributors' rows as of now, with sorted member pks.

    Members and rows come from one database snapshot (REPEATABLE READ on PostgreSQL
    when not already inside a transaction), so a concurrent compaction or consent
    change cannot make them disagree.
    """
    for attempt in range(3):
        try:
            return _read_consistently(dataset)
        except FileNotFoundError:
            # A compaction or erasure replaced a segment after our transaction began;
            # a fresh transaction sees the new segments.
            if attempt == 2 or connection.in_atomic_block:
                raise
    raise AssertionError("unreachable")


def _read_consistently(dataset: Dataset) -> PoolSnapshot:
    if connection.in_atomic_block or connection.vendor != "postgresql":
        with transaction.atomic():
            return _read(Dataset.objects.get(pk=dataset.pk))
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        return _read(Dataset.objects.get(pk=dataset.pk))
