"""A local cache of immutable objects (mirror dists, package archives): no TTL, bounded by
bytes with least-recently-used eviction, filled from the bucket at the bucket's speed.

A miss never makes anyone wait for a client: `try_fill` takes the key's lock without
blocking, copies the object from the bucket into a temp file, verifies and renames it into
place, and releases the lock; whoever finds the lock taken waits for that fill (bounded) or
reads the bucket itself. Callers then serve the entry (`lookup`) at local-disk speed.

Entry file: a header (magic, body size, the bucket's Last-Modified and ETag, the length of
the entry's identity), the identity (the storage's identity and the key: two storages
sharing one directory never read each other's entries), then the body. A hit checks the
identity and the size (one fstat), so a foreign or truncated entry is dropped and refetched,
never served. Any local failure (unwritable, missing or full directory, corrupt entry) falls
back to the bucket. The directory's bound is kept by `DiskBudget`, for all processes.
"""

from __future__ import annotations

import contextlib
import enum
import io
import logging
import os
import queue
import struct
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol, cast

from runtime.errors import StorageError
from runtime.mirror.budget import DiskBudget, Usage, create_temp
from runtime.mirror.locks import KeyLock, key_hash
from runtime.mirror.stats import MirrorStats
from runtime.mirror.verify import BodyCheck, Method
from runtime.storage import ObjectInfo, Storage

log = logging.getLogger("satchel.cache")

MAGIC = b"SATCHEL\x03"
# magic, body size, the bucket's Last-Modified (epoch seconds), its ETag (NUL-padded ASCII),
# the identity's length; then the identity. v1/v2 entries are refetched.
HEADER = struct.Struct(">8sQd72sH")
FILL_WAIT = 5.0  # seconds to wait for another process's fill before reading the bucket
FILL_POLL = 0.02
UNCACHEABLE_KEYS = 10_000
_COPY_CHUNK = 1024 * 1024
_STAGE_QUEUE = 4  # chunks waiting for the digest thread (the memory they hold)


