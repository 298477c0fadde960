"""A local cache of immutable objects (mirror dists, package archives): no TTL, bounded by
bytes with least-recently-used eviction, filled while the first reader streams.

Entry file: a header (magic, body size, the bucket's Last-Modified and ETag) then the body,
written to a temp file in the same directory and renamed into place once complete and
verified. A hit checks the size
(one fstat), so a truncated entry is dropped and refetched, never served. Any local failure
(unwritable, missing or full directory, corrupt entry) falls back to the bucket.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import struct
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol, cast

from runtime.mirror.locks import LOCK_DIR, KeyLock, key_hash
from runtime.mirror.stats import MirrorStats
from runtime.storage import ObjectInfo, Storage

log = logging.getLogger("satchel.cache")

MAGIC = b"SATCHEL\x02"
# magic, body size, the bucket's Last-Modified (epoch seconds) and ETag (NUL-padded ASCII):
# a hit carries the same validators as a read from the bucket. v1 entries are refetched.
HEADER = struct.Struct(">8sQd72s")
TEMP_PREFIX = ".fill-"


class FileCache:
    def __init__(
        self,
        storage: Storage,
        directory: Path | None,
        max_bytes: int,
        stats: MirrorStats,
    ) -> None:
        self.storage = storage
        self.directory = directory
        self.max_bytes = max_bytes
        self.stats = stats
        self._total: int | None = None  # bytes on disk, as last counted (other processes too)
        self._total_lock = threading.Lock()

    # -- reading ---------------------------------------------------------------------

    def open(self, key: str) -> BinaryIO:
        """The object as a binary stream: from the cache, or from the bucket (one GET)."""
        if self.directory is None:  # stateless: stream straight from the bucket
            return self._from_bucket(key)
        hit = self._open_entry(key)
        if hit is not None:
            return hit
        lock = KeyLock(self.directory, key)
        try:
            lock.acquire()
        except OSError as exc:
            self._degrade("cannot lock", exc)
            return self._from_bucket(key)
        try:
            hit = self._open_entry(key)  # filled by whoever held the lock before us
            if hit is not None:
                lock.release()
                return hit
            self.stats.add(dist_misses=1, bucket_requests=1)
            fetched = self.storage.get(key)
            assert fetched.stream is not None and fetched.info is not None
            filling = _FillingReader(self, key, fetched.stream, fetched.info, lock)
            return cast(BinaryIO, filling)
        except BaseException:
            lock.release()
            raise

    def _from_bucket(self, key: str) -> BinaryIO:
        self.stats.add(dist_misses=1, bucket_requests=1)
        fetched = self.storage.get(key)  # one GET: the body and its validators
        assert fetched.stream is not None and fetched.info is not None
        return cast(BinaryIO, _BucketReader(fetched.stream, fetched.info))

    def entry_path(self, key: str) -> Path:
        assert self.directory is not None
        digest = key_hash(key)
        return self.directory / digest[:2] / digest

    def _open_entry(self, key: str) -> BinaryIO | None:
        path = self.entry_path(key)
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._degrade("cannot read an entry", exc)
            return None
        try:
            magic, size, modified, etag = HEADER.unpack(handle.read(HEADER.size))
            if magic != MAGIC or os.fstat(handle.fileno()).st_size != HEADER.size + size:
                raise ValueError("truncated or foreign entry")
            validators = (etag.rstrip(b"\0").decode("ascii"), datetime.fromtimestamp(modified, UTC))
        except (ValueError, struct.error, UnicodeDecodeError):
            handle.close()
            log.warning("dropping a corrupt cache entry %s", path)
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        with contextlib.suppress(OSError):
            os.utime(handle.fileno())  # recently used: evicted last
        self.stats.add(dist_hits=1)
        return cast(BinaryIO, _EntryReader(handle, size, *validators))

    # -- writing, eviction -------------------------------------------------------------

    def put(self, key: str, body: bytes | BinaryIO) -> None:
        """Store in the bucket; the cache fills on the first read (immutable objects)."""
        self.storage.write(key, body)

    def _commit(self, temp: Path, key: str, size: int) -> None:
        os.replace(temp, self.entry_path(key))
        with self._total_lock:
            if self._total is not None:
                self._total += HEADER.size + size
            over = self._total is None or self._total > self.max_bytes
        if over:
            self.prune()

    def prune(self, max_bytes: int | None = None) -> tuple[int, int]:
        """Evict least recently used entries until the cache fits; drop stale temp files.
        Returns (entries, bytes) removed."""
        if self.directory is None:
            return 0, 0
        bound = self.max_bytes if max_bytes is None else max_bytes
        entries = sorted(self._scan(), key=lambda e: e[1])  # oldest first
        total = sum(size for _, _, size in entries)
        removed = freed = 0
        for path, _, size in entries:
            if total <= bound:
                break
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # a reader that has it open keeps reading it
                removed, freed, total = removed + 1, freed + size, total - size
        with self._total_lock:
            self._total = total
        return removed, freed

    def disk_usage(self) -> tuple[int, int]:
        """(entries, bytes) in the cache directory."""
        if self.directory is None:
            return 0, 0
        entries = list(self._scan())
        return len(entries), sum(size for _, _, size in entries)

    def _scan(self) -> list[tuple[Path, float, int]]:
        assert self.directory is not None
        found: list[tuple[Path, float, int]] = []
        try:
            shards = [d for d in os.scandir(self.directory) if d.is_dir() and d.name != LOCK_DIR]
        except FileNotFoundError:
            return found
        for shard in shards:
            for entry in os.scandir(shard.path):
                with contextlib.suppress(FileNotFoundError):
                    st = entry.stat()
                    if entry.name.startswith(TEMP_PREFIX):
                        continue
                    found.append((Path(entry.path), st.st_mtime, st.st_size))
        return found

    def _degrade(self, what: str, exc: OSError) -> None:
        self.stats.add(cache_errors=1)
        log.warning("cache %s: %s (%s); reading from the bucket", self.directory, what, exc)


class _Validated(Protocol):
    size: int
    etag: str
    last_modified: datetime


def validators_of(stream: BinaryIO) -> tuple[int, str, datetime]:
    """Size, ETag and Last-Modified of a stream `FileCache.open` returned: every one carries
    the bucket's (a hit from its entry header), so nobody needs a HEAD for them."""
    known = cast(_Validated, stream)
    return known.size, known.etag, known.last_modified


