"""Figures 3-5: dist read throughput (the bucket on this machine, and across a network),
RSS while streaming, concurrent cold readers."""

from __future__ import annotations

import io
import json
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.baselines import boto3_download, boto3_iter_chunks, obstore_read, obstore_store
from bench.harness import CHUNK, App, Bench, MiB, median, rounds
from bench.relay import CountingRelay
from bench.report import Row
from runtime.mirror import MirrorStore

SIZES = {"bench/1g.zip": 1024 * MiB, "bench/256m.zip": 256 * MiB, "bench/32m.zip": 32 * MiB}
BIG, MEDIUM, SMALL = SIZES
SINGLE, SINGLE_SIZE = "bench/single-64m.zip", 64 * MiB  # one PUT, as the app writes it: CRC32
LEGACY = "bench/md5-only-64m.zip"  # one PUT by another writer: no checksum, the ETag is the MD5
THROUGHPUT_ROUNDS = 7
RSS_ROUNDS = 3
READERS = 50
READER_ROUNDS = 5
# One S3 GET stream: S3's performance guide plans one connection per 85-90 MB/s wanted.
NETWORK_PACE = 90e6
NETWORK_ROUNDS = 5
ROOT = Path(__file__).resolve().parents[1]


class Pattern(io.RawIOBase):
    """`size` bytes repeating one random MiB: incompressible, nothing held in memory."""

    def __init__(self, size: int) -> None:
        self._block = os.urandom(CHUNK)
        self._remaining = size
        self._offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self._remaining, CHUNK - self._offset)
        buffer[:n] = self._block[self._offset : self._offset + n]
        self._offset = (self._offset + n) % CHUNK
        self._remaining -= n
        return n


def upload(app: App) -> float:
    """The big dists as multipart uploads (the storage's write of a stream), one as one PUT,
    all as the app writes dists (with a CRC32); and one single-part object the way another
    writer may have stored it, with no checksum (its ETag the MD5: the legacy case)."""
    start = time.perf_counter()
    for key, size in SIZES.items():
        app.mirror.put_dist(key, io.BufferedReader(Pattern(size)))
    app.mirror.put_dist(SINGLE, os.urandom(SINGLE_SIZE))
    full = f"{app.storages.mirror_dist.prefix}/{LEGACY}"
    app.adapter.client.put_object(Bucket=app.adapter.bucket, Key=full, Body=os.urandom(SINGLE_SIZE))
    for key, multipart, checksum in [
        (MEDIUM, True, True),
        (SINGLE, False, True),
        (LEGACY, False, False),
    ]:
        fetched = app.storages.mirror_dist.get(key)
        assert fetched.info is not None and fetched.stream is not None
        fetched.stream.close()
        assert ("-" in fetched.info.etag) is multipart, key
        assert fetched.info.checksum_validated is checksum, key
    return time.perf_counter() - start


def delete(app: App) -> None:
    for key in [*SIZES, SINGLE, LEGACY]:
        app.storages.mirror_dist.delete(key)


def read_all(mirror: MirrorStore, key: str) -> int:
    total = 0
    with mirror.open_dist(key) as stream:
        while chunk := stream.read(CHUNK):
            total += len(chunk)
    return total


