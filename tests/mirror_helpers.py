"""Shared by the mirror tests: env per scenario and a request counter on the real clients."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import runtime
from runtime.mirror import MirrorStore, open_mirror
from runtime.storage.s3 import S3Adapter


class RequestCounter:
    """HTTP requests sent by the S3 clients of a mirror, by operation (botocore event hook)."""

    def __init__(self, mirror: MirrorStore) -> None:
        self.counts: Counter[str] = Counter()
        clients = {
            id(storage.adapter.client): storage.adapter.client
            for storage in (mirror.metadata.storage, mirror.dists.storage)
            if isinstance(storage.adapter, S3Adapter)
        }
        for client in clients.values():
            client.meta.events.register("before-send.s3", self)

    def __call__(self, event_name: str, **_: Any) -> None:
        self.counts[event_name.rsplit(".", 1)[-1]] += 1

    def take(self) -> Counter[str]:
        """The counts since the last call."""
        counts, self.counts = self.counts, Counter()
        return counts


def mirror_env(pod_env: dict[str, str], prefix: str, cache: Path | None) -> dict[str, str]:
    """The pod's env with its own mirror prefixes and, optionally, the /tmp-style caches."""
    return {
        **pod_env,
        "STORAGE_AWS_MIRROR_META_PREFIX": "mirror-meta",
        "STORAGE_AWS_MIRROR_DIST_PREFIX": "mirror-dist",
        "MIRROR_METADATA_CACHE_DIR": str(cache / "meta") if cache else "",
        "MIRROR_DIST_CACHE_DIR": str(cache / "dist") if cache else "",
        "SATCHEL_TEST_RUN": prefix,
    }


def open_counted(env: dict[str, str], **kwargs: Any) -> tuple[MirrorStore, RequestCounter]:
    mirror = open_mirror(runtime.load_settings(env), **kwargs)
    return mirror, RequestCounter(mirror)
