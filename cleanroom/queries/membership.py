"""Compact pool membership: sorted contributor pks as zlib-compressed ``[start, stop)`` ranges.

Contributor pks are assigned in sign-up order, so a pool of 100,000 members is a few
ranges, not 100,000 rows. A contributor's privacy loss is then the sum over runs whose
ranges contain their pk (binary search), with no per-contributor row per query.

>>> import numpy as np
>>> blob = ranges_encode(np.array([1, 2, 3, 7, 9, 10], dtype=np.int64))
>>> ranges_decode(blob).tolist()
[[1, 4], [7, 8], [9, 11]]
>>> [ranges_contain(blob, pk) for pk in (0, 1, 3, 4, 7, 8, 10, 11)]
[False, True, True, False, True, False, True, False]
"""

from __future__ import annotations

import zlib

import numpy as np


def ranges_encode(members: np.ndarray) -> bytes:
    """Sorted unique int64 pks -> compressed half-open ranges."""
    values = np.unique(np.asarray(members, dtype=np.int64))
    if values.size == 0:
        return zlib.compress(b"")
    breaks = np.flatnonzero(np.diff(values) != 1) + 1
    starts = values[np.concatenate(([0], breaks))]
    stops = values[np.concatenate((breaks - 1, [values.size - 1]))] + 1
    pairs = np.column_stack((starts, stops)).astype("<i8")
    return zlib.compress(pairs.tobytes(), 6)


def ranges_decode(blob: bytes) -> np.ndarray:
    """Compressed ranges -> an (n, 2) int64 array of [start, stop)."""
    raw = zlib.decompress(bytes(blob))
    return np.frombuffer(raw, dtype="<i8").reshape(-1, 2)


def ranges_contain(blob: bytes, pk: int) -> bool:
    ranges = ranges_decode(blob)
    if ranges.size == 0:
        return False
    index = int(np.searchsorted(ranges[:, 0], pk, side="right")) - 1
    return index >= 0 and pk < int(ranges[index, 1])


def ranges_members(blob: bytes) -> np.ndarray:
    """All member pks (for payouts or exports)."""
    ranges = ranges_decode(blob)
    if ranges.size == 0:
        return np.empty(0, dtype=np.int64)
    return np.concatenate([np.arange(a, b, dtype=np.int64) for a, b in ranges])
