"""Reading files inside package archives and artifacts without a request per file.

With SATCHEL_ARCHIVE_CACHE_DIR set, an archive is fetched once (one GET) into a bounded LRU
cache shared by the processes of the host; reading any number of its members costs no further
request until it is evicted. Without it, each `open_zip` is one GET into memory.
"""

from __future__ import annotations

import io
import zipfile

from runtime.mirror.filecache import FileCache
from runtime.mirror.stats import MirrorStats
from runtime.settings import Settings
from runtime.storage import Storage

_CHUNK = 1024 * 1024


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
        stream = self.files.open(key)
        if stream.seekable():  # a cache hit (or a local storage): zip seeks in the file
            return zipfile.ZipFile(stream)
        with stream:
            if self.files.directory is None:
                return zipfile.ZipFile(io.BytesIO(stream.read()))
            while stream.read(_CHUNK):  # the one GET, filling the cache
                pass
        reopened = self.files.open(key)
        if reopened.seekable():
            return zipfile.ZipFile(reopened)
        with reopened:  # the cache could not keep it (full, read-only): from memory
            return zipfile.ZipFile(io.BytesIO(reopened.read()))

    def read_member(self, key: str, member: str) -> bytes:
        with self.open_zip(key) as archive:
            return archive.read(member)