class Fill(enum.Enum):
    FILLED = "filled"  # this call fetched the object and stored the entry
    PRESENT = "present"  # someone else had stored it already
    BUSY = "busy"  # another fill of the key's lock stripe is under way
    SKIPPED = "skipped"  # the cache cannot keep it (full, unwritable, too big, unverified)


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
        self.budget = (
            DiskBudget(directory, max_bytes, name=storage.name) if directory is not None else None
        )
        # Keys a fill cannot keep (larger than the bound, an odd ETag): read from the bucket
        # at once next time, instead of a GET for a fill that skips and another to serve.
        self._uncacheable: set[str] = set()

    # -- reading ---------------------------------------------------------------------

    def open(self, key: str, wait: float = FILL_WAIT) -> BinaryIO:
        """The object as a binary stream: from the cache (filled first on a miss, waiting
        up to `wait` seconds for a fill under way elsewhere), or from the bucket."""
        if self.directory is None:  # stateless: stream straight from the bucket
            return self.from_bucket(key)
        hit = self.lookup(key)
        if hit is not None:
            return hit
        deadline = time.monotonic() + wait
        outcome = self.try_fill(key)
        while outcome is Fill.BUSY and time.monotonic() < deadline:
            time.sleep(FILL_POLL)
            outcome = self.try_fill(key)
        hit = self.lookup(key, count=outcome is not Fill.FILLED)
        return hit if hit is not None else self.from_bucket(key)

    def from_bucket(self, key: str) -> BinaryIO:
        """The object straight from the bucket (one GET), with its validators."""
        self.stats.add(dist_misses=1, bucket_requests=1)
        fetched = self.storage.get(key)  # one GET: the body and its validators
        assert fetched.stream is not None and fetched.info is not None
        return cast(BinaryIO, _BucketReader(fetched.stream, fetched.info))

    def identity_of(self, key: str) -> bytes:
        return f"{self.storage.identity}\n{key}".encode()

    def entry_path(self, key: str) -> Path:
        assert self.directory is not None
        digest = key_hash(self.identity_of(key).decode())
        return self.directory / digest[:2] / digest

    def entry_size(self, key: str, body_size: int) -> int:
        """Bytes on disk of the entry of a `body_size`-byte object."""
        return HEADER.size + len(self.identity_of(key)) + body_size

    def lookup(self, key: str, *, count: bool = True) -> BinaryIO | None:
        """The cached entry, or None (no lock taken: entries appear whole, by rename)."""
        if self.directory is None:
            return None
        path = self.entry_path(key)
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._degrade("cannot read an entry", exc)
            return None
        try:
            magic, size, modified, etag, id_length = HEADER.unpack(handle.read(HEADER.size))
            offset = HEADER.size + id_length
            if magic != MAGIC or handle.read(id_length) != self.identity_of(key):
                raise ValueError("foreign entry")
            if os.fstat(handle.fileno()).st_size != offset + size:
                raise ValueError("truncated entry")
            validators = (etag.rstrip(b"\0").decode("ascii"), datetime.fromtimestamp(modified, UTC))
        except (ValueError, struct.error, UnicodeDecodeError):
            handle.close()
            log.warning("dropping a corrupt cache entry %s", path)
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        with contextlib.suppress(OSError):
            os.utime(handle.fileno())  # recently used: evicted last
        if count:
            self.stats.add(dist_hits=1)
        return cast(BinaryIO, _EntryReader(handle, offset, size, *validators))

    # -- filling ---------------------------------------------------------------------

    def try_fill(self, key: str) -> Fill:
        """Store the bucket's object as an entry, unless another fill holds the key's lock
        (BUSY, at once). Raises NotFound when the bucket has no such object, StorageError
        when the bucket fails; local failures only give SKIPPED."""
        assert self.directory is not None
        lock = KeyLock(self.directory, key)
        try:
            if not lock.acquire(blocking=False):
                return Fill.BUSY
        except OSError as exc:
            self._degrade("cannot lock", exc)
            return Fill.SKIPPED
        try:
            present = self.lookup(key, count=False)  # filled by whoever held the lock before
            if present is not None:
                present.close()
                return Fill.PRESENT
            if key in self._uncacheable:
                return Fill.SKIPPED
            self.stats.add(dist_misses=1, bucket_requests=1)
            fetched = self.storage.get(key)
            assert fetched.stream is not None and fetched.info is not None
            with fetched.stream as source:
                return self._store(key, source, fetched.info)
        finally:
            lock.release()

    def _store(self, key: str, source: BinaryIO, info: ObjectInfo) -> Fill:
        assert self.budget is not None
        etag = info.etag
        size = self.entry_size(key, info.size)
        if len(etag) > 72 or not etag.isascii() or size > self.max_bytes:
            log.info("not caching %s: too large, or an ETag no entry header holds", key)
            if len(self._uncacheable) >= UNCACHEABLE_KEYS:
                self._uncacheable.clear()  # bounded: forgetting only costs a GET
            self._uncacheable.add(key)  # immutable objects: it stays too large
            return Fill.SKIPPED
        identity = self.identity_of(key)
        target = self.entry_path(key)
        temp: Path | None = None
        reserved = False
        try:
            # The temp file first (its name holds the reservation), then the reservation:
            # another process's recount in between already counts these bytes.
            fd, temp = create_temp(target.parent, size)
            with open(fd, "wb") as out:  # closing drops the temp file's lock
                reserved = self.budget.reserve(size, temp)
                if not reserved:  # other writers' temp files hold the space
                    log.info("not caching %s: the cache is full of fills under way", key)
                    return Fill.SKIPPED
                # Allocate the blocks now: a full disk shows before any byte is copied.
                os.posix_fallocate(fd, 0, size)
                header = HEADER.pack(
                    MAGIC, info.size, info.modified.timestamp(), etag.encode(), len(identity)
                )
                out.write(header + identity)
                check = BodyCheck.of(info)
                self.stats.add(**{f"fill_checks_{check.method.value}": 1})
                if not _copy_verified(source, out, check, key):
                    return Fill.SKIPPED
                out.flush()  # whole before it is visible
                os.replace(temp, target)  # still locked: never a stale-looking temp file
                temp = None
            return Fill.FILLED
        except StorageError:
            raise  # the bucket's stream broke: nothing is kept
        except OSError as exc:
            self._degrade("cannot fill an entry", exc)
            return Fill.SKIPPED
        finally:
            if temp is not None:
                with contextlib.suppress(OSError):
                    temp.unlink()
                if reserved:
                    with contextlib.suppress(OSError):
                        self.budget.release(size)

    # -- housekeeping ------------------------------------------------------------------

    def put(self, key: str, body: bytes | BinaryIO) -> None:
        """Store in the bucket; the cache fills on the first read (immutable objects)."""
        self.storage.write(key, body)

    def prune(self, max_bytes: int | None = None) -> tuple[int, int]:
        """Evict least recently used entries until the cache fits `max_bytes` (default: its
        bound); drop temp files of crashed fills and lock files of older versions.
        Returns (files, bytes) removed."""
        return self.budget.prune(max_bytes) if self.budget is not None else (0, 0)

    def recount(self) -> None:
        """At start: drop what crashed fills left and count the directory from the disk."""
        if self.budget is not None:
            try:
                self.budget.recount()
            except OSError as exc:
                self._degrade("cannot count the cache's usage", exc)

    def usage(self) -> Usage:
        if self.budget is None:
            return Usage(0, 0, 0, 0, 0)
        return self.budget.usage()

    def disk_usage(self) -> tuple[int, int]:
        """(entries, bytes) in the cache directory, temp files included in the bytes."""
        usage = self.usage()
        return usage.entries, usage.bytes

    def _degrade(self, what: str, exc: OSError) -> None:
        self.stats.add(cache_errors=1)
        log.warning("cache %s: %s (%s); reading from the bucket", self.directory, what, exc)


