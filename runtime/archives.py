"""Reading files inside package archives and artifacts without a request per file.

With SATCHEL_ARCHIVE_CACHE_DIR set, an archive is fetched once (one GET) into a bounded LRU
cache shared by the processes of the host; reading any number of its members costs no further
request until it is evicted. Without it, each `open_zip` is one GET into memory. Entries are
named by the storage's identity and the key: the package archives and the artifacts may
share one cache directory and keys without ever reading each other's bytes.
"""

from __future__ import annotations

import io
import zipfile

from runtime.mirror.filecache import FileCache
from runtime.mirror.stats import MirrorStats
from runtime.settings import Settings
from runtime.storage import Storage


class ArchiveCache:
    def __init__(self, storage: Storage, settings: Settings, stats: MirrorStats | None = None):
        self.stats = stats or MirrorStats()
        self.files = FileCache(
            storage,
            settings.archive_cache_dir,
            settings.archive_cache_size,
            self.stats,
        )

    def open_zip(self, key: str) -> zipfile.ZipFile:
        stream = self.files.open(key)  # a miss fills the cache first (the one GET)
        if stream.seekable():  # a cache entry: zip seeks in the file
            return zipfile.ZipFile(stream)
        with stream:  # stateless, or the cache could not keep it (full, read-only)
            return zipfile.ZipFile(io.BytesIO(stream.read()))

    def read_member(self, key: str, member: str) -> bytes:
        with self.open_zip(key) as archive:
            return archive.read(member)
