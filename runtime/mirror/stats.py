"""Counters of one mirror store: hits, misses and the bucket requests they cost."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, fields


@dataclass
class MirrorStats:
    metadata_hits: int = 0
    metadata_misses: int = 0
    metadata_not_modified: int = 0  # revalidations answered 304: the cached body stays
    dist_hits: int = 0
    dist_misses: int = 0
    bucket_requests: int = 0
    cache_errors: int = 0  # local cache failures that fell back to the bucket
    # Dist fill attempts by how their bytes are checked besides the length (verify.Method): the
    # bucket's client validated the object's checksum, a CRC in the copy pass, a digest on
    # a thread of its own (a legacy MD5 ETag), or nothing (the length only).
    fill_checks_client: int = 0
    fill_checks_inline: int = 0
    fill_checks_digest: int = 0
    fill_checks_length: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "_lock"}
