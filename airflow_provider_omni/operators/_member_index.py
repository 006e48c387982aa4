"""A compact set of member keys (8 bytes per destination): what earlier tries of a send took.

A retry of a send of a million destinations must know, for each destination, whether an earlier
try got it taken; a Python ``set`` of a million keys costs about 60 MB.  :class:`MemberIndex` keeps
the keys as unsigned 64-bit integers in 256 sorted arrays (by their first byte), 8 bytes each, and
answers membership by binary search.
"""

from __future__ import annotations

import base64
import sys
from array import array
from bisect import bisect_left

from airflow_provider_omni.operators._ids import MEMBER_KEY_BYTES

_BUCKETS = 256


class MemberIndex:
    """Member keys (:func:`_ids.member_key`) added as packed text, then frozen for look-ups.

    Add with :meth:`add_packed` (the ``members`` text of bulk records), then call :meth:`freeze`
    once; ``key in index`` and :func:`len` work after that.
    """

    def __init__(self) -> None:
        self._pending: list[bytearray] | None = [bytearray() for _ in range(_BUCKETS)]
        self._sorted: list[array[int]] = []
        self._size = 0

    def add_packed(self, packed: str) -> None:
        """Add the keys of one packed text (:func:`_ids.pack_keys`)."""
        if not packed:
            return
        self.add_raw(base64.b64decode(packed))

    def add_raw(self, raw: bytes) -> None:
        """Add keys given as their bytes, one after another."""
        if self._pending is None:
            raise RuntimeError("MemberIndex is frozen")
        pending = self._pending
        for start in range(0, len(raw) - MEMBER_KEY_BYTES + 1, MEMBER_KEY_BYTES):
            pending[raw[start]] += raw[start : start + MEMBER_KEY_BYTES]

    def freeze(self) -> MemberIndex:
        """Sort the keys (dropping repeats); no key can be added after."""
        if self._pending is None:
            return self
        for bucket in self._pending:
            keys = array("Q")
            keys.frombytes(bytes(bucket))
            bucket.clear()
            keys = array("Q", sorted(set(keys)))
            self._sorted.append(keys)
            self._size += len(keys)
        self._pending = None
        return self

    def __len__(self) -> int:
        self.freeze()
        return self._size

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, bytes) or len(key) != MEMBER_KEY_BYTES:
            return False
        self.freeze()
        keys = self._sorted[key[0]]
        if not keys:
            return False
        value = int.from_bytes(key, sys.byteorder)
        i = bisect_left(keys, value)
        return i < len(keys) and keys[i] == value
