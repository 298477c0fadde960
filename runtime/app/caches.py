"""In-process caches of one worker, used from its event loop only (so no locks)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Lru(Generic[K, V]):
    """Least recently used eviction, bounded by the summed `cost` (bytes) of the values."""

    def __init__(self, max_cost: int, cost: Callable[[V], int]) -> None:
        self.max_cost = max_cost
        self._cost = cost
        self._items: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._total = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: K) -> V | None:
        item = self._items.get(key)
        if item is None:
            return None
        self._items.move_to_end(key)
        return item[0]

    def put(self, key: K, value: V) -> None:
        self.pop(key)
        cost = self._cost(value)
        if cost > self.max_cost:
            return
        self._items[key] = (value, cost)
        self._total += cost
        while self._total > self.max_cost:
            _, (_, evicted) = self._items.popitem(last=False)
            self._total -= evicted

    def pop(self, key: K) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            self._total -= old[1]


class Expiring(Generic[K]):
    """Keys remembered for `ttl` seconds (the negative cache), at most `max_items`."""

    def __init__(self, ttl: float, clock: Callable[[], float], max_items: int = 100_000) -> None:
        self.ttl = ttl
        self._clock = clock
        self._max_items = max_items
        self._until: OrderedDict[K, float] = OrderedDict()

    def add(self, key: K) -> None:
        self._until.pop(key, None)
        self._until[key] = self._clock() + self.ttl
        while len(self._until) > self._max_items:
            self._until.popitem(last=False)

    def discard(self, key: K) -> None:
        self._until.pop(key, None)

    def __contains__(self, key: K) -> bool:
        until = self._until.get(key)
        if until is None:
            return False
        if self._clock() >= until:
            del self._until[key]
            return False
        return True
