"""Encrypted columnar segments: the one place where pool bytes are encoded and (de)crypted.

Contribution segments are Arrow IPC streams of the schema columns of one upload
(cheap to write and read for small uploads), AES-256-GCM encrypted under the
contributor's data key. Pool segments are Parquet files of ``contributor_id`` and
the schema columns, encrypted under their own segment key, stored as files under
``MEDIA_ROOT/pool/<database>/<dataset>/``. Both keys are
stored wrapped by the KEK (see ``crypto``).
"""

from __future__ import annotations

import io
import os
import uuid
from pathlib import Path
from typing import Any, Final

import polars as pl
import pyarrow as pa
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from cleanroom.accounts.models import Contributor
from cleanroom.datasets import crypto
from cleanroom.datasets.models import Contribution, ContributorKey, Dataset, PoolSegment

ARROW_TYPES: dict[str, pa.DataType] = {
    "integer": pa.int64(),
    "float": pa.float64(),
    "string": pa.large_string(),
    "boolean": pa.bool_(),
}


# Uncompressed Parquet (dictionary and run-length encoded all the same) decodes about
# twice as fast as zstd, and the pool is read far more often than written.
SEGMENT_COMPRESSION: Final = "uncompressed"


# Pool segments also carry the id of the upload each row came from, so retention can
# remove exactly the expired uploads (the pool itself never reads this column).
PROVENANCE = "contribution_id"


class DataKeyDestroyed(Exception):
    """The contributor was erased: their data key no longer exists."""


def arrow_schema(dataset: Dataset, *, with_contributor: bool) -> pa.Schema:
    fields = [pa.field("contributor_id", pa.int64(), nullable=False)] if with_contributor else []
    for column in dataset.schema["columns"]:
        fields.append(pa.field(column["name"], ARROW_TYPES[column["type"]], nullable=False))
    return pa.schema(fields)


def table_to_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue())


def bytes_to_table(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


def _key_aad(contributor_pk: int) -> bytes:
    return f"contributor-key:{contributor_pk}".encode()


def _contribution_aad(dataset_pk: int, contributor_pk: int) -> bytes:
    return f"contribution:{dataset_pk}:{contributor_pk}".encode()


def _segment_aad(dataset_pk: int) -> bytes:
    return f"segment:{dataset_pk}".encode()


def data_key_for_write(*, contributor: Contributor) -> bytes:
    """The contributor's data key, created (and wrapped) on their first upload."""
    record = ContributorKey.objects.select_for_update().filter(contributor=contributor).first()
    if record is None:
        key = crypto.new_key()
        kek_id, wrapped = crypto.wrap(key, _key_aad(contributor.pk))
        ContributorKey.objects.create(contributor=contributor, wrapped=wrapped, kek_id=kek_id)
        return key
    if record.wrapped is None:
        # A new upload after erasure starts over with a fresh key: old rows stay unreadable.
        key = crypto.new_key()
        kek_id, wrapped = crypto.wrap(key, _key_aad(contributor.pk))
        record.wrapped, record.kek_id, record.destroyed_at = wrapped, kek_id, None
        record.save(update_fields=["wrapped", "kek_id", "destroyed_at"])
        return key
    return crypto.unwrap(record.kek_id, bytes(record.wrapped), _key_aad(contributor.pk))


def data_key_unwrap(record: ContributorKey) -> bytes:
    if record.wrapped is None:
        raise DataKeyDestroyed(f"contributor {record.contributor_id} was erased")
    return crypto.unwrap(record.kek_id, bytes(record.wrapped), _key_aad(record.contributor_id))


def data_key_rewrap(record: ContributorKey) -> bool:
    """Re-wrap under the current KEK; False if it already was (or was destroyed)."""
    current_id, _ = crypto.current_kek()
    if record.wrapped is None or record.kek_id == current_id:
        return False
    key = data_key_unwrap(record)
    record.kek_id, record.wrapped = crypto.wrap(key, _key_aad(record.contributor_id))
    record.save(update_fields=["kek_id", "wrapped"])
    return True


def segment_key_rewrap(segment: PoolSegment) -> bool:
    current_id, _ = crypto.current_kek()
    if segment.kek_id == current_id:
        return False
    key = crypto.unwrap(
        segment.kek_id, bytes(segment.wrapped_key), _segment_aad(segment.dataset_id)
    )
    segment.kek_id, segment.wrapped_key = crypto.wrap(key, _segment_aad(segment.dataset_id))
    segment.save(update_fields=["kek_id", "wrapped_key"])
    return True


def contribution_encrypt(
    *, key: bytes, dataset: Dataset, contributor: Contributor, table: pa.Table
) -> bytes:
    return crypto.encrypt(key, table_to_bytes(table), _contribution_aad(dataset.pk, contributor.pk))


def contribution_decrypt(*, key: bytes, contribution: Contribution) -> pa.Table:
    data = crypto.decrypt(
        key,
        bytes(contribution.ciphertext),
        _contribution_aad(contribution.dataset_id, contribution.contributor_id),
    )
    return bytes_to_table(data)


def contribution_frame(*, key: bytes, contribution: Contribution) -> pl.DataFrame:
    """An upload's rows with its owner's contributor_id and its own id (provenance) first."""
    table = contribution_decrypt(key=key, contribution=contribution)
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame.select(
        pl.lit(contribution.contributor_id, dtype=pl.Int64).alias("contributor_id"),
        pl.lit(contribution.pk, dtype=pl.Int64).alias(PROVENANCE),
        pl.all(),
    )


def _pool_directory() -> Path:
    """MEDIA_ROOT/pool/<database>: databases sharing a media folder never see each other."""
    database = Path(str(settings.DATABASES["default"]["NAME"])).stem
    token = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in database) or "default"
    return Path(settings.MEDIA_ROOT) / "pool" / token


