"""What the local caches leave on a pod's volume under hostile and crashing traffic: one
bound shared by every process, a fixed number of lock files, no uncounted leftovers of
crashed fills, spooled downloads inside the bound. Real processes, real SIGKILLs."""

from __future__ import annotations

import contextlib
import hashlib
import io
import multiprocessing
import os
import secrets
import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from runtime.errors import NotFound
from runtime.mirror.budget import TEMP_GRACE, DiskBudget
from runtime.mirror.filecache import FileCache, Fill
from runtime.mirror.locks import LOCK_DIR, STRIPES
from runtime.mirror.metadata import MetadataStore
from runtime.mirror.spool import open_spool
from runtime.mirror.stats import MirrorStats
from runtime.storage import Fetched, ObjectInfo, Storage

ENTRY = 1024 * 1024


class _Bodies:
    """An in-memory backend of immutable objects; `stall` makes reads hang after 1 MiB."""

    location = "test://bodies"

    def __init__(self) -> None:
        self.bodies: dict[str, bytes] = {}
        self.stall: threading.Event | None = None

    def get(self, key: str, if_none_match: str | None = None) -> Fetched:
        if key not in self.bodies:
            raise NotFound("no such key", key=key)
        body = self.bodies[key]
        info = ObjectInfo(key, len(body), hashlib.md5(body).hexdigest(), datetime.now(UTC))
        return Fetched(info, _Stalling(body, self.stall) if self.stall else io.BytesIO(body))


class _Stalling(io.RawIOBase):
    def __init__(self, body: bytes, stall: threading.Event) -> None:
        self._body, self._stall, self._at = body, stall, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._at >= ENTRY:
            self._stall.wait()  # never set: the fill hangs here until killed
        n = min(len(buffer), len(self._body) - self._at)
        buffer[:n] = self._body[self._at : self._at + n]
        self._at += n
        return n


def _cache(directory: Path, max_bytes: int, backend: _Bodies | None = None) -> FileCache:
    storage = Storage("mirror_dist", backend or _Bodies(), "")  # type: ignore[arg-type]
    return FileCache(storage, directory, max_bytes, MirrorStats())


def _on_disk(directory: Path) -> int:
    """Bytes of every file under `directory` but the bookkeeping (locks, counter)."""
    total = 0
    for root, _, files in os.walk(directory):
        if LOCK_DIR in Path(root).parts:
            continue
        for name in files:
            if name != ".usage":
                with contextlib.suppress(FileNotFoundError):
                    total += os.stat(os.path.join(root, name)).st_size
    return total


def test_lock_files_stay_bounded_whatever_keys_are_asked_for(tmp_path: Path) -> None:
    cache = _cache(tmp_path / "cache", 1 << 30)
    for _ in range(2000):  # anonymous requests for dists that do not exist
        with pytest.raises(NotFound):
            cache.open(f"up/acme/x/{secrets.token_hex(8)}.zip")
    locks = os.listdir(tmp_path / "cache" / LOCK_DIR)
    assert len(locks) <= STRIPES + 1  # the stripes and the usage counter's lock
    assert cache.usage().lock_files == len(locks)


def test_prune_removes_lock_files_of_older_versions(tmp_path: Path) -> None:
    cache = _cache(tmp_path / "cache", 1 << 30)
    old = tmp_path / "cache" / LOCK_DIR
    old.mkdir(parents=True)
    for _ in range(50):  # one per key, as before the stripes
        (old / f"{secrets.token_hex(32)}.lock").touch()
    cache.prune()
    assert cache.usage().lock_files == 1  # the usage counter's own


def _fill_forever(directory: Path, key: str) -> None:
    backend = _Bodies()
    backend.bodies[key] = secrets.token_bytes(8 * ENTRY)
    backend.stall = threading.Event()
    _cache(directory, 1 << 30, backend).try_fill(key)


