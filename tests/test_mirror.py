"""The mirror store on the local IRSA target: bucket requests per read, counted on the wire."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import runtime
from runtime import NotFound
from tests.mirror_helpers import mirror_env, open_counted


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def run_id() -> str:
    return secrets.token_hex(4)


@pytest.fixture
def cached_env(pod_env: dict[str, str], tmp_path: Path, run_id: str) -> dict[str, str]:
    return mirror_env(pod_env, run_id, tmp_path / "cache")


@pytest.fixture
def stateless_env(pod_env: dict[str, str], run_id: str) -> dict[str, str]:
    return mirror_env(pod_env, run_id, None)


def _meta_path(run_id: str) -> str:
    return f"p2/{run_id}/package.json"


def test_metadata_cold_is_one_get_warm_is_none(
    cached_env: dict[str, str], tmp_path: Path, run_id: str
) -> None:
    writer, _ = open_counted(cached_env)
    writer.put_metadata(_meta_path(run_id), b'{"packages": {}}')
    other_replica = mirror_env(cached_env, run_id, tmp_path / "other-replica")
    reader, requests = open_counted(other_replica, clock=Clock())
    entry = reader.get_metadata(_meta_path(run_id))
    assert entry is not None and entry.body == b'{"packages": {}}'
    assert requests.take() == {"GetObject": 1}
    for _ in range(5):
        assert reader.get_metadata(_meta_path(run_id)) == entry
    assert requests.take() == {}


def test_after_the_ttl_one_conditional_get_revalidates_and_a_304_keeps_the_body(
    cached_env: dict[str, str], run_id: str
) -> None:
    clock = Clock()
    mirror, requests = open_counted(cached_env, clock=clock)
    put = mirror.put_metadata(_meta_path(run_id), b"[1]")
    assert requests.take() == {"PutObject": 1}
    assert mirror.get_metadata(_meta_path(run_id)) == put  # written through: no GET
    assert requests.take() == {}
    clock.now += mirror.metadata.ttl + 1
    again = mirror.get_metadata(_meta_path(run_id))
    assert again is not None and again.body == b"[1]"
    assert again.etag == put.etag
    assert requests.take() == {"GetObject": 1}
    assert mirror.stats.snapshot()["metadata_not_modified"] == 1
    assert mirror.get_metadata(_meta_path(run_id)) == again  # the TTL restarted
    assert requests.take() == {}


def test_a_changed_document_is_seen_after_the_ttl_on_every_replica(
    cached_env: dict[str, str], tmp_path: Path, run_id: str
) -> None:
    clock = Clock()
    replica_a, _ = open_counted(cached_env, clock=clock)
    replica_b, requests_b = open_counted(
        mirror_env(cached_env, run_id, tmp_path / "replica-b"), clock=clock
    )
    replica_a.put_metadata(_meta_path(run_id), b"v1")
    first = replica_b.get_metadata(_meta_path(run_id))
    second_write = replica_a.put_metadata(_meta_path(run_id), b"v2")
    assert replica_b.get_metadata(_meta_path(run_id)) == first  # within the TTL: cached
    clock.now += replica_b.metadata.ttl + 1
    seen = replica_b.get_metadata(_meta_path(run_id))
    assert seen is not None and seen.body == b"v2"
    assert seen.etag == second_write.etag
    assert abs((seen.last_modified - second_write.last_modified).total_seconds()) < 2
    requests_b.take()


def test_a_missing_document_is_none_and_costs_one_get(
    cached_env: dict[str, str], run_id: str
) -> None:
    mirror, requests = open_counted(cached_env)
    assert mirror.get_metadata(f"p2/{run_id}/absent.json") is None
    assert requests.take() == {"GetObject": 1}


def test_a_dist_cold_is_one_get_and_warm_is_none(cached_env: dict[str, str], run_id: str) -> None:
    payload = secrets.token_bytes(3 * 1024 * 1024 + 11)
    key = f"{run_id}/vendor/pkg/1.0.0-abc.zip"
    mirror, requests = open_counted(cached_env)
    mirror.put_dist(key, payload)
    requests.take()
    with mirror.open_dist(key) as stream:
        assert stream.read() == payload
    assert requests.take() == {"GetObject": 1}
    for _ in range(3):
        with mirror.open_dist(key) as stream:
            assert stream.read() == payload
    assert requests.take() == {}
    assert mirror.stats.snapshot()["dist_hits"] == 3


def test_fifty_threads_missing_one_dist_cost_one_get(
    cached_env: dict[str, str], run_id: str
) -> None:
    payload = secrets.token_bytes(8 * 1024 * 1024)
    key = f"{run_id}/vendor/pkg/2.0.0-def.zip"
    mirror, requests = open_counted(cached_env)
    mirror.put_dist(key, payload)
    requests.take()
    barrier = threading.Barrier(50)
    results: list[bool] = []

    def read() -> None:
        barrier.wait()
        with mirror.open_dist(key) as stream:
            results.append(stream.read() == payload)

    threads = [threading.Thread(target=read) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [True] * 50
    assert requests.take() == {"GetObject": 1}


def test_fifty_threads_missing_one_metadata_document_cost_one_get(
    cached_env: dict[str, str], run_id: str
) -> None:
    runtime.open_storages(runtime.load_settings(cached_env)).mirror_meta.write(
        _meta_path(run_id), b"{}"
    )
    mirror, requests = open_counted(cached_env)
    barrier = threading.Barrier(50)

    def read() -> None:
        barrier.wait()
        assert mirror.get_metadata(_meta_path(run_id)) is not None

    threads = [threading.Thread(target=read) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert requests.take() == {"GetObject": 1}


def test_a_missing_dist_is_not_found_and_leaves_no_entry(
    cached_env: dict[str, str], run_id: str
) -> None:
    mirror, _ = open_counted(cached_env)
    with pytest.raises(NotFound):
        mirror.open_dist(f"{run_id}/absent.zip")
    assert mirror.dists.disk_usage() == (0, 0)


def test_a_truncated_dist_entry_is_dropped_and_refetched(
    cached_env: dict[str, str], run_id: str
) -> None:
    payload = secrets.token_bytes(512 * 1024)
    key = f"{run_id}/vendor/pkg/3.0.0-ghi.zip"
    mirror, requests = open_counted(cached_env)
    mirror.put_dist(key, payload)
    with mirror.open_dist(key) as stream:
        stream.read()
    entry = mirror.dists.entry_path(key)
    os.truncate(entry, mirror.dists.entry_size(key, 1000))  # behind our back
    requests.take()
    with mirror.open_dist(key) as stream:
        assert stream.read() == payload
    assert requests.take() == {"GetObject": 1}
    assert entry.stat().st_size == mirror.dists.entry_size(key, len(payload))


def test_a_corrupt_metadata_entry_is_dropped_and_refetched(
    cached_env: dict[str, str], run_id: str
) -> None:
    mirror, _requests = open_counted(cached_env, clock=Clock())
    mirror.put_metadata(_meta_path(run_id), b'{"big": "document"}')
    fresh, fresh_requests = open_counted(cached_env, clock=Clock())  # no in-process copy
    cache_file = fresh.metadata._file(_meta_path(run_id))
    cache_file.write_bytes(cache_file.read_bytes()[:-5])
    entry = fresh.get_metadata(_meta_path(run_id))
    assert entry is not None and entry.body == b'{"big": "document"}'
    assert fresh_requests.take() == {"GetObject": 1}


def test_the_dist_cache_evicts_the_least_recently_used_beyond_its_bound(
    cached_env: dict[str, str], run_id: str
) -> None:
    keys = [f"{run_id}/d{i}.zip" for i in range(4)]
    bound = 3 * open_counted(cached_env)[0].dists.entry_size(keys[0], 100_000)
    env = {**cached_env, "SATCHEL_MIRROR_DIST_CACHE_SIZE": str(bound)}
    mirror, _requests = open_counted(env)
    for key in keys:
        mirror.put_dist(key, secrets.token_bytes(100_000))
    for key in keys[:3]:
        mirror.open_dist(key).read()
    os.utime(mirror.dists.entry_path(keys[0]))  # d0 used again: d1 is now the oldest
    for entry in (keys[1], keys[2]):
        past = os.stat(mirror.dists.entry_path(entry)).st_mtime - 60
        os.utime(mirror.dists.entry_path(entry), (past, past))
    mirror.open_dist(keys[3]).read()  # a fourth entry would overflow the bound
    # Evicted in one batch down to the low-water mark (90%): the two oldest, d1 and d2.
    assert mirror.dists.disk_usage() == (2, 2 * bound // 3)
    assert not mirror.dists.entry_path(keys[1]).exists()
    assert not mirror.dists.entry_path(keys[2]).exists()
    assert mirror.dists.entry_path(keys[0]).exists()
    assert mirror.dists.entry_path(keys[3]).exists()


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """TMPDIR for this test alone, to show nothing was written there."""
    import tempfile

    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    yield tmp


def test_stateless_mode_never_writes_local_files(
    stateless_env: dict[str, str],
    run_id: str,
    private_tmp: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    mirror, requests = open_counted(stateless_env)
    key = f"{run_id}/vendor/pkg/1.0.0.zip"
    payload = secrets.token_bytes(2 * 1024 * 1024)
    mirror.put_metadata(_meta_path(run_id), b"{}")
    mirror.put_dist(key, payload)
    requests.take()
    for _ in range(2):
        assert mirror.get_metadata(_meta_path(run_id)) is not None
        with mirror.open_dist(key) as stream:
            assert stream.read() == payload
    assert requests.take() == {"GetObject": 4}  # stateless: every read is one GET
    assert list(private_tmp.iterdir()) == []
    assert list(workdir.iterdir()) == []


def test_the_counters_match_the_requests_on_the_wire(
    cached_env: dict[str, str], run_id: str
) -> None:
    mirror, requests = open_counted(cached_env)
    mirror.put_metadata(_meta_path(run_id), b"{}")
    mirror.get_metadata(_meta_path(run_id))
    mirror.get_metadata(f"p2/{run_id}/absent.json")
    wire = requests.take()
    stats = mirror.stats.snapshot()
    assert stats["bucket_requests"] == wire["GetObject"] == 1
    assert stats["metadata_hits"] == 1 and stats["metadata_misses"] == 1


def _read_in_process(env: dict[str, str], key: str, start_at: float, out: Any) -> None:
    """One worker process: wait for the common start, read the dist, report GETs sent."""
    mirror, requests = open_counted(env)
    time.sleep(max(0.0, start_at - time.time()))
    with mirror.open_dist(key) as stream:
        digest = hashlib.sha256(stream.read()).hexdigest()
    out.put((requests.take()["GetObject"], digest))


def test_four_processes_missing_one_dist_with_a_shared_cache_cost_one_get(
    cached_env: dict[str, str], run_id: str
) -> None:
    payload = secrets.token_bytes(16 * 1024 * 1024)
    key = f"{run_id}/vendor/pkg/4.0.0-jkl.zip"
    open_counted(cached_env)[0].put_dist(key, payload)
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    start_at = time.time() + 3  # after the four have imported boto3 and built clients
    workers = [
        context.Process(target=_read_in_process, args=(cached_env, key, start_at, out))
        for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    results = [out.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(30)
    assert sum(gets for gets, _ in results) == 1
    assert {digest for _, digest in results} == {hashlib.sha256(payload).hexdigest()}


def test_a_local_storage_dist_is_cached_too(tmp_path: Path) -> None:
    env = {
        "STORAGE_SOURCE": "local",
        "SATCHEL_LOCAL_ROOT": str(tmp_path / "storage"),
        "MIRROR_DIST_CACHE_DIR": str(tmp_path / "dist-cache"),
    }
    mirror, _ = open_counted(env)
    mirror.put_dist("vendor/pkg/1.0.zip", b"local zip")
    assert mirror.open_dist("vendor/pkg/1.0.zip").read() == b"local zip"
    assert mirror.open_dist("vendor/pkg/1.0.zip").read() == b"local zip"
    assert mirror.stats.snapshot()["dist_hits"] == 1
    assert mirror.dists.disk_usage()[0] == 1
