"""Figures 1 and 2: bucket requests per metadata read, and the warm read's time."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.baselines import PacketonCopy
from bench.harness import App, Bench, median, rounds, seconds
from bench.report import Row
from runtime.mirror import MirrorStore

DOCS = 5
DOC_BYTES = 20 * 1024
HOT_CALLS = 2000  # per round and variant
HOT_ROUNDS = 21
COLD_ROUNDS = 15


def document(index: int) -> bytes:
    """A composer p2 document of about 20 KiB."""
    name = f"bench/package-{index}"
    versions: list[dict[str, Any]] = []
    while len(body := json.dumps({"packages": {name: versions}}).encode()) < DOC_BYTES:
        v = f"1.{len(versions)}.0"
        versions.append(
            {
                "name": name,
                "version": v,
                "dist": {
                    "type": "zip",
                    "url": f"https://mirror.example/dists/{name}/{v}.zip",
                    "shasum": f"{len(versions):040x}",
                },
                "require": {"php": ">=8.1", "psr/log": "^3.0"},
            }
        )
    return body


class Clock:
    """Wall-clock time plus an offset: moves a mirror past its TTL without waiting."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def requests_per_read(bench: Bench, app: App) -> tuple[list[Row], dict[str, Any]]:
    paths = [f"p2/bench/package-{i}.json" for i in range(DOCS)]
    for i, path in enumerate(paths):
        app.mirror.put_metadata(path, document(i))  # stateless: the cache dirs stay empty
    counts: dict[str, list[dict[str, int]]] = {}

    def count(
        name: str, mirror: MirrorStore | None, read: Callable[[str], object], path: str
    ) -> None:
        requests, before = app.counter(), mirror.stats.snapshot() if mirror else None
        read(path)
        sample = requests()
        if mirror is not None and before is not None:
            sample["own"] = mirror.stats.snapshot()["bucket_requests"] - before["bucket_requests"]
        counts.setdefault(name, []).append(sample)

    missing = "p2/bench/missing.json"
    for path in paths:
        clock = Clock()
        with bench.cache_dir() as directory:
            ours = app.with_caches(metadata=directory, clock=clock)
            count("ours cold", ours, ours.get_metadata, path)
            count("ours warm", ours, ours.get_metadata, path)
            again = app.with_caches(metadata=directory)  # another process on the same dir
            count("ours warm, new process", again, again.get_metadata, path)
            clock.offset = app.settings.mirror_metadata_ttl + 1
            count("ours after TTL", ours, ours.get_metadata, path)
            count("ours missing", ours, ours.get_metadata, missing)
        with bench.cache_dir() as directory:
            packeton = PacketonCopy(app.storages.mirror_meta, directory)
            count("packeton cold", None, packeton.get, path)
            count("packeton warm", None, packeton.get, path)
            count("packeton missing", None, packeton.get, missing)
        count("stateless", app.mirror, app.mirror.get_metadata, path)

    def per_read(name: str) -> float:
        return median([float(s["all"]) for s in counts[name]])

    def note(name: str) -> str:
        own = [s["own"] for s in counts[name] if "own" in s]
        gets = sum(s["get"] for s in counts[name])
        heads = sum(s["head"] for s in counts[name])
        kinds = f"{gets} GET, {heads} HEAD in {len(counts[name])} reads"
        if own and own != [s["all"] for s in counts[name]]:
            return f"{kinds}; own counter differs: {own}"
        return f"{kinds}; own counter agrees" if own else kinds

    cold, base_cold = per_read("ours cold"), per_read("packeton cold")
    warm, base_warm = per_read("ours warm"), per_read("packeton warm")
    rows = [
        Row(1, "metadata cold read (empty cache) vs HEAD+GET copy", "requests", cold, base_cold,
            "1 vs 2", cold == 1 and base_cold == 2, note("ours cold")),
        Row(1, "metadata warm read (within TTL) vs local copy", "requests", warm, base_warm,
            "0", warm == 0, note("ours warm")),
        Row(1, "metadata warm read, new process on the cache dir", "requests",
            per_read("ours warm, new process"), None, "0",
            per_read("ours warm, new process") == 0, note("ours warm, new process")),
        Row(1, "metadata read after TTL (conditional GET, 304) vs copy", "requests",
            per_read("ours after TTL"), per_read("packeton warm"), "1",
            per_read("ours after TTL") == 1, "the copy is never revalidated: stale"),
        Row(1, "metadata read, missing document vs copy", "requests",
            per_read("ours missing"), per_read("packeton missing"), "", None,
            note("ours missing")),
        Row(1, "metadata read, stateless (no cache dir)", "requests", per_read("stateless"),
            None, "1", per_read("stateless") == 1, note("stateless")),
    ]  # fmt: skip
    return rows, {"metadata_requests": counts}


def read_times(bench: Bench, app: App) -> tuple[list[Row], dict[str, Any]]:
    path, body = "p2/bench/package-0.json", document(0)
    plain = bench.scratch / "plain.json"
    plain.write_bytes(body)

    def read_file() -> bytes:
        with open(plain, "rb") as handle:
            return handle.read()

    with bench.cache_dir() as hot_dir, bench.cache_dir() as disk_dir:
        hot = app.with_caches(metadata=hot_dir)
        disk = bench.app(metadata=disk_dir, SATCHEL_MIRROR_METADATA_MEMORY="0").mirror
        for mirror in (hot, disk):
            entry = mirror.get_metadata(path)
            assert entry is not None and entry.body == body
        assert read_file() == body

        def per_call(read: Callable[[], object]) -> Callable[[], float]:
            def run() -> float:
                start = time.perf_counter_ns()
                for _ in range(HOT_CALLS):
                    read()
                return (time.perf_counter_ns() - start) / HOT_CALLS / 1000  # µs

            return run

        warm = rounds(
            {
                "ours": per_call(lambda: hot.get_metadata(path)),
                "ours, memory LRU off": per_call(lambda: disk.get_metadata(path)),
                "file": per_call(read_file),
            },
            HOT_ROUNDS,
        )

    def cold(read: Callable[[Path], object]) -> Callable[[], float]:
        def run() -> float:
            with bench.cache_dir() as directory:
                return seconds(lambda: read(directory)) * 1000  # ms

        return run

    latency = rounds(
        {
            "ours cold": cold(lambda d: app.with_caches(metadata=d).get_metadata(path)),
            "packeton cold": cold(lambda d: PacketonCopy(app.storages.mirror_meta, d).get(path)),
            "stateless": lambda: seconds(lambda: app.mirror.get_metadata(path)) * 1000,
        },
        COLD_ROUNDS,
    )
    ours, file = median(warm["ours"]), median(warm["file"])
    rows = [
        Row(2, f"metadata warm read, {len(body) // 1024} KiB, in process vs open+read+close",
            "µs", ours, file, "<= 1.2x", ours <= 1.2 * file),
        Row(2, "metadata warm read, memory LRU off (disk entry) vs open+read+close", "µs",
            median(warm["ours, memory LRU off"]), file, "", None),
        Row(2, "metadata cold read latency vs HEAD+GET copy", "ms",
            median(latency["ours cold"]), median(latency["packeton cold"]), "", None),
        Row(2, "metadata read latency, stateless (one GET)", "ms",
            median(latency["stateless"]), None, "", None),
    ]  # fmt: skip
    return rows, {"metadata_warm_us": warm, "metadata_latency_ms": latency}