class _BucketReader(io.RawIOBase):
    """A bucket body with the object's size and validators (stateless reads)."""

    def __init__(self, source: BinaryIO, info: ObjectInfo) -> None:
        self._source = source
        self.size, self.etag, self.last_modified = info.size, info.etag, info.modified

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._source.read(size)  # the source's own bytes: no extra copy

    def readinto(self, buffer: Any) -> int:
        return self._source.readinto(buffer)  # type: ignore[attr-defined,no-any-return]

    def close(self) -> None:
        self._source.close()
        super().close()


class _EntryReader(io.RawIOBase):
    """A cache entry's body: offsets exclude the header, so `zipfile` and `seek` just work."""

    def __init__(self, handle: BinaryIO, size: int, etag: str, last_modified: datetime) -> None:
        self._handle = handle
        self.size, self.etag, self.last_modified = size, etag, last_modified

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        """From the buffered handle: one copy, not RawIOBase's bytearray + readinto + bytes()."""
        return self._handle.read(size)

    def readinto(self, buffer: Any) -> int:
        return self._handle.readinto(buffer)  # type: ignore[attr-defined,no-any-return]

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            offset += HEADER.size
        return self._handle.seek(offset, whence) - HEADER.size

    def tell(self) -> int:
        return self._handle.tell() - HEADER.size

    def fileno(self) -> int:
        return self._handle.fileno()

    def close(self) -> None:
        self._handle.close()
        super().close()


