"""A thread-safe least-recently-used cache bounded by entries and by a cost (bytes, say)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from typing import Generic, TypeVar

__all__ = ["LRUCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRUCache(Generic[K, V]):
    def __init__(self, max_entries: int, max_cost: int, cost: Callable[[V], int] = lambda v: 1) -> None:
        self._max_entries = max_entries
        self._max_cost = max_cost
        self._cost = cost
        self._items: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._total = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    @property
    def total_cost(self) -> int:
        with self._lock:
            return self._total

    def get(self, key: K) -> V | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: K, value: V) -> None:
        """Keep ``value``, evicting the least recently used; one value costlier than the bound is not kept."""
        cost = self._cost(value)
        with self._lock:
            self._pop(key)
            if cost > self._max_cost:
                return
            self._items[key] = (value, cost)
            self._total += cost
            while len(self._items) > self._max_entries or self._total > self._max_cost:
                self._pop(next(iter(self._items)))

    def keep_only(self, keys: Iterable[K]) -> None:
        """Forget every entry whose key is not in ``keys`` (say, objects that no longer exist)."""
        wanted = set(keys)
        with self._lock:
            for key in [k for k in self._items if k not in wanted]:
                self._pop(key)

    def _pop(self, key: K) -> None:
        item = self._items.pop(key, None)
        if item is not None:
            self._total -= item[1]
