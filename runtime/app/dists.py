"""Mirrored dist archives: served from the mirror store, fetched from the upstream on the
first download, stored unchanged (bytes and checksums as the upstream gave them).

Reads of stored dists never wait for another client's download speed (runtime.app.objects).
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
from runtime.app.egress import dist_hosts
from runtime.app.objects import CachedObjects
from runtime.app.outbound import HostRule, safe_url
from runtime.app.upstream import ChecksumMismatch, OutboundRefused, UpstreamClient
from runtime.errors import BackendUnavailable, NotFound
from runtime.mirror import MirrorStore
from runtime.mirror.filecache import validators_of
from runtime.mirror.spool import open_spool

log = logging.getLogger("satchel.mirror")

UNKNOWN_TTL = 5.0  # seconds a dist no stored document names is answered 404 at once


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
        bad_ttl: float = 300.0,
    ) -> None:
        self.mirror = mirror
        self.documents = documents
        self.upstream = upstream
        self.negative: Expiring[str] = Expiring(negative_ttl, clock)
        self.unknown: Expiring[str] = Expiring(min(negative_ttl, UNKNOWN_TTL), clock)
        # Dists whose bytes failed their checksum, or that the outbound policy refused (too
        # large, a host or address not allowed, an encoding), by (key, url, shasum): not
        # downloaded again for `bad_ttl` (new metadata naming another URL or shasum is tried
        # at once). `why`: the refusal's (reason, public), to say it again.
        self.bad: Expiring[tuple[str, str, str]] = Expiring(bad_ttl, clock, max_items=10_000)
        self.why: dict[tuple[str, str, str], tuple[str, str]] = {}
        self._hosts: dict[str, HostRule] = {}
        # Dists are immutable: validators seen once answer later conditional requests
        # without opening the object again.
        self.known: Lru[str, DistInfo] = Lru(100_000, lambda _: 1)
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self.stored = CachedObjects(mirror.dists)

    async def open(self, alias: str, name: str, file: str) -> OpenDist | None:
        """The dist's stream and validators, or None if neither the mirror nor the upstream
        has it. Raises UpstreamError and StorageError."""
        key = dist_key(alias, name, file)
        if key in self.negative or key in self.unknown:
            return None
        stream = await self._open_stored(key)
        outcome = "stored"
        if stream is None:
            async with self._locks.setdefault(key, asyncio.Lock()):
                stream = await self._open_stored(key)  # fetched while we waited
                if stream is None:
                    mirrored = await self._mirror(alias, name, file, key)
                    if mirrored is not True:
                        # The upstream said 404: for the negative TTL. The mirror's own
                        # state did not name it (an invented name, or a storage that
                        # answered "not found" for a moment): only briefly.
                        (self.negative if mirrored is False else self.unknown).add(key)
                        return None
                    stream = await self._open_stored(key)
                    outcome = "miss"
        if stream is None:  # stored a moment ago, yet gone: let the client retry
            raise NotFound("the dist vanished right after it was stored", key=key)
        info = DistInfo(*validators_of(stream))
        self.known.put(key, info)
        return OpenDist(stream, info, outcome)

    async def _open_stored(self, key: str) -> BinaryIO | None:
        return await self.stored.open(key)

    async def _mirror(self, alias: str, name: str, file: str, key: str) -> bool | None:
        """True: mirrored; False: the upstream has no such file; None: no stored p2
        document names this dist."""
        dist = await self.documents.find_dist(alias, name, file)
        if dist is None:
            return None
        bad = (key, dist.url, dist.shasum or "")
        if bad in self.bad:
            if bad in self.why:
                reason, public = self.why[bad]
                raise OutboundRefused(
                    f"{key}: {safe_url(dist.url)} was refused less than {self.bad.ttl:g} s ago"
                    f" ({reason}); not downloaded again until then",
                    public,
                )
            raise ChecksumMismatch(
                f"{key}: {safe_url(dist.url)} failed its checksum {dist.shasum} less than"
                f" {self.bad.ttl:g} s ago; not downloaded again until then"
            )
        hosts = self._hosts.get(alias)
        if hosts is None:
            hosts = self._hosts[alias] = dist_hosts(self.documents.config, alias)
        try:
            spool = open_spool(self.mirror.dists.budget)
        except OSError as exc:
            raise BackendUnavailable(f"cannot spool the download: {exc}", key=key) from exc
        with spool:
            try:
                found = await self.upstream.download(dist.url, spool, dist.shasum, hosts)
            except ChecksumMismatch:
                self.bad.add(bad)
                self.why.pop(bad, None)
                raise
            except OutboundRefused as exc:
                self.bad.add(bad)
                if len(self.why) >= 10_000:  # bounded like `bad`
                    self.why.clear()
                self.why[bad] = (str(exc), exc.public)
                raise
            except OSError as exc:  # the spool is full or unwritable
                raise BackendUnavailable(f"cannot spool the download: {exc}", key=key) from exc
            if not found:
                log.warning("upstream has no %s any more (%s)", key, safe_url(dist.url))
                return False
            await to_thread.run_sync(self.mirror.put_dist, key, spool)
        log.info("mirrored %s from %s", key, safe_url(dist.url))
        return True
