"""Mirrored dist archives: served from the mirror store, fetched from the upstream on the
first download, stored unchanged (bytes and checksums as the upstream gave them).

No request ever waits for another client's download speed. A dist in the bucket but not in
this host's cache is copied into the cache once per worker (single flight), at the bucket's
speed, in a task no client owns; every request for it, the first included, then streams the
local entry at its own pace. A fill under way in another worker is waited for at most
`FILL_WAIT` seconds (polling its lock, never blocking a thread), then the bucket is read
directly: nginx's `proxy_cache_lock` with `proxy_cache_lock_timeout`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO

from anyio import to_thread

from runtime.app.caches import Expiring, Lru
from runtime.app.documents import Documents
from runtime.app.upstream import UpstreamClient
from runtime.errors import BackendUnavailable, NotFound
from runtime.mirror import MirrorStore
from runtime.mirror.filecache import FILL_POLL, FILL_WAIT, Fill, validators_of
from runtime.mirror.spool import open_spool

log = logging.getLogger("satchel.mirror")


@dataclass(frozen=True)
class DistInfo:
    size: int
    etag: str
    last_modified: datetime


@dataclass(frozen=True)
class OpenDist:
    stream: BinaryIO
    info: DistInfo
    outcome: str  # stored (from the mirror store) or miss (fetched from the upstream)


def dist_key(alias: str, name: str, file: str) -> str:
    return f"{alias}/{name}/{file}"


class Dists:
    def __init__(
        self,
        mirror: MirrorStore,
        documents: Documents,
        upstream: UpstreamClient,
        negative_ttl: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.mirror = mirror
        self.documents = documents
        self.upstream = upstream
        self.negative: Expiring[str] = Expiring(negative_ttl, clock)
        # Dists are immutable: validators seen once answer later conditional requests
        # without opening the object again.
        self.known: Lru[str, DistInfo] = Lru(100_000, lambda _: 1)
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._fills: dict[str, asyncio.Task[Fill]] = {}
        self._monotonic = time.monotonic

    async def open(self, alias: str, name: str, file: str) -> OpenDist | None:
        """The dist's stream and validators, or None if neither the mirror nor the upstream
        has it. Raises UpstreamError and StorageError."""
        key = dist_key(alias, name, file)
        if key in self.negative:
            return None
        stream = await self._open_stored(key)
        outcome = "stored"
        if stream is None:
            async with self._locks.setdefault(key, asyncio.Lock()):
                stream = await self._open_stored(key)  # fetched while we waited
                if stream is None:
                    if not await self._mirror(alias, name, file, key):
                        self.negative.add(key)
                        return None
                    stream = await self._open_stored(key)
                    outcome = "miss"
        if stream is None:  # stored a moment ago, yet gone: let the client retry
            raise NotFound("the dist vanished right after it was stored", key=key)
        info = DistInfo(*validators_of(stream))
        self.known.put(key, info)
        return OpenDist(stream, info, outcome)

    async def _open_stored(self, key: str) -> BinaryIO | None:
        """The dist from this host's cache (filled first on a miss) or the bucket; None
        when the bucket has no such dist."""
        cache = self.mirror.dists
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
        fetched the dist (so the request counts as a miss, not a hit)."""
        task = self._fills.get(key)
        started = task is None
        if task is None:
            task = asyncio.ensure_future(self._fill_within_wait(key))
            self._fills[key] = task
            task.add_done_callback(lambda done: self._forget_fill(key, done))
        # Shielded: a client that leaves does not cancel the fill the others wait for.
        outcome = await asyncio.shield(task)
        return started and outcome is Fill.FILLED

    async def _fill_within_wait(self, key: str) -> Fill:
        deadline = self._monotonic() + FILL_WAIT
        while True:
            outcome = await to_thread.run_sync(self.mirror.dists.try_fill, key)
            if outcome is not Fill.BUSY or self._monotonic() >= deadline:
                return outcome
            await asyncio.sleep(FILL_POLL)

    def _forget_fill(self, key: str, task: asyncio.Task[Fill]) -> None:
        if self._fills.get(key) is task:
            del self._fills[key]
        if not task.cancelled():
            task.exception()  # retrieved: its waiters got it, or all of them left

    async def _mirror(self, alias: str, name: str, file: str, key: str) -> bool:
        dist = await self.documents.find_dist(alias, name, file)
        if dist is None:
            return False
        try:
            spool = open_spool(self.mirror.dists.budget)
        except OSError as exc:
            raise BackendUnavailable(f"cannot spool the download: {exc}", key=key) from exc
        with spool:
            try:
                found = await self.upstream.download(dist.url, spool, dist.shasum)
            except OSError as exc:  # the spool is full or unwritable
                raise BackendUnavailable(f"cannot spool the download: {exc}", key=key) from exc
            if not found:
                log.warning("upstream has no %s any more (%s)", key, dist.url)
                return False
            await to_thread.run_sync(self.mirror.put_dist, key, spool)
        log.info("mirrored %s from %s", key, dist.url)
        return True
