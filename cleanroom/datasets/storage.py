"""Encrypted columnar segments: the one place where pool bytes are encoded and (de)crypted.

A segment is an Arrow IPC stream (one record batch per written chunk) of typed
columns, AES-256-GCM encrypted. Contribution segments hold the schema columns of
one upload under the contributor's data key; pool segments additionally hold
``contributor_id`` and are encrypted under their own segment key. Both keys are
stored wrapped by the KEK (see ``crypto``).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
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


def segment_build(*, dataset: Dataset, table: pa.Table, contributors: int) -> PoolSegment:
    """Encrypt a table (with contributor_id) under a fresh segment key; unsaved."""
    key = crypto.new_key()
    kek_id, wrapped = crypto.wrap(key, _segment_aad(dataset.pk))
    return PoolSegment(
        dataset=dataset,
        wrapped_key=wrapped,
        kek_id=kek_id,
        ciphertext=crypto.encrypt(key, table_to_bytes(table), _segment_aad(dataset.pk)),
        rows=table.num_rows,
        contributors=contributors,
        created_at=timezone.now(),
    )


def segment_decrypt(*, dataset_pk: int, kek_id: str, wrapped_key: Any, ciphertext: Any) -> pa.Table:
    aad = _segment_aad(dataset_pk)
    key = crypto.unwrap(kek_id, bytes(wrapped_key), aad)
    return bytes_to_table(crypto.decrypt(key, ciphertext, aad))
