"""The local target, the app's storages and mirror per scenario, request counting, timing."""

from __future__ import annotations

import contextlib
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import runtime
from infra.config import load_stack_config
from infra.local.target import LocalTarget
from runtime.mirror import MirrorStore, open_mirror
from runtime.settings import Settings
from runtime.storage.s3 import S3Adapter

CHUNK = 1024 * 1024
MiB = 1024 * 1024


class RequestLog:
    """Every request a botocore client sends (retries included), by operation name."""

    def __init__(self, client: Any) -> None:
        self._sent: list[str] = []
        self._lock = threading.Lock()
        client.meta.events.register("before-send.s3", self._record)

    def _record(self, event_name: str, **_: Any) -> None:
        with self._lock:
            self._sent.append(event_name.rsplit(".", 1)[-1])  # ...before-send.s3.GetObject

    def mark(self) -> int:
        with self._lock:
            return len(self._sent)

    def since(self, mark: int) -> list[str]:
        with self._lock:
            return self._sent[mark:]


@dataclass
class App:
    """What the app builds from the pod's env: settings, storages (one S3 client), a mirror."""

    settings: Settings
    storages: runtime.Storages
    mirror: MirrorStore
    requests: RequestLog

    @property
    def adapter(self) -> S3Adapter:
        adapter = self.storages.mirror_dist.adapter
        assert isinstance(adapter, S3Adapter)
        return adapter

    def with_caches(
        self,
        metadata: Path | None = None,
        dists: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> MirrorStore:
        """Another mirror on the same storages (same client, same request log)."""
        settings = _settings(self.settings.environ, metadata, dists)
        return open_mirror(settings, self.storages, clock=clock)

    def counter(self) -> Callable[[], dict[str, int]]:
        """Call once to start; the returned function gives GETs, HEADs and all requests since."""
        mark = self.requests.mark()

        def counted() -> dict[str, int]:
            sent = self.requests.since(mark)
            gets, heads = sent.count("GetObject"), sent.count("HeadObject")
            return {"get": gets, "head": heads, "all": len(sent)}

        return counted


@dataclass
class Bench:
    target: LocalTarget
    scratch: Path
    env: dict[str, str] = field(default_factory=dict)

    def app(self, metadata: Path | None = None, dists: Path | None = None, **env: str) -> App:
        settings = _settings({**self.env, **env}, metadata, dists)
        storages = runtime.open_storages(settings)
        client = storages.mirror_dist.adapter.client  # type: ignore[attr-defined]
        assert storages.mirror_meta.adapter.client is client  # type: ignore[attr-defined]
        requests = RequestLog(client)  # one client per bucket: every request is counted
        return App(settings, storages, open_mirror(settings, storages), requests)

    @contextlib.contextmanager
    def cache_dir(self) -> Iterator[Path]:
        """An empty cache directory, removed afterwards."""
        path = Path(tempfile.mkdtemp(prefix="cache-", dir=self.scratch))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)


def _settings(env: Any, metadata: Path | None, dists: Path | None) -> Settings:
    return runtime.load_settings(
        {
            **env,
            "MIRROR_METADATA_CACHE_DIR": str(metadata or ""),
            "MIRROR_DIST_CACHE_DIR": str(dists or ""),
        }
    )


@contextlib.contextmanager
def local_target() -> Iterator[Bench]:
    """The dev stack's local IRSA target in a temp dir; every process stopped, the dir removed."""
    with tempfile.TemporaryDirectory(prefix="satchel-bench-") as tmp:
        target = LocalTarget(load_stack_config("dev"), Path(tmp) / "target")
        target.up()
        try:
            scratch = Path(tmp) / "scratch"
            scratch.mkdir()
            yield Bench(target, scratch, target.pod_env())
        finally:
            target.down()


def median(values: list[float]) -> float:
    return statistics.median(values)


def rounds(variants: dict[str, Callable[[], float]], count: int) -> dict[str, list[float]]:
    """Run every variant `count` times, rotating their order each round (a noisy machine)."""
    names = list(variants)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for i in range(count):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            samples[name].append(variants[name]())
    return samples


def seconds(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start
