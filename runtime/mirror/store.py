"""`MirrorStore`: the mirror's metadata and dists on the `mirror_meta` / `mirror_dist`
storages, with the caches the env asks for (MIRROR_METADATA_CACHE_DIR, MIRROR_DIST_CACHE_DIR;
empty = stateless: nothing is written to local disk)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import BinaryIO

from runtime.mirror.filecache import FileCache
from runtime.mirror.metadata import MetadataEntry, MetadataStore
from runtime.mirror.stats import MirrorStats
from runtime.settings import Settings
from runtime.storage import Storages, open_storages


class MirrorStore:
    def __init__(self, metadata: MetadataStore, dists: FileCache, stats: MirrorStats) -> None:
        self.metadata = metadata
        self.dists = dists
        self.stats = stats

    def recount(self) -> None:
        """At start: count both caches from the disk, dropping what crashed writers left."""
        self.metadata.recount()
        self.dists.recount()

    def get_metadata(self, path: str) -> MetadataEntry | None:
        return self.metadata.get(path)

    def put_metadata(self, path: str, body: bytes) -> MetadataEntry:
        return self.metadata.put(path, body)

    def open_dist(self, path: str) -> BinaryIO:
        """A stream of the dist (raises runtime.NotFound); `.size` on it gives its length."""
        return self.dists.open(path)

    def put_dist(self, path: str, body: bytes | BinaryIO) -> None:
        self.dists.put(path, body)


def open_mirror(
    settings: Settings,
    storages: Storages | None = None,
    clock: Callable[[], float] = time.time,
) -> MirrorStore:
    storages = storages or open_storages(settings)
    stats = MirrorStats()
    metadata = MetadataStore(
        storages.mirror_meta,
        settings.mirror_metadata_cache_dir,
        ttl=settings.mirror_metadata_ttl,
        memory_bytes=settings.mirror_metadata_memory,
        stats=stats,
        clock=clock,
        max_bytes=settings.mirror_metadata_cache_size,
    )
    dists = FileCache(
        storages.mirror_dist, settings.mirror_dist_cache_dir, settings.mirror_dist_cache_size, stats
    )
    return MirrorStore(metadata, dists, stats)
