"""Figure 4, in a fresh process: `python -m bench.rss ours|boto3-download KEY` streams one dist
with the pod's env (stateless) and prints its peak RSS growth as JSON."""

from __future__ import annotations

import json
import resource
import sys
import threading
import time

import psutil

import runtime
from bench.baselines import boto3_download
from bench.harness import CHUNK, MiB
from runtime.mirror import open_mirror
from runtime.storage.s3 import S3Adapter

SAMPLE_EVERY = 0.002


def main(variant: str, key: str) -> None:
    settings = runtime.load_settings()
    storages = runtime.open_storages(settings)
    mirror = open_mirror(settings, storages)
    adapter = storages.mirror_dist.adapter
    assert isinstance(adapter, S3Adapter)
    mirror.get_metadata("p2/bench/package-0.json")  # credentials, connection, parsers: warm

    process = psutil.Process()
    start_rss, start_max = process.memory_info().rss, _maxrss()
    peak, done = [start_rss], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(SAMPLE_EVERY)

    sampler = threading.Thread(target=sample)
    sampler.start()
    began = time.perf_counter()
    received = 0
    if variant == "ours":
        with mirror.open_dist(key) as stream:
            while chunk := stream.read(CHUNK):
                received += len(chunk)
    else:
        received = boto3_download(adapter, f"{storages.mirror_dist.prefix}/{key}")
    elapsed = time.perf_counter() - began
    done.set()
    sampler.join()
    peak[0] = max(peak[0], process.memory_info().rss)
    print(
        json.dumps(
            {
                "bytes": received,
                "mib_s": received / MiB / elapsed,
                "start_rss_mib": start_rss / MiB,
                "growth_mib": (peak[0] - start_rss) / MiB,
                "maxrss_growth_mib": (_maxrss() - start_max) / MiB,
            }
        )
    )


def _maxrss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
