"""Compact, immutable description of a pool's membership: sorted contributor pk ranges.

A pool is a sorted set of contributor pks. It is stored as half-open ranges
``[start, end)`` (a run-length encoding), which is tiny for the usual pool (pks are
allocated in join order; a withdrawal splits one range) and is exactly what the
settlement's difference array needs. The stored bytes are delta-encoded int64 runs,
zlib-compressed; the hash is SHA-256 over the canonical (uncompressed, little-endian
int64 ``start, end`` pairs) form, so it does not depend on the compressor.

>>> import numpy as np
>>> r = ranges_from_members(np.array([1, 2, 3, 7, 8, 10], dtype=np.int64))
>>> r.tolist()
[[1, 4], [7, 9], [10, 11]]
>>> members_from_ranges(ranges_decode(ranges_encode(r))).tolist()
[1, 2, 3, 7, 8, 10]
>>> ranges_contains(r, 8), ranges_contains(r, 9)
(True, False)
"""

from __future__ import annotations

import hashlib
import zlib

import numpy as np

from cleanroom.errors import ValidationFailed

FORMAT_VERSION = b"R1"


def ranges_from_members(members: np.ndarray) -> np.ndarray:
    """(k, 2) int64 array of [start, end) runs of a strictly increasing pk array."""
    members = np.asarray(members, dtype=np.int64)
    if members.ndim != 1:
        raise ValidationFailed("Pool members must be a one-dimensional array of contributor pks.")
    if members.size == 0:
        return np.empty((0, 2), dtype=np.int64)
    steps = np.diff(members)
    if steps.size and int(steps.min()) <= 0:
        raise ValidationFailed("Pool members must be sorted and distinct.")
    if int(members[0]) < 0:
        raise ValidationFailed("Contributor pks are positive.")
    breaks = np.flatnonzero(steps != 1)
    starts = np.concatenate(([members[0]], members[breaks + 1]))
    ends = np.concatenate((members[breaks] + 1, [members[-1] + 1]))
    return np.stack((starts, ends), axis=1)


def ranges_size(ranges: np.ndarray) -> int:
    return int((ranges[:, 1] - ranges[:, 0]).sum()) if len(ranges) else 0


def ranges_hash(ranges: np.ndarray) -> str:
    canonical = np.ascontiguousarray(ranges, dtype="<i8").tobytes()
    return hashlib.sha256(FORMAT_VERSION + canonical).hexdigest()


def ranges_encode(ranges: np.ndarray) -> bytes:
    flat = np.ascontiguousarray(ranges, dtype=np.int64).reshape(-1)
    deltas = np.diff(flat, prepend=np.int64(0)).astype("<i8")
    return FORMAT_VERSION + zlib.compress(deltas.tobytes(), 1)


def ranges_decode(blob: bytes) -> np.ndarray:
    blob = bytes(blob)
    if not blob.startswith(FORMAT_VERSION):
        raise ValueError("unknown membership encoding")
    deltas = np.frombuffer(zlib.decompress(blob[len(FORMAT_VERSION) :]), dtype="<i8")
    return np.cumsum(deltas, dtype=np.int64).reshape(-1, 2)


def members_from_ranges(ranges: np.ndarray) -> np.ndarray:
    if not len(ranges):
        return np.empty(0, dtype=np.int64)
    lengths = ranges[:, 1] - ranges[:, 0]
    offsets = np.repeat(ranges[:, 0] - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    return np.arange(int(lengths.sum()), dtype=np.int64) + offsets


def ranges_contains(ranges: np.ndarray, pk: int) -> bool:
    if not len(ranges):
        return False
    index = int(np.searchsorted(ranges[:, 0], pk, side="right")) - 1
    return index >= 0 and int(ranges[index, 1]) > pk
