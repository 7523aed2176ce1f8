"""A process-wide cache of composed sparse-label images, bounded by bytes.

The Annotate page needs an image's sparse labels on every rerun (each click); composing them means
decoding every live annotation's RLE, which grows with the labels on the image (60 objects on a
1024 px image: ~40 ms, twice per click). A composed image depends only on which annotation rows are
live and their order, and a row's mask never changes (an edit inserts a new row), so the list of
live row ids in order is a complete cache key: any add, delete, undo or reorder changes it, whichever
process made the change.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable

import numpy as np

MAX_BYTES = 256 * 1024 * 1024
"""Sum of the cached arrays' sizes; the least recently used go first (a 1024 px image is 4 MiB)."""


class ArrayCache:
    """LRU of read-only numpy arrays under a byte budget; safe to share between threads."""

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> np.ndarray | None:
        """A writable copy of the cached array (callers may paint on it), or None."""
        with self._lock:
            arr = self._items.get(key)
            if arr is None:
                return None
            self._items.move_to_end(key)
        return arr.copy()

    def put(self, key: Hashable, arr: np.ndarray) -> None:
        if arr.nbytes > self.max_bytes:
            return
        stored = arr.copy()
        stored.flags.writeable = False
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._items[key] = stored
            self._bytes += stored.nbytes
            while self._bytes > self.max_bytes:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= dropped.nbytes

    def __len__(self) -> int:
        return len(self._items)


class SmallCache:
    """LRU of small values (keys, run-length codes) by count; safe to share between threads."""

    def __init__(self, max_items: int = 4096) -> None:
        self.max_items = int(max_items)
        self._items: OrderedDict[Hashable, object] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> object | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: Hashable, value: object) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)


SPARSE_LABELS = ArrayCache()
NEWEST = SmallCache()
"""Per image, the live rows of its newest composition: a label added since is painted on a copy of
it instead of composing every label again (each save on the Annotate page adds one)."""
LABELLED_RLE = SmallCache(max_items=512)
"""Per set of live rows, the run-length code of the labelled pixels (the suggestion queue's filter)."""
