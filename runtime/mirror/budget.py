"""One byte bound per cache directory, shared by every process that uses it.

The directory's usage is one counter (`.usage`) updated under `.locks/usage.lock`. A writer
reserves its file's bytes before writing a single one; a reservation that would pass the
bound first evicts least recently used entries down to the low-water mark, in one batch, so
a full cache scans its directory once per batch, not once per fill (nginx's cache manager
works the same way). The counter is recounted from the disk when it is missing, on every
eviction and after `RECOUNT_SECONDS`: what a crash left uncounted cannot skew it for long.

Temp files (`.fill-<reserved>-*`, entries and downloads being written) are created before
their bytes are reserved and carry the reservation in their name, so a recount by another
process counts what they will hold, not what they hold yet. Each is flock'ed by its writer
for as long as it writes: one that nobody holds was left by a crashed process and is
removed by the next recount, eviction or prune.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from runtime import metrics
from runtime.mirror.locks import (
    LOCK_DIR,
    USAGE_LOCK,
    FileLock,
    count_locks,
    is_held,
    remove_foreign_locks,
)

TEMP_PREFIX = ".fill-"
SPOOL_DIR = "spool"  # downloads on their way to the bucket (runtime.mirror.spool)
USAGE_FILE = ".usage"
LOW_WATER = 0.9  # evict down to this share of the bound
RECOUNT_SECONDS = 600.0
TEMP_GRACE = 30.0  # a temp file this young may be between its creation and its lock
_COUNTER = struct.Struct(">qd")  # bytes in use, when they were last counted from the disk


@dataclass(frozen=True)
class Usage:
    entries: int
    bytes: int  # of the entries and of the temp files being written
    temp_files: int
    temp_bytes: int
    lock_files: int


@dataclass(frozen=True)
class _File:
    path: Path
    used: float  # mtime: entries are touched when read
    size: int


def create_temp(parent: Path, reserved: int) -> tuple[int, Path]:
    """A new temp file in `parent` for `reserved` bytes, locked by this process until its
    fd is closed."""
    parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{reserved}-", dir=parent)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BaseException:
        os.close(fd)
        os.unlink(name)
        raise
    return fd, Path(name)


class DiskBudget:
    def __init__(
        self,
        directory: Path,
        max_bytes: int,
        *,
        name: str = "cache",
        low_water: float = LOW_WATER,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.name = name  # for the metrics: mirror_dist, mirror_meta, artifacts, packages
        self.low_water = low_water
        self._clock = clock

    def reserve(self, size: int, temp: Path | None = None) -> bool:
        """Count `size` more bytes about to be written into `temp` (whose name already
        holds them, on top of what was reserved for it before), evicting first if they
        would not fit. False (nothing counted) when they cannot fit, not even once every
        entry is evicted (other writers' temp files hold the space). Raises OSError."""
        if size > self.max_bytes:
            return False
        with self._locked() as counter:
            total, counted = self._read(counter)
            reserving = (temp, size) if temp is not None else None
            if total is None or self._clock() - counted > RECOUNT_SECONDS:
                total, counted = self._evict(None, reserving), self._clock()
            if total + size > self.max_bytes:
                low_water = int(self.max_bytes * self.low_water) - size
                total, counted = self._evict(low_water, reserving), self._clock()
            if total + size > self.max_bytes:
                self._write(counter, total, counted)
                return False
            self._write(counter, total + size, counted)
        return True

    def release(self, size: int) -> None:
        """Give back bytes reserved for a file that was not kept (or was replaced)."""
        with self._locked() as counter:
            total, counted = self._read(counter)
            if total is not None:
                self._write(counter, max(0, total - size), counted)

    def prune(self, max_bytes: int | None = None) -> tuple[int, int]:
        """Evict down to `max_bytes` (default: the bound), drop stale temp files and lock
        files of older versions. Returns (files, bytes) removed."""
        bound = self.max_bytes if max_bytes is None else max_bytes
        with self._locked() as counter:
            before = self.usage()
            total = self._evict(bound)
            self._write(counter, total, self._clock())
        remove_foreign_locks(self.directory)
        after = self.usage()
        files = before.entries + before.temp_files - after.entries - after.temp_files
        return max(0, files), max(0, before.bytes - after.bytes)

    def recount(self) -> Usage:
        """Count from the disk, removing what crashed writers left and lock files of older
        versions (at start, and on demand)."""
        with self._locked() as counter:
            self._write(counter, self._evict(None), self._clock())
        remove_foreign_locks(self.directory)
        return self.usage()

    def usage(self) -> Usage:
        entries, temps = self._scan()
        entry_bytes = sum(f.size for f in entries)
        temp_bytes = sum(f.size for f in temps)
        return Usage(
            len(entries),
            entry_bytes + temp_bytes,
            len(temps),
            temp_bytes,
            count_locks(self.directory),
        )

    # -- under the usage lock ------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[int]:
        with FileLock(self.directory / LOCK_DIR / USAGE_LOCK):
            fd = os.open(self.directory / USAGE_FILE, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                yield fd
            finally:
                os.close(fd)

    def _read(self, fd: int) -> tuple[int | None, float]:
        raw = os.pread(fd, _COUNTER.size, 0)
        if len(raw) != _COUNTER.size:
            return None, 0.0
        total, counted = _COUNTER.unpack(raw)
        return total, counted

    def _write(self, fd: int, total: int, counted: float) -> None:
        os.pwrite(fd, _COUNTER.pack(total, counted), 0)

    def _evict(self, target: int | None, reserving: tuple[Path, int] | None = None) -> int:
        """Remove stale temp files, then the oldest entries until at most `target` bytes
        are used (None: evict nothing). Returns the bytes still used, less the `reserving`
        (temp file, bytes) whose reservation is being made."""
        entries, temps = self._scan(remove_stale=True)
        total = sum(f.size for f in entries) + sum(f.size for f in temps)
        if reserving is not None and any(t.path == reserving[0] for t in temps):
            total -= reserving[1]
        if target is None:
            return total
        evicted = 0
        for entry in sorted(entries, key=lambda f: f.used):
            if total <= target:
                break
            with contextlib.suppress(FileNotFoundError):
                entry.path.unlink()  # a reader that has it open keeps reading it
                evicted += entry.size
            total -= entry.size
        if evicted:
            metrics.LOCAL_CACHE_EVICTIONS.labels(self.name).inc(evicted)
        return total

    def counted(self) -> int:
        """The bytes the counter holds now (no lock: a gauge may lag a write)."""
        try:
            with open(self.directory / USAGE_FILE, "rb") as counter:
                raw = counter.read(_COUNTER.size)
        except FileNotFoundError:
            return 0
        return _COUNTER.unpack(raw)[0] if len(raw) == _COUNTER.size else 0

    def _scan(self, *, remove_stale: bool = False) -> tuple[list[_File], list[_File]]:
        """(entries, live temp files) in the shard directories."""
        entries: list[_File] = []
        temps: list[_File] = []
        try:
            shards = [d for d in os.scandir(self.directory) if _is_shard(d)]
        except FileNotFoundError:
            return entries, temps
        now = self._clock()
        for shard in shards:
            with contextlib.suppress(FileNotFoundError):
                for item in os.scandir(shard.path):
                    if not item.is_file(follow_symlinks=False):
                        continue
                    with contextlib.suppress(FileNotFoundError):
                        st = item.stat()
                        found = _File(Path(item.path), st.st_mtime, st.st_size)
                        if not item.name.startswith(TEMP_PREFIX):
                            entries.append(found)
                            continue
                        # What it will hold: the reservation in its name, or more.
                        will_hold = max(st.st_size, _reserved(item.name))
                        found = _File(found.path, found.used, will_hold)
                        if now - st.st_mtime < TEMP_GRACE or is_held(found.path):
                            temps.append(found)
                        elif remove_stale:
                            os.unlink(item.path)  # left by a crashed writer
                        else:
                            temps.append(found)
        return entries, temps


def _is_shard(entry: os.DirEntry[str]) -> bool:
    """Entries live in directories named by the first two hex digits of their hash."""
    name = entry.name
    hexadecimal = len(name) == 2 and all(c in "0123456789abcdef" for c in name)
    return (hexadecimal or name == SPOOL_DIR) and entry.is_dir()


def _reserved(name: str) -> int:
    """The bytes a temp file's name says are reserved for it (`.fill-<bytes>-XXXX`)."""
    digits = name[len(TEMP_PREFIX) :].split("-", 1)[0]
    return int(digits) if digits.isdigit() else 0
