"""Immutable objects (mirrored dists, private archives) read through a `FileCache` from the
event loop, without any request ever waiting for another client's download speed.

An object in the bucket but not in this host's cache is copied into the cache once per
worker (single flight), at the bucket's speed, in a task no client owns; every request for
it, the first included, then streams the local entry at its own pace. A fill under way in
another worker is waited for at most `FILL_WAIT` seconds (polling its lock, never blocking a
thread), then the bucket is read directly: nginx's `proxy_cache_lock` with
`proxy_cache_lock_timeout`. Without a cache dir, every read streams from the bucket.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import BinaryIO

from anyio import to_thread

from runtime import metrics
from runtime.errors import NotFound
from runtime.mirror.filecache import FILL_POLL, FILL_WAIT, FileCache, Fill


class CachedObjects:
    def __init__(self, cache: FileCache, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.cache = cache
        self._monotonic = monotonic
        self._fills: dict[str, asyncio.Task[Fill]] = {}

    async def open(self, key: str) -> BinaryIO | None:
        """The object from this host's cache (filled first on a miss) or the bucket; None
        when the bucket has no such object. Raises StorageError."""
        cache = self.cache
        try:
            hit = await to_thread.run_sync(cache.lookup, key)
            if hit is not None:
                return hit
            if cache.directory is not None:
                filled = await self._fill(key)
                hit = await to_thread.run_sync(lambda: cache.lookup(key, count=not filled))
                if hit is not None:
                    return hit
            return await to_thread.run_sync(cache.from_bucket, key)
        except NotFound:
            return None

    async def _fill(self, key: str) -> bool:
        """Wait for this worker's one fill of `key`, starting it if none runs. True when it
        fetched the object (so the request counts as a miss, not a hit)."""
        task = self._fills.get(key)
        started = task is None
        if not started:
            metrics.SINGLE_FLIGHT_WAITS.labels("worker").inc()
        if task is None:
            task = asyncio.ensure_future(self._fill_within_wait(key))
            self._fills[key] = task
            task.add_done_callback(lambda done: self._forget_fill(key, done))
        # Shielded: a client that leaves does not cancel the fill the others wait for. A
        # fill slower than FILL_WAIT (a stalled bucket) leaves its waiters to the bucket.
        try:
            outcome = await asyncio.wait_for(asyncio.shield(task), FILL_WAIT)
        except TimeoutError:
            return False
        return started and outcome is Fill.FILLED

    async def _fill_within_wait(self, key: str) -> Fill:
        deadline = self._monotonic() + FILL_WAIT
        outcome = await to_thread.run_sync(self.cache.try_fill, key)
        if outcome is Fill.BUSY:
            metrics.SINGLE_FLIGHT_WAITS.labels("host").inc()  # another worker fills it
        while outcome is Fill.BUSY and self._monotonic() < deadline:
            await asyncio.sleep(FILL_POLL)
            outcome = await to_thread.run_sync(self.cache.try_fill, key)
        return outcome

    def _forget_fill(self, key: str, task: asyncio.Task[Fill]) -> None:
        if self._fills.get(key) is task:
            del self._fills[key]
        if not task.cancelled():
            task.exception()  # retrieved: its waiters got it, or all of them left
