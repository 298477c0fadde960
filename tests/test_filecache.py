"""FileCache's fill verification, with a backend that lies about its ETag (failures injected
at the client boundary, as flysystem's suites do)."""

from __future__ import annotations

import hashlib
import io
from datetime import UTC, datetime
from pathlib import Path

from runtime.mirror.filecache import FileCache
from runtime.mirror.stats import MirrorStats
from runtime.storage import Fetched, ObjectInfo, Storage

BODY = b"dist bytes" * 1000


class _Backend:
    """Serves BODY under whatever ETag it is given; counts GETs."""

    location = "test://backend"

    def __init__(self, etag: str) -> None:
        self.etag = etag
        self.gets = 0

    def get(self, key: str, if_none_match: str | None = None) -> Fetched:
        self.gets += 1
        info = ObjectInfo(key, len(BODY), self.etag, datetime.now(UTC))
        return Fetched(info=info, stream=io.BytesIO(BODY))


def _cache(backend: _Backend, tmp_path: Path) -> FileCache:
    storage = Storage("mirror_dist", backend, "")  # type: ignore[arg-type]
    return FileCache(storage, tmp_path / "cache", 1 << 30, MirrorStats())


def test_a_fill_whose_md5_matches_the_etag_is_kept(tmp_path: Path) -> None:
    backend = _Backend(hashlib.md5(BODY).hexdigest())
    cache = _cache(backend, tmp_path)
    assert cache.open("a.zip").read() == BODY
    assert cache.open("a.zip").read() == BODY
    assert backend.gets == 1


def test_a_fill_whose_md5_differs_from_the_etag_is_served_but_not_kept(tmp_path: Path) -> None:
    backend = _Backend("0" * 32)  # an MD5-shaped ETag of other bytes
    cache = _cache(backend, tmp_path)
    assert cache.open("a.zip").read() == BODY  # the caller still gets what the bucket sent
    assert cache.disk_usage() == (0, 0)
    cache.open("a.zip").read()
    assert backend.gets == 4  # each read: the fill that failed its check, then the bucket


def test_a_multipart_etag_is_checked_by_length_only(tmp_path: Path) -> None:
    backend = _Backend("3858f62230ac3c915f300c664312c11f-3")
    cache = _cache(backend, tmp_path)
    cache.open("a.zip").read()
    assert cache.disk_usage() == (1, cache.entry_size("a.zip", len(BODY)))