def throughput(bench: Bench, app: App) -> tuple[list[Row], dict[str, Any]]:
    full_key = f"{app.storages.mirror_dist.prefix}/{MEDIUM}"
    store = obstore_store(app.adapter, bench.target.endpoint, app.settings.aws_args.region or "")
    cpu: dict[str, list[float]] = {}
    warm: list[float] = []
    checks: dict[str, set[str]] = {}  # how each fill checked its bytes (verify.Method)

    def rate(name: str, size: int, read: Callable[[], int]) -> float:
        """MiB/s of one read; the process's CPU time (every thread) goes to `cpu`."""
        before = cpu_seconds()
        speed = mib_s(size, read)
        used = cpu_seconds() - before
        cpu.setdefault(name, []).append(used * 1000 * (256 * MiB / size))  # ms per 256 MiB
        return speed

    def stateless(key: str, size: int, name: str) -> Callable[[], float]:
        return lambda: rate(name, size, lambda: read_all(app.mirror, key))

    def copy_floor() -> float:
        """What any fill costs at least: one GET, its bytes written to a preallocated file
        and read back, nothing else (no lock, header, budget or check beyond botocore's)."""
        with bench.cache_dir() as directory:
            return rate("single-part copy floor", SINGLE_SIZE, lambda: copy(app, directory))

    def cached(key: str, size: int, name: str) -> Callable[[], float]:
        def run() -> float:
            with bench.cache_dir() as directory:
                mirror = app.with_caches(dists=directory)
                cold = rate(name, size, lambda: read_all(mirror, key))
                checks.setdefault(name, set()).update(
                    counter.removeprefix("fill_checks_")
                    for counter, count in mirror.stats.snapshot().items()
                    if counter.startswith("fill_checks_") and count
                )
                if key == MEDIUM:
                    warm.append(rate("ours cache warm", size, lambda: read_all(mirror, key)))
                return cold

        return run

    medium = SIZES[MEDIUM]
    samples = rounds(
        {
            "ours stateless": stateless(MEDIUM, medium, "ours stateless"),
            "ours cache cold": cached(MEDIUM, medium, "ours cache cold"),
            "boto3 download_fileobj": lambda: rate(
                "boto3 download_fileobj", medium, lambda: boto3_download(app.adapter, full_key)
            ),
            "obstore sync stream": lambda: rate(
                "obstore sync stream", medium, lambda: obstore_read(store, full_key)
            ),
            "boto3 get_object iter_chunks": lambda: rate(
                "boto3 get_object iter_chunks",
                medium,
                lambda: boto3_iter_chunks(app.adapter, full_key),
            ),
            "single-part stateless": stateless(SINGLE, SINGLE_SIZE, "single-part stateless"),
            "single-part cache cold": cached(SINGLE, SINGLE_SIZE, "single-part cache cold"),
            "single-part copy floor": copy_floor,
            "md5-only stateless": stateless(LEGACY, SINGLE_SIZE, "md5-only stateless"),
            "md5-only cache cold": cached(LEGACY, SINGLE_SIZE, "md5-only cache cold"),
        },
        THROUGHPUT_ROUNDS,
    )
    samples["ours cache warm"] = warm
    mid = {name: median(values) for name, values in samples.items()}
    cpu_mid = {name: median(values) for name, values in cpu.items()}
    best_name = max(("boto3 download_fileobj", "obstore sync stream"), key=lambda n: mid[n])
    best = mid[best_name]

    def fill_row(measure: str, filling: str, stateless: str, target: str) -> Row:
        met = mid[filling] >= 0.9 * mid[stateless] if target else None
        note = (
            f"checked by: {'/'.join(sorted(checks[filling]))}; CPU per 256 MiB "
            f"{cpu_mid[filling]:.0f} vs {cpu_mid[stateless]:.0f} ms"
        )
        return Row(3, measure, "MiB/s", mid[filling], mid[stateless], target, met, note)

    rows = [
        Row(3, f"256 MiB cold read, stateless vs faster of boto3/obstore ({best_name})",
            "MiB/s", mid["ours stateless"], best, ">= 0.9x", mid["ours stateless"] >= 0.9 * best),
        Row(3, f"256 MiB cold read, cache dir (filling) vs {best_name}", "MiB/s",
            mid["ours cache cold"], best, ">= 0.9x", mid["ours cache cold"] >= 0.9 * best),
        Row(3, "256 MiB read, boto3 download_fileobj vs obstore sync stream", "MiB/s",
            mid["boto3 download_fileobj"], mid["obstore sync stream"], "", None),
        Row(3, "256 MiB read, stateless vs boto3 get_object iter_chunks", "MiB/s",
            mid["ours stateless"], mid["boto3 get_object iter_chunks"], "", None),
        Row(3, "256 MiB read, cache dir warm (local hit) vs stateless", "MiB/s",
            mid["ours cache warm"], mid["ours stateless"], "", None),
        Row(3, "client CPU per 256 MiB, cache dir (filling) vs stateless", "ms",
            cpu_mid["ours cache cold"], cpu_mid["ours stateless"], "", None,
            f"obstore {cpu_mid['obstore sync stream']:.0f}, "
            f"download_fileobj {cpu_mid['boto3 download_fileobj']:.0f}"),
        fill_row("256 MiB multipart dist (CRC32), cache dir (filling) vs stateless",
                 "ours cache cold", "ours stateless", ">= 0.9x"),
        fill_row("64 MiB single-part dist (CRC32), cache dir (filling) vs stateless",
                 "single-part cache cold", "single-part stateless", ">= 0.9x"),
        fill_row("64 MiB single-part, MD5 ETag only (legacy), cache dir (filling) vs stateless",
                 "md5-only cache cold", "md5-only stateless", ""),
        Row(3, "64 MiB single-part, copy floor (GET, write, read back; nothing else) vs stateless",
            "MiB/s", mid["single-part copy floor"], mid["single-part stateless"], "", None,
            f"the fill at {mid['single-part cache cold'] / mid['single-part copy floor']:.2f}x "
            f"of it; CPU per 256 MiB {cpu_mid['single-part copy floor']:.0f} ms"),
    ]  # fmt: skip
    raw = {"throughput_mib_s": samples, "throughput_cpu_ms_per_256mib": cpu}
    return rows, {**raw, "fill_checks": {name: sorted(used) for name, used in checks.items()}}


