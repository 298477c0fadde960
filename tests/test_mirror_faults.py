"""Faults: the bucket dying mid-stream, and local caches that are read-only, full or missing.
Real filesystems (tmpfs mounts) and a real server kill: root ignores permission bits."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from infra.local.target import LocalTarget
from runtime import BackendUnavailable
from runtime.mirror.budget import TEMP_PREFIX, USAGE_FILE
from runtime.storage import Fetched
from tests.conftest import running_target
from tests.mirror_helpers import mirror_env, open_counted


@pytest.fixture(scope="module")
def crash_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTarget]:
    """A target of its own: this module kills its SeaweedFS."""
    with running_target(tmp_path_factory, "crash-target") as local:
        yield local


def _files(directory: Path) -> list[str]:
    """Entries and temp files (not the lock files and the usage counter)."""
    return sorted(
        p.name
        for p in directory.rglob("*")
        if p.is_file() and p.suffix != ".lock" and p.name != USAGE_FILE
    )


def test_a_bucket_dying_mid_stream_fails_a_stateless_read(
    crash_target: LocalTarget, tmp_path: Path
) -> None:
    mirror, _ = open_counted(mirror_env(crash_target.pod_env(), "crash", None))
    payload = secrets.token_bytes(96 * 1024 * 1024)
    mirror.put_dist("crash/stateless.zip", payload)
    stream = mirror.open_dist("crash/stateless.zip")
    assert stream.read(1024 * 1024) == payload[: 1024 * 1024]
    crash_target.stop_storage(crash=True)
    try:
        with pytest.raises(BackendUnavailable, match="connection broke"), stream:
            while stream.read(1024 * 1024):
                pass
    finally:
        crash_target.start_storage()


def test_a_bucket_dying_mid_fill_fails_the_read_and_leaves_no_entry(
    crash_target: LocalTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = mirror_env(crash_target.pod_env(), "crash", tmp_path / "cache")
    mirror, requests = open_counted(env)
    payload = secrets.token_bytes(96 * 1024 * 1024)
    mirror.put_dist("crash/big.zip", payload)
    requests.take()
    storage, real_get = mirror.dists.storage, mirror.dists.storage.get

    def get_then_crash(key: str, if_none_match: str | None = None) -> Fetched:
        fetched = real_get(key, if_none_match)
        assert fetched.stream is not None
        fetched.stream.read(1)  # the first MiB is in, then the server dies mid-fill
        crash_target.stop_storage(crash=True)
        return fetched

    monkeypatch.setattr(storage, "get", get_then_crash)
    try:
        with pytest.raises(BackendUnavailable, match="connection broke"):
            mirror.open_dist("crash/big.zip")
        assert _files(tmp_path / "cache" / "dist") == []  # no entry, no temp file
        assert mirror.dists.disk_usage() == (0, 0)
        assert mirror.dists.budget is not None
        counter = (mirror.dists.budget.directory / USAGE_FILE).read_bytes()
        assert int.from_bytes(counter[:8], "big") == 0  # its reservation given back
    finally:
        crash_target.start_storage()
    monkeypatch.setattr(storage, "get", real_get)
    with mirror.open_dist("crash/big.zip") as again:
        assert again.read() == payload
    assert mirror.dists.disk_usage() == (1, mirror.dists.entry_size("crash/big.zip", len(payload)))


def test_a_read_only_cache_still_serves_every_read_from_the_bucket(
    pod_env: dict[str, str], mount_tmpfs: Callable[..., Path], caplog: pytest.LogCaptureFixture
) -> None:
    cache = mount_tmpfs("ro-cache", read_only=True)
    env = mirror_env(pod_env, "ro", None)
    env.update(MIRROR_METADATA_CACHE_DIR=str(cache / "meta"), MIRROR_DIST_CACHE_DIR=str(cache))
    mirror, requests = open_counted(env)
    payload = secrets.token_bytes(300_000)
    mirror.put_dist("ro/pkg.zip", payload)
    mirror.put_metadata("p2/ro/pkg.json", b'{"ro": true}')
    requests.take()
    with caplog.at_level(logging.WARNING, logger="satchel.cache"):
        for _ in range(2):
            with mirror.open_dist("ro/pkg.zip") as stream:
                assert stream.read() == payload
            entry = mirror.get_metadata("p2/ro/pkg.json")
            assert entry is not None and entry.body == b'{"ro": true}'
    assert requests.take()["GetObject"] >= 2  # the dists came from the bucket each time
    assert "reading from the bucket" in caplog.text
    assert mirror.stats.snapshot()["cache_errors"] > 0


def test_a_full_cache_serves_the_whole_dist_and_keeps_no_partial_entry(
    pod_env: dict[str, str], mount_tmpfs: Callable[..., Path]
) -> None:
    cache = mount_tmpfs("small-cache", size="1m")
    env = mirror_env(pod_env, "full", None)
    env["MIRROR_DIST_CACHE_DIR"] = str(cache)
    mirror, _ = open_counted(env)
    payload = secrets.token_bytes(3 * 1024 * 1024)
    mirror.put_dist("full/big.zip", payload)
    with mirror.open_dist("full/big.zip") as stream:
        assert stream.read() == payload
    assert not [n for n in _files(cache) if not n.startswith(TEMP_PREFIX)]
    assert not [n for n in _files(cache) if n.startswith(TEMP_PREFIX)]
    assert mirror.stats.snapshot()["cache_errors"] >= 1


def test_a_missing_cache_dir_is_created_on_first_use(
    pod_env: dict[str, str], tmp_path: Path
) -> None:
    env = mirror_env(pod_env, "missing", tmp_path / "not" / "there" / "yet")
    mirror, requests = open_counted(env)
    mirror.put_dist("missing/a.zip", b"zip")
    requests.take()
    assert mirror.open_dist("missing/a.zip").read() == b"zip"
    assert mirror.open_dist("missing/a.zip").read() == b"zip"
    assert requests.take() == {"GetObject": 1}
    assert mirror.dists.disk_usage()[0] == 1