def test_a_fill_killed_midway_is_counted_then_removed(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    fills = [
        multiprocessing.get_context("fork").Process(target=_fill_forever, args=(directory, k))
        for k in ("a.zip", "b.zip", "c.zip")
    ]
    for fill in fills:
        fill.start()
    cache = _cache(directory, 1 << 30)
    deadline = time.monotonic() + 20
    while cache.usage().temp_files < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    for fill in fills:
        os.kill(fill.pid, signal.SIGKILL)  # a crash mid-fill: no cleanup code runs
        fill.join()
    usage = cache.usage()
    assert (usage.entries, usage.temp_files) == (0, 3)
    assert usage.bytes == usage.temp_bytes >= 3 * 8 * ENTRY  # counted, not (0, 0)
    cache.prune()
    assert cache.usage().temp_files == 3  # still young: they could belong to a live fill
    for temp in directory.glob("??/.fill-*"):
        past = time.time() - TEMP_GRACE - 1
        os.utime(temp, (past, past))
    cache.recount()  # what a restarted worker does at start
    usage = cache.usage()
    assert (usage.entries, usage.bytes, usage.temp_files) == (0, 0, 0)
    assert not list(directory.glob("??/.fill-*"))


def test_a_live_fill_is_never_taken_for_a_crashed_one(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    backend = _Bodies()
    backend.bodies["a.zip"] = secrets.token_bytes(4 * ENTRY)
    backend.stall = threading.Event()
    filling = threading.Thread(target=_cache(directory, 1 << 30, backend).try_fill, args=("a.zip",))
    filling.start()
    cache = _cache(directory, 1 << 30)
    while cache.usage().temp_files == 0:
        time.sleep(0.01)
    temp = next(directory.glob("??/.fill-*"))
    past = time.time() - TEMP_GRACE - 1
    os.utime(temp, (past, past))  # old, but its writer holds its lock
    cache.prune(0)
    assert temp.exists()
    assert cache.try_fill("a.zip") is Fill.BUSY  # and its key is still being filled
    backend.stall.set()
    filling.join()
    assert cache.lookup("a.zip") is not None


def _fill_many(directory: Path, bound: int, keys: list[str]) -> None:
    backend = _Bodies()
    cache = _cache(directory, bound, backend)
    for key in keys:
        backend.bodies[key] = secrets.token_bytes(ENTRY)
        with cache.open(key) as stream:
            stream.read()


def test_two_processes_filling_one_cache_never_pass_its_bound_by_more_than_one_entry(
    tmp_path: Path,
) -> None:
    directory, bound = tmp_path / "cache", 10 * ENTRY
    context = multiprocessing.get_context("fork")
    workers = [
        context.Process(
            target=_fill_many, args=(directory, bound, [f"w{w}/{i}" for i in range(40)])
        )
        for w in range(2)
    ]
    peak = 0
    for worker in workers:
        worker.start()
    while any(worker.is_alive() for worker in workers):
        peak = max(peak, _on_disk(directory))
    for worker in workers:
        worker.join()
        assert worker.exitcode == 0
    entry = _cache(directory, bound).entry_size("w0/0", ENTRY)
    print(f"\nbound {bound >> 20} MiB, peak on disk {peak / ENTRY:.2f} MiB")
    assert peak <= bound + entry
    assert _cache(directory, bound).usage().bytes <= bound


def test_a_full_cache_scans_its_directory_once_per_eviction_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = _Bodies()
    cache = _cache(tmp_path / "cache", 20 * 64 * 1024, backend)
    scans = 0
    real_scan = DiskBudget._scan

    def counted(self: DiskBudget, **kwargs: bool) -> object:
        nonlocal scans
        scans += 1
        return real_scan(self, **kwargs)

    monkeypatch.setattr(DiskBudget, "_scan", counted)
    for i in range(200):  # ten times what fits
        backend.bodies[f"k{i}"] = secrets.token_bytes(64 * 1024 - 200)
        cache.open(f"k{i}").read()
    # Evicting down to 90% frees two entries a batch: ~90 scans, not 200.
    assert scans <= 200 // 2 + 1
    assert cache.usage().bytes <= cache.max_bytes


def test_the_metadata_disk_cache_keeps_its_bound(tmp_path: Path) -> None:
    class _Meta(_Bodies):
        def write(self, key: str, body: bytes) -> ObjectInfo:
            self.bodies[key] = body
            return ObjectInfo(key, len(body), hashlib.md5(body).hexdigest(), datetime.now(UTC))

    storage = Storage("mirror_meta", _Meta(), "")  # type: ignore[arg-type]
    bound = 200 * 1024
    store = MetadataStore(storage, tmp_path / "meta", 60, 1 << 20, MirrorStats(), max_bytes=bound)
    for i in range(100):
        store.put(f"p2/acme/p{i}.json", secrets.token_bytes(10 * 1024))
        assert _on_disk(tmp_path / "meta") <= bound
    assert store.usage().entries < 20


def test_a_spooled_download_counts_against_the_dist_cache_and_is_returned(
    tmp_path: Path,
) -> None:
    budget = DiskBudget(tmp_path / "cache", 20 * ENTRY)
    with open_spool(budget) as spool:
        spool.write(secrets.token_bytes(3 * ENTRY))
        assert budget.usage().temp_bytes == 3 * ENTRY  # what it will hold, reserved
        assert _reserved(budget) == 3 * ENTRY
    assert budget.usage().bytes == 0 and _reserved(budget) == 0
    with (
        pytest.raises(OSError, match="larger than the dist cache's bound"),
        open_spool(budget) as s,
    ):
        for _ in range(21):
            s.write(secrets.token_bytes(ENTRY))
    assert budget.usage().bytes == 0 and _reserved(budget) == 0


def _reserved(budget: DiskBudget) -> int:
    """What the shared counter holds (no counter yet: nothing was ever reserved)."""
    counter = budget.directory / ".usage"
    return int.from_bytes(counter.read_bytes()[:8], "big") if counter.exists() else 0


def test_a_recount_elsewhere_never_loses_what_writers_reserved(tmp_path: Path) -> None:
    """A spool between two of its reservations, recounted from the disk by another process
    meanwhile: the counter still holds what the spool reserved, not what it wrote."""
    budget = DiskBudget(tmp_path / "cache", 20 * ENTRY)
    other = DiskBudget(tmp_path / "cache", 20 * ENTRY)  # another process's view
    with open_spool(budget) as spool:
        spool.write(secrets.token_bytes(ENTRY))
        other.recount()
        assert _reserved(other) == ENTRY
        spool.write(secrets.token_bytes(7 * ENTRY + 1))
        other.recount()
        assert _reserved(other) == 8 * ENTRY + 1
        assert not other.reserve(12 * ENTRY)  # 8 + 12 > 20: refused, not over the bound
        assert other.reserve(11 * ENTRY)
    assert _reserved(budget) == 11 * ENTRY  # the spool gave its 8 MiB back


def test_spools_reserve_small_steps_beside_a_small_bound(tmp_path: Path) -> None:
    """Many spools of small dists at once must not push the cached entries out."""
    cache = _cache(tmp_path / "cache", 16 * ENTRY)
    cache.storage.adapter.bodies["warm.zip"] = secrets.token_bytes(ENTRY)  # type: ignore[attr-defined]
    cache.open("warm.zip").read()
    assert cache.budget is not None
    spools = [open_spool(cache.budget) for _ in range(8)]
    try:
        for spool in spools:
            spool.write(secrets.token_bytes(10_000))  # a small dist on its way
        assert cache.lookup("warm.zip") is not None  # not evicted for them
        assert _reserved(cache.budget) < 2 * ENTRY + cache.entry_size("warm.zip", ENTRY)
    finally:
        for spool in spools:
            spool.close()


def test_a_fill_that_fails_to_start_leaves_no_reservation(tmp_path: Path) -> None:
    backend = _Bodies()
    cache = _cache(tmp_path / "cache", 1 << 30, backend)
    backend.bodies["a.zip"] = secrets.token_bytes(ENTRY)
    shard = cache.entry_path("a.zip").parent
    shard.parent.mkdir(parents=True)
    shard.write_bytes(b"")  # a file where the shard directory should be: no temp file
    for _ in range(5):
        assert cache.open("a.zip").read() == backend.bodies["a.zip"]
    assert cache.budget is not None and _reserved(cache.budget) == 0