def copy(app: App, directory: Path) -> int:
    fetched = app.storages.mirror_dist.get(SINGLE)
    assert fetched.stream is not None
    path = directory / "copy"
    with fetched.stream as source, path.open("wb") as out:
        os.posix_fallocate(out.fileno(), 0, SINGLE_SIZE)  # as a fill allocates its entry
        raw = source.raw if isinstance(source, io.BufferedReader) else source
        while chunk := raw.read(CHUNK):
            out.write(chunk)
    with path.open("rb") as back:
        return sum(len(chunk) for chunk in iter(lambda: back.read(CHUNK), b""))


def across_a_network(bench: Bench) -> tuple[list[Row], dict[str, Any]]:
    """Fills against stateless reads with the bucket's answers paced to one S3 GET stream's
    speed: the copy into the page cache then overlaps the network instead of competing with
    the bucket server for this machine's cores."""
    assert bench.target.seaweed is not None
    relay = CountingRelay(upstream_port=bench.target.seaweed.ports["s3"], pace=NETWORK_PACE)
    relay.start()
    try:
        args = json.loads(bench.env["STORAGE_AWS_ARGS"])
        app = bench.app(STORAGE_AWS_ARGS=json.dumps({**args, "endpoint": relay.url}))

        def stateless(key: str, size: int) -> Callable[[], float]:
            return lambda: mib_s(size, lambda: read_all(app.mirror, key))

        def cached(key: str, size: int) -> Callable[[], float]:
            def run() -> float:
                with bench.cache_dir() as directory:
                    mirror = app.with_caches(dists=directory)
                    return mib_s(size, lambda: read_all(mirror, key))

            return run

        samples = rounds(
            {
                "multipart stateless": stateless(MEDIUM, SIZES[MEDIUM]),
                "multipart cache cold": cached(MEDIUM, SIZES[MEDIUM]),
                "single-part stateless": stateless(SINGLE, SINGLE_SIZE),
                "single-part cache cold": cached(SINGLE, SINGLE_SIZE),
            },
            NETWORK_ROUNDS,
        )
    finally:
        relay.stop()
    mid = {name: median(values) for name, values in samples.items()}
    pace = f"bucket answers paced to {NETWORK_PACE / 1e6:.0f} MB/s per connection"
    rows = [
        Row(3, f"{label}, across a network: cache dir (filling) vs stateless", "MiB/s",
            mid[f"{kind} cache cold"], mid[f"{kind} stateless"], ">= 0.9x",
            mid[f"{kind} cache cold"] >= 0.9 * mid[f"{kind} stateless"],
            f"{pace}, median of {NETWORK_ROUNDS}")
        for kind, label in (("multipart", "256 MiB multipart"), ("single-part", "64 MiB single"))
    ]  # fmt: skip
    return rows, {"across_a_network_mib_s": samples}