def segment_path(file_name: str) -> Path:
    return _pool_directory() / file_name


def segment_build(*, dataset: Dataset, frame: pl.DataFrame, contributors: int) -> PoolSegment:
    """Encrypt a frame (with contributor_id) as Parquet under a fresh segment key; unsaved.

    The file is written before the row is saved; if the transaction rolls back, the file
    is an orphan whose key was never committed (unreadable), removed by ``segments_sweep``.
    """
    key = crypto.new_key()
    kek_id, wrapped = crypto.wrap(key, _segment_aad(dataset.pk))
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression=SEGMENT_COMPRESSION, statistics=False)
    blob = crypto.encrypt(key, buffer.getvalue(), _segment_aad(dataset.pk))
    file_name = f"{dataset.pk}/{uuid.uuid4().hex}.seg"
    path = segment_path(file_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(blob)
    os.replace(temporary, path)
    return PoolSegment(
        dataset=dataset,
        wrapped_key=wrapped,
        kek_id=kek_id,
        file_name=file_name,
        size=len(blob),
        rows=frame.height,
        contributors=contributors,
        created_at=timezone.now(),
    )


def segment_decrypt(
    *,
    dataset_pk: int,
    kek_id: str,
    wrapped_key: Any,
    file_name: str,
    columns: list[str] | None = None,
) -> pl.DataFrame:
    """Read, authenticate and decode a pool segment (FileNotFoundError if it was replaced).

    ``columns`` decodes only those (the pool skips the provenance column).
    """
    aad = _segment_aad(dataset_pk)
    key = crypto.unwrap(kek_id, bytes(wrapped_key), aad)
    blob = segment_path(file_name).read_bytes()
    return pl.read_parquet(io.BytesIO(crypto.decrypt(key, blob, aad)), columns=columns)


def segment_delete(segment: PoolSegment) -> None:
    """Delete the row now and the file once the deletion commits."""
    path = segment_path(segment.file_name)
    segment.delete()
    transaction.on_commit(lambda: path.unlink(missing_ok=True))


def segments_sweep(*, dataset_pk: int) -> int:
    """Remove files of a dataset that no committed segment refers to (call under the pool lock)."""
    directory = _pool_directory() / str(dataset_pk)
    if not directory.is_dir():
        return 0
    known = set(
        PoolSegment.objects.filter(dataset_id=dataset_pk).values_list("file_name", flat=True)
    )
    removed = 0
    for path in directory.iterdir():
        if f"{dataset_pk}/{path.name}" not in known:
            path.unlink(missing_ok=True)
            removed += 1
    return removed