class _FillingReader(io.RawIOBase):
    """Streams the bucket's body to the caller and into a temp file; commits at the end.

    Holds the key's lock until done, so concurrent readers wait and then hit the cache.
    A failure of the cache (disk full, ...) only stops the filling: the caller keeps reading.
    A failure of the bucket reaches the caller and leaves no entry behind.
    """

    def __init__(
        self,
        cache: FileCache,
        key: str,
        source: BinaryIO,
        info: ObjectInfo,
        lock: KeyLock,
    ) -> None:
        size, etag = info.size, info.etag
        self.size, self.etag, self.last_modified = size, etag, info.modified
        self._cache, self._key, self._source, self._lock = cache, key, source, lock
        self._received = 0
        # A plain single-part ETag is the MD5 of the body: verify it while we are at it.
        # (It costs CPU on cold fills of single-part dists; multipart ETags are no MD5.)
        self._md5 = hashlib.md5(usedforsecurity=False) if _is_md5(etag) else None
        self._etag = etag
        self._temp: BinaryIO | None = None
        self._temp_path: Path | None = None
        try:
            if len(etag) > 72 or not etag.isascii():  # would not fit the header
                raise OSError(f"ETag {etag[:80]!r} does not fit a cache entry header")
            target = cache.entry_path(key)
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=target.parent)
            self._temp, self._temp_path = os.fdopen(fd, "wb"), Path(name)
            # Reserve the blocks now: a full disk shows here, before any byte is streamed,
            # and the writes then skip ext4's block allocation.
            os.posix_fallocate(fd, 0, HEADER.size + size)
            self._temp.write(
                HEADER.pack(MAGIC, size, info.modified.timestamp(), etag.encode("ascii"))
            )
        except OSError as exc:
            cache._degrade("cannot create an entry", exc)
            self._abandon()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        """The source's own bytes object: no bytearray, readinto and bytes() copy per chunk."""
        if size is None or size < 0:
            return self.readall()
        try:
            data = self._source.read(size)
        except BaseException:
            self._finish(commit=False)
            raise
        self._take(data)
        return data

    def readinto(self, buffer: Any) -> int:
        try:
            n = self._source.readinto(buffer) or 0  # type: ignore[attr-defined]
        except BaseException:
            self._finish(commit=False)
            raise
        self._take(memoryview(buffer)[:n])
        return n

    def _take(self, data: bytes | memoryview) -> None:
        if not data:
            self._finish(commit=True)
            return
        self._received += len(data)
        if self._md5 is not None:
            self._md5.update(data)
        if self._temp is not None:
            try:
                self._temp.write(data)
            except OSError as exc:
                self._cache._degrade("cannot fill an entry", exc)
                self._abandon()

    def close(self) -> None:
        if not self.closed:
            self._finish(commit=False)  # a no-op once finished
            self._source.close()
        super().close()

    def _finish(self, *, commit: bool) -> None:
        if self._lock is None:
            return
        try:
            if commit and self._temp is not None and self._verified():
                assert self._temp_path is not None
                self._temp.close()
                self._temp = None
                try:
                    self._cache._commit(self._temp_path, self._key, self.size)
                    self._temp_path = None
                except OSError as exc:
                    self._cache._degrade("cannot commit an entry", exc)
            self._abandon()
        finally:
            self._lock.release()
            self._lock = None  # type: ignore[assignment]

    def _verified(self) -> bool:
        if self._received != self.size:
            log.warning("not caching %s: got %d of %d bytes", self._key, self._received, self.size)
            return False
        if self._md5 is not None and self._md5.hexdigest() != self._etag:
            log.warning("not caching %s: its MD5 does not match the bucket's ETag", self._key)
            return False
        return True

    def _abandon(self) -> None:
        if self._temp is not None:
            with contextlib.suppress(OSError):
                self._temp.close()
            self._temp = None
        if self._temp_path is not None:
            with contextlib.suppress(OSError):
                self._temp_path.unlink()
            self._temp_path = None


def _is_md5(etag: str) -> bool:
    return len(etag) == 32 and all(c in "0123456789abcdef" for c in etag)