def mib_s(size: int, read: Callable[[], int]) -> float:
    """MiB/s of one read of `size` bytes."""
    start = time.perf_counter()
    assert read() == size
    return size / MiB / (time.perf_counter() - start)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss(bench: Bench) -> tuple[list[Row], dict[str, Any]]:
    env = {**os.environ, **bench.env, "MIRROR_METADATA_CACHE_DIR": "", "MIRROR_DIST_CACHE_DIR": ""}

    def measure(variant: str) -> Callable[[], dict[str, float]]:
        def run() -> dict[str, float]:
            done = subprocess.run(
                [sys.executable, "-m", "bench.rss", variant, BIG],
                env=env, cwd=ROOT, capture_output=True, text=True, check=True, timeout=300,
            )  # fmt: skip
            result: dict[str, float] = json.loads(done.stdout)
            return result

        return run

    runs: dict[str, list[dict[str, float]]] = {"ours": [], "boto3-download": []}
    for i in range(RSS_ROUNDS):
        for variant in list(runs)[i % 2 :] + list(runs)[: i % 2]:
            runs[variant].append(measure(variant)())

    def growth(variant: str) -> float:
        return median([max(r["growth_mib"], r["maxrss_growth_mib"]) for r in runs[variant]])

    ours, boto = growth("ours"), growth("boto3-download")
    rate = median([r["mib_s"] for r in runs["ours"]])
    rows = [
        Row(4, "1 GiB stateless stream: peak RSS growth vs boto3 download_fileobj", "MiB",
            ours, boto, "<= 64 MiB", ours <= 64, f"fresh process, {rate:.0f} MiB/s"),
    ]  # fmt: skip
    return rows, {"rss": runs}


def concurrent_readers(bench: Bench, app: App) -> tuple[list[Row], dict[str, Any]]:
    size = SIZES[SMALL]
    gets: dict[str, list[int]] = {}
    own: dict[str, list[dict[str, int]]] = {}

    def wall(count: int, cached: bool) -> Callable[[], float]:
        name = f"{count} {'cache dir' if cached else 'stateless'}"

        def run() -> float:
            with bench.cache_dir() as directory:
                mirror = app.with_caches(dists=directory) if cached else app.mirror
                requests, before = app.counter(), mirror.stats.snapshot()
                elapsed, sizes = together(mirror, SMALL, count)
                assert sizes == [size] * count, sizes
                gets.setdefault(name, []).append(requests()["get"])
                after = mirror.stats.snapshot()
                counts = ("bucket_requests", "dist_misses", "dist_hits")
                own.setdefault(name, []).append({k: after[k] - before[k] for k in counts})
                return elapsed

        return run

    samples = rounds(
        {
            "1 cache dir": wall(1, True),
            f"{READERS} cache dir": wall(READERS, True),
            f"{READERS} stateless": wall(READERS, False),
        },
        READER_ROUNDS,
    )
    many, one = median(samples[f"{READERS} cache dir"]), median(samples["1 cache dir"])
    stateless = median(samples[f"{READERS} stateless"])
    many_gets = max(gets[f"{READERS} cache dir"])
    many_own = own[f"{READERS} cache dir"][-1]
    rows = [
        Row(5, f"{READERS} concurrent cold readers of 32 MiB, cache dir: bucket GETs", "GETs",
            many_gets, None, "1", many_gets == 1,
            f"per round {gets[f'{READERS} cache dir']}; own counter: {many_own['bucket_requests']}"
            f" request, {many_own['dist_misses']} miss, {many_own['dist_hits']} hits"),
        Row(5, f"{READERS} concurrent cold readers, cache dir: wall time vs 1 reader", "ms",
            many * 1000, one * 1000, "", None),
        Row(5, f"{READERS} concurrent readers, stateless: wall vs cache dir", "ms",
            stateless * 1000, many * 1000, "", None,
            f"GETs {max(gets[f'{READERS} stateless'])}"),
    ]  # fmt: skip
    return rows, {"readers_s": samples, "readers_gets": gets, "readers_own_counters": own}


def together(mirror: MirrorStore, key: str, count: int) -> tuple[float, list[int]]:
    """`count` threads read the whole dist at once; (wall seconds, bytes each read)."""
    start = threading.Barrier(count + 1)
    sizes = [0] * count
    errors: list[BaseException] = []

    def reader(i: int) -> None:
        start.wait()
        try:
            sizes[i] = read_all(mirror, key)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise errors[0]
    return elapsed, sizes
