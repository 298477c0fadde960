"""Mirror metadata: read-through local cache with a TTL, revalidated by one conditional GET.

Stateless (no cache dir): every read is one bucket GET, nothing touches local disk.
With a cache dir: an in-process LRU (bounded by bytes) in front of one file per path. Within
the TTL a read costs no request; after it, one GET with If-None-Match: a 304 keeps the body.
Entries carry the bucket's ETag and Last-Modified, the same on every replica. Writes go to the
bucket first, then the cache (temp file + rename). The files are bounded by `max_bytes` for
all processes together (`DiskBudget`), least recently validated evicted first.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from runtime.errors import NotFound
from runtime.mirror.budget import DiskBudget, Usage, create_temp
from runtime.mirror.locks import KeyLock, key_hash
from runtime.mirror.stats import MirrorStats
from runtime.storage import ObjectInfo, Storage

log = logging.getLogger("satchel.cache")


@dataclass(frozen=True)
class MetadataEntry:
    body: bytes
    etag: str
    last_modified: datetime

    @classmethod
    def of(cls, body: bytes, info: ObjectInfo) -> MetadataEntry:
        return cls(body=body, etag=info.etag, last_modified=info.modified)


@dataclass(frozen=True)
class _Cached:
    entry: MetadataEntry
    validated: float  # wall-clock time of the last bucket check (a file's mtime on disk)


class MetadataStore:
    def __init__(
        self,
        storage: Storage,
        directory: Path | None,
        ttl: float,
        memory_bytes: int,
        stats: MirrorStats,
        clock: Callable[[], float] = time.time,
        max_bytes: int = 1 << 30,
    ) -> None:
        self.storage = storage
        self.directory = directory
        self.ttl = ttl
        self.stats = stats
        self._clock = clock
        self._memory = _LruBytes(memory_bytes)
        self.max_bytes = max_bytes
        self.budget = (
            DiskBudget(directory, max_bytes, name=storage.name) if directory is not None else None
        )

    def get(self, path: str) -> MetadataEntry | None:
        """The document at `path`, or None if the bucket has none."""
        if self.directory is None:
            return self._fetch(path, None)
        remembered = self._memory.get(path)
        if remembered is not None and self._fresh(remembered):  # the hot path: no I/O
            self.stats.add(metadata_hits=1)
            return remembered.entry
        cached = self._read_disk(path)
        if cached is not None and self._fresh(cached):
            self.stats.add(metadata_hits=1)
            self._memory.put(path, cached)
            return cached.entry
        lock = KeyLock(self.directory, path)
        try:
            lock.acquire()
        except OSError as exc:
            self._degrade("cannot lock", exc)
            return self._fetch(path, None)
        try:
            # Whoever held the lock may have revalidated it meanwhile.
            again = self._read_disk(path)
            if again is not None and self._fresh(again):
                self.stats.add(metadata_hits=1)
                self._memory.put(path, again)
                return again.entry
            return self._revalidate(path, again or cached)
        finally:
            lock.release()

    def put(self, path: str, body: bytes) -> MetadataEntry:
        info = self.storage.write(path, body)
        if info is None:  # not for bytes on our backends; a HEAD would tell
            info = self.storage.stat(path)
        entry = MetadataEntry.of(body, info)
        if self.directory is not None:
            cached = _Cached(entry, self._clock())
            self._write_disk(path, cached)
            self._memory.put(path, cached)
        return entry

    def _revalidate(self, path: str, cached: _Cached | None) -> MetadataEntry | None:
        etag = cached.entry.etag if cached else None
        entry = self._fetch(path, cached.entry if cached else None, etag)
        if entry is None:
            self._forget(path)
            return None
        fresh = _Cached(entry, self._clock())
        if cached is not None and entry is cached.entry:
            self._touch_disk(path, fresh.validated)  # 304: the body stays, the clock restarts
        else:
            self._write_disk(path, fresh)
        self._memory.put(path, fresh)
        return entry

    def _fetch(
        self, path: str, current: MetadataEntry | None, etag: str | None = None
    ) -> MetadataEntry | None:
        """One GET (conditional with `etag`): `current` back on 304, None when missing."""
        self.stats.add(bucket_requests=1)
        try:
            fetched = self.storage.get(path, if_none_match=etag)
        except NotFound:
            self.stats.add(metadata_misses=1)
            return None
        if fetched.not_modified:
            self.stats.add(metadata_not_modified=1)
            assert current is not None
            return current
        self.stats.add(metadata_misses=1)
        assert fetched.stream is not None and fetched.info is not None
        with fetched.stream as stream:
            return MetadataEntry.of(stream.read(), fetched.info)

    def _fresh(self, cached: _Cached) -> bool:
        return self._clock() - cached.validated < self.ttl

    # -- the disk layer: one file per path, a JSON header line then the body -----------

    def _file(self, path: str) -> Path:
        assert self.directory is not None
        digest = key_hash(path)
        return self.directory / digest[:2] / f"{digest}.meta"

    def _read_disk(self, path: str) -> _Cached | None:
        file = self._file(path)
        try:
            with file.open("rb") as handle:
                header = json.loads(handle.readline())
                body = handle.read()
                validated = os.fstat(handle.fileno()).st_mtime
            if header.get("path") != path or len(body) != header["size"]:
                raise ValueError("truncated or foreign entry")
            entry = MetadataEntry(
                body, header["etag"], datetime.fromisoformat(header["last_modified"])
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("dropping a corrupt metadata cache entry %s (%s)", file, exc)
            with contextlib.suppress(OSError):
                file.unlink()
            return None
        return _Cached(entry, validated)

    def _write_disk(self, path: str, cached: _Cached) -> None:
        assert self.budget is not None
        file = self._file(path)
        header = {
            "path": path,
            "etag": cached.entry.etag,
            "last_modified": cached.entry.last_modified.isoformat(),
            "size": len(cached.entry.body),
        }
        data = json.dumps(header).encode() + b"\n" + cached.entry.body
        temp, reserved = None, False
        try:
            fd, temp = create_temp(file.parent, len(data))  # then reserved: see DiskBudget
            with os.fdopen(fd, "wb") as out:  # closing drops the temp file's lock
                reserved = self.budget.reserve(len(data), temp)
                if not reserved:
                    return  # larger than the cache can hold: served from memory and the bucket
                try:
                    replaced = file.stat().st_size
                except FileNotFoundError:
                    replaced = 0
                out.write(data)
                out.flush()
                os.utime(fd, (cached.validated, cached.validated))
                os.replace(temp, file)
            temp = None
            if replaced:
                self.budget.release(replaced)
        except OSError as exc:
            self._degrade("cannot write an entry", exc)
        finally:
            if temp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
                if reserved:
                    with contextlib.suppress(OSError):
                        self.budget.release(len(data))

    def _touch_disk(self, path: str, validated: float) -> None:
        try:
            os.utime(self._file(path), (validated, validated))
        except OSError as exc:
            self._degrade("cannot touch an entry", exc)

    def _forget(self, path: str) -> None:
        self._memory.pop(path)
        with contextlib.suppress(OSError):
            self._file(path).unlink()

    def usage(self) -> Usage:
        return self.budget.usage() if self.budget is not None else Usage(0, 0, 0, 0, 0)

    def disk_usage(self) -> tuple[int, int]:
        """(entries, bytes) of the cache directory, temp files included in the bytes."""
        usage = self.usage()
        return usage.entries, usage.bytes

    def prune(self, max_bytes: int | None = None) -> tuple[int, int]:
        """Evict the least recently validated documents down to `max_bytes` (default: the
        bound) and what crashed writers left; 0 empties it (the bucket keeps them)."""
        if self.budget is None:
            return 0, 0
        if max_bytes == 0:
            self._memory = _LruBytes(self._memory.max_bytes)
        return self.budget.prune(max_bytes)

    def recount(self) -> None:
        """At start: drop what crashed writers left and count the directory from the disk."""
        if self.budget is not None:
            try:
                self.budget.recount()
            except OSError as exc:
                self._degrade("cannot count the cache's usage", exc)

    def _degrade(self, what: str, exc: OSError) -> None:
        self.stats.add(cache_errors=1)
        log.warning("metadata cache %s: %s (%s)", self.directory, what, exc)


class _LruBytes:
    """A thread-safe LRU of cached entries, bounded by the bytes of their bodies."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, _Cached] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> _Cached | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: str, item: _Cached) -> None:
        size = len(item.entry.body)
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= len(old.entry.body)
            self._items[key] = item
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, evicted = self._items.popitem(last=False)
                self._bytes -= len(evicted.entry.body)

    def pop(self, key: str) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= len(old.entry.body)