def _copy_verified(source: BinaryIO, out: BinaryIO, check: BodyCheck, key: str) -> bool:
    """Copy the body at the source's speed, checking what `check` can; False when wrong.

    This thread reads the client's own chunks (no copy through a buffer of ours), counts
    them, CRCs them when the check is a CRC computed here (`Method.INLINE`, GB/s) and writes
    them. The write is a copy into the page cache that releases the GIL: a writer thread
    measured slower here (64 MiB: 0.82x a stateless read against 0.89x inline, and ~10 ms
    more CPU in queue and GIL handoffs). A checksum the client validates itself
    (`Method.CLIENT`: every object the app wrote) costs nothing more: a mismatch raises from
    the read that reaches the end, the entry is never renamed into place and the temp file
    goes. Only a slow digest (`Method.DIGEST`: the MD5 of a legacy single-part ETag, a SHA)
    gets a thread of its own beside the copy.
    """
    inline = check.update if check.method is Method.INLINE else None
    digest = _Stage(check.update, "satchel-fill-digest") if check.method is Method.DIGEST else None
    try:
        for chunk in _chunks(source):
            check.count(len(chunk))
            if inline is not None:
                inline(chunk)
            if digest is not None:
                digest.feed(chunk)
            out.write(chunk)
    finally:
        if digest is not None:
            digest.stop()
    if digest is not None:
        digest.check()
    problem = check.problem()
    if problem is not None:
        log.warning("not caching %s: %s", key, problem)
        return False
    log.debug("filled %s, checked: %s", key, check.describe())
    return True


def _chunks(source: BinaryIO) -> Iterator[bytes]:
    """The body in chunks of up to `_COPY_CHUNK` bytes. A buffered stream fresh from the
    storage holds nothing yet: its raw stream is read directly, whose `read` gives the
    client's own chunks (S3's: botocore's, validated as they come) without a copy through a
    buffer."""
    raw = source.raw if isinstance(source, io.BufferedReader) else source
    while chunk := raw.read(_COPY_CHUNK):
        yield chunk


class _Stage:
    """`work` on a thread of its own, fed chunks in order through a short queue (the
    memory it holds is bounded). Its first failure stops it and is raised to the feeder."""

    def __init__(self, work: Callable[[bytes], object], name: str) -> None:
        self._work = work
        self._inbox: queue.Queue[bytes | None] = queue.Queue(_STAGE_QUEUE)
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._inbox.get()) is not None:
            if self._failure is None:
                try:
                    self._work(chunk)
                except BaseException as exc:  # reported to the feeder, which stops
                    self._failure = exc

    def feed(self, chunk: bytes) -> None:
        self.check()
        self._inbox.put(chunk)

    def stop(self) -> None:
        """Let it finish what it was fed, and wait."""
        self._inbox.put(None)
        self._thread.join()

    def check(self) -> None:
        if self._failure is not None:
            raise self._failure


class _Validated(Protocol):
    size: int
    etag: str
    last_modified: datetime


def validators_of(stream: BinaryIO) -> tuple[int, str, datetime]:
    """Size, ETag and Last-Modified of a stream `FileCache` returned: every one carries the
    bucket's (a hit from its entry header), so nobody needs a HEAD for them."""
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

    def __init__(
        self, handle: BinaryIO, offset: int, size: int, etag: str, last_modified: datetime
    ) -> None:
        self._handle = handle
        self._offset = offset
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
            offset += self._offset
        return self._handle.seek(offset, whence) - self._offset

    def tell(self) -> int:
        return self._handle.tell() - self._offset

    def fileno(self) -> int:
        return self._handle.fileno()

    def close(self) -> None:
        self._handle.close()
        super().close()
