"""`satchel cache stats|prune` and the archive cache, on the IRSA target."""

from __future__ import annotations

import io
import json
import secrets
import zipfile
from pathlib import Path

import runtime
from runtime.archives import ArchiveCache
from tests.cli_helpers import satchel
from tests.mirror_helpers import mirror_env, open_counted


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_stats_and_prune_report_and_empty_the_caches(
    pod_env: dict[str, str], tmp_path: Path
) -> None:
    env = mirror_env(pod_env, "cli", tmp_path / "cache")
    mirror, _ = open_counted(env)
    for i in range(3):
        mirror.put_dist(f"cli/{i}.zip", secrets.token_bytes(10_000))
        mirror.open_dist(f"cli/{i}.zip").read()
    mirror.put_metadata("p2/cli/pkg.json", b"{}")

    stats = json.loads(satchel(env, "cache", "stats", "--json").stdout)
    by_name = {row["cache"]: row for row in stats}
    assert by_name["mirror-dist"]["entries"] == 3
    assert by_name["mirror-dist"]["bytes"] == 3 * mirror.dists.entry_size("cli/0.zip", 10_000)
    assert by_name["mirror-dist"]["temp_files"] == 0
    assert 1 <= by_name["mirror-dist"]["lock_files"] <= 257
    assert by_name["mirror-meta"]["entries"] == 1
    assert by_name["archives"]["dir"] is None

    result = satchel(env, "cache", "prune")
    assert result.exit_code == 0 and "removed 0 files" in result.stdout  # within bounds
    result = satchel(env, "cache", "prune", "--all")
    assert result.exit_code == 0 and "removed 4 files" in result.stdout
    assert mirror.dists.disk_usage() == (0, 0)
    assert mirror.metadata.disk_usage() == (0, 0)
    assert mirror.open_dist("cli/0.zip").read()  # the bucket still has everything


def test_reading_many_members_of_an_archive_costs_one_get(
    pod_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**pod_env, "SATCHEL_ARCHIVE_CACHE_DIR": str(tmp_path / "archives")}
    settings = runtime.load_settings(env)
    storages = runtime.open_storages(settings)
    members = {f"src/file{i}.php": f"<?php // {i}".encode() for i in range(20)}
    key = f"archives/{secrets.token_hex(4)}.zip"
    storages.artifacts.write(key, _zip(members))
    archives = ArchiveCache(storages.artifacts, settings)
    gets: list[str] = []
    client = storages.artifacts.adapter.client  # type: ignore[attr-defined]
    client.meta.events.register("before-send.s3.GetObject", lambda **_: gets.append("GET"))
    for name, data in members.items():
        assert archives.read_member(key, name) == data
    with archives.open_zip(key) as archive:
        assert sorted(archive.namelist()) == sorted(members)
    assert gets == ["GET"]


def test_without_an_archive_cache_dir_each_open_is_one_get_into_memory(
    pod_env: dict[str, str],
) -> None:
    settings = runtime.load_settings(pod_env)
    storages = runtime.open_storages(settings)
    key = f"archives/{secrets.token_hex(4)}.zip"
    storages.packages.write(key, _zip({"a.txt": b"a", "b.txt": b"b"}))
    archives = ArchiveCache(storages.packages, settings)
    with archives.open_zip(key) as archive:
        assert archive.read("a.txt") + archive.read("b.txt") == b"ab"
    assert archives.stats.snapshot()["bucket_requests"] == 1
