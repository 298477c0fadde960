"""FileCache's fill verification, with a backend that lies about its ETag (failures injected
at the client boundary, as flysystem's suites do)."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import secrets
import zipfile
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import google_crc32c
import pytest

from infra.local.seaweedfs import SeaweedFS
from runtime import BackendUnavailable, load_settings, open_storages
from runtime.archives import ArchiveCache
from runtime.mirror import MirrorStore, open_mirror
from runtime.mirror.budget import TEMP_PREFIX
from runtime.mirror.filecache import FileCache, Fill
from runtime.mirror.stats import MirrorStats
from runtime.mirror.verify import BodyCheck, Method
from runtime.storage import Fetched, ObjectInfo, Storage
from runtime.storage.s3 import MULTIPART_THRESHOLD, S3Adapter
from tests.mirror_helpers import RequestCounter

BODY = b"dist bytes" * 1000


class _Backend:
    """Serves BODY under whatever ETag it is given; counts GETs."""

    location = "test://backend"

    def __init__(
        self, etag: str, *, encryption: str | None = None, checksum: str | None = None
    ) -> None:
        self.etag = etag
        self.encryption = encryption
        self.checksum = checksum
        self.validated = False
        self.gets = 0

    def get(self, key: str, if_none_match: str | None = None) -> Fetched:
        self.gets += 1
        info = ObjectInfo(
            key,
            len(BODY),
            self.etag,
            datetime.now(UTC),
            self.checksum,
            self.encryption,
            self.validated,
        )
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


@pytest.mark.parametrize("encryption", ["aws:kms", "aws:kms:dsse", "SSE-C"])
def test_a_kms_etag_is_never_taken_for_an_md5(tmp_path: Path, encryption: str) -> None:
    # SSE-KMS, DSSE-KMS and SSE-C ETags are 32 hex digits but no digest of the body.
    backend = _Backend(secrets.token_hex(16), encryption=encryption)
    cache = _cache(backend, tmp_path)
    for _ in range(3):
        assert cache.open("a.zip").read() == BODY
    assert backend.gets == 1  # filled on the first read, hits after
    assert cache.stats.snapshot()["dist_hits"] == 2


def test_an_sse_s3_etag_is_still_checked_as_an_md5(tmp_path: Path) -> None:
    backend = _Backend("0" * 32, encryption="AES256")
    cache = _cache(backend, tmp_path)
    cache.open("a.zip").read()
    assert cache.disk_usage() == (0, 0)


@pytest.mark.parametrize(
    ("algorithm", "digest"),
    [
        ("CRC32", zlib.crc32(BODY).to_bytes(4, "big")),
        ("CRC32C", google_crc32c.value(BODY).to_bytes(4, "big")),
        ("SHA1", hashlib.sha1(BODY).digest()),
        ("SHA256", hashlib.sha256(BODY).digest()),
    ],
)
def test_the_objects_own_checksum_is_checked_before_its_etag(
    tmp_path: Path, algorithm: str, digest: bytes
) -> None:
    right = f"{algorithm}:{base64.b64encode(digest).decode()}"
    kms = secrets.token_hex(16)
    kept = _cache(_Backend(kms, encryption="aws:kms", checksum=right), tmp_path / "right")
    kept.open("a.zip").read()
    assert kept.disk_usage()[0] == 1
    wrong = f"{algorithm}:{base64.b64encode(bytes(len(digest))).decode()}"
    backend = _Backend(hashlib.md5(BODY).hexdigest(), checksum=wrong)  # a right MD5 as ETag
    refused = _cache(backend, tmp_path / "wrong")
    assert refused.open("a.zip").read() == BODY  # served, from the bucket
    assert refused.disk_usage() == (0, 0)


def test_a_checksummed_object_from_a_real_s3_server_is_verified_and_kept(
    seaweed: SeaweedFS, s3_env: dict[str, str], tmp_path: Path
) -> None:
    storages = open_storages(load_settings(s3_env))
    key = f"checksummed/{secrets.token_hex(4)}.zip"
    full = f"{storages.mirror_dist.prefix}/{key}"
    seaweed.admin_client().put_object(
        Bucket=seaweed.bucket, Key=full, Body=BODY, ChecksumAlgorithm="CRC32"
    )
    fetched = storages.mirror_dist.get(key)
    assert fetched.info is not None and fetched.stream is not None
    fetched.stream.close()
    assert (
        fetched.info.checksum
        == f"CRC32:{base64.b64encode(zlib.crc32(BODY).to_bytes(4, 'big')).decode()}"
    )
    cache = FileCache(storages.mirror_dist, tmp_path / "cache", 1 << 30, MirrorStats())
    assert cache.open(key).read() == BODY
    assert cache.open(key).read() == BODY
    assert cache.stats.snapshot()["bucket_requests"] == 1


def test_two_storages_sharing_a_cache_dir_and_keys_never_read_each_others_bytes(
    local_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**local_env, "SATCHEL_ARCHIVE_CACHE_DIR": str(tmp_path / "archives")}
    settings = load_settings(env)
    storages = open_storages(settings)
    storages.packages.write("acme/lib/1.0.zip", _zip({"owner": b"packages"}))
    storages.artifacts.write("acme/lib/1.0.zip", _zip({"owner": b"artifacts"}))
    packages = ArchiveCache(storages.packages, settings)
    artifacts = ArchiveCache(storages.artifacts, settings)
    for _ in range(2):  # filled, then hits
        assert packages.read_member("acme/lib/1.0.zip", "owner") == b"packages"
        assert artifacts.read_member("acme/lib/1.0.zip", "owner") == b"artifacts"
    assert packages.files.disk_usage()[0] == 2  # two entries in the one directory


def test_an_entry_of_another_storage_is_dropped_not_served(tmp_path: Path) -> None:
    cache = _cache(_Backend(hashlib.md5(BODY).hexdigest()), tmp_path)
    cache.open("a.zip").read()
    other = _cache(_Backend(hashlib.md5(BODY).hexdigest()), tmp_path)
    other.storage.prefix = "elsewhere"  # same directory and key, another identity
    other.entry_path("a.zip").parent.mkdir(parents=True, exist_ok=True)
    os.replace(cache.entry_path("a.zip"), other.entry_path("a.zip"))
    assert other.lookup("a.zip") is None  # checked on the hit: a foreign entry
    assert not other.entry_path("a.zip").exists()


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


class _Tracked(io.BytesIO):
    closed_by_cache = False

    def close(self) -> None:
        type(self).closed_by_cache = True
        super().close()


@pytest.mark.parametrize("failure", ["etag too long", "shard dir unusable"])
def test_a_fill_that_cannot_start_closes_the_bucket_stream(tmp_path: Path, failure: str) -> None:
    etag = "e" * 100 if failure == "etag too long" else hashlib.md5(BODY).hexdigest()
    backend = _Backend(etag)
    backend.get = lambda key, if_none_match=None: Fetched(  # type: ignore[method-assign]
        ObjectInfo(key, len(BODY), etag, datetime.now(UTC)), _Tracked(BODY)
    )
    cache = _cache(backend, tmp_path)
    if failure == "shard dir unusable":
        shard = cache.entry_path("a.zip").parent
        shard.parent.mkdir(parents=True)
        shard.write_bytes(b"")  # a file where the shard directory should be
    _Tracked.closed_by_cache = False
    assert cache.try_fill("a.zip") is Fill.SKIPPED
    assert _Tracked.closed_by_cache
    assert cache.usage().bytes == 0  # nothing reserved is left counted


def test_a_fill_whose_disk_fills_midway_keeps_nothing_and_still_serves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC after the header: no entry, no temp file, nothing reserved; the read goes to
    the bucket instead."""
    import runtime.mirror.filecache as filecache

    class FullDisk(io.FileIO):
        writes = 0

        def write(self, data: Any) -> int:
            type(self).writes += 1
            if type(self).writes > 1:  # the header went; the body's first chunk does not
                raise OSError(28, "No space left on device")
            return super().write(data)

    monkeypatch.setattr(filecache, "open", lambda fd, mode: FullDisk(fd, "w"), raising=False)
    cache = _cache(_Backend(hashlib.md5(BODY).hexdigest()), tmp_path)
    assert cache.try_fill("a.zip") is Fill.SKIPPED
    assert FullDisk.writes == 2
    assert cache.lookup("a.zip") is None
    assert _temp_files(tmp_path / "cache") == []
    assert cache.usage().bytes == 0
    with cache.open("a.zip") as stream:  # fills fail again: straight from the bucket
        assert stream.read() == BODY
    assert cache.stats.snapshot()["cache_errors"] == 2


@pytest.mark.parametrize(
    ("checksum", "validated", "etag", "method"),
    [
        ("CRC32:AAAAAA==", True, "0" * 32, Method.CLIENT),  # what the app's own objects get
        ("CRC32:AAAAAA==", False, "0" * 32, Method.INLINE),
        ("CRC32C:AAAAAA==", False, "0" * 32, Method.INLINE),
        ("SHA256:" + base64.b64encode(bytes(32)).decode(), False, "0" * 32, Method.DIGEST),
        (None, False, "0" * 32, Method.DIGEST),  # a legacy single-part object: its MD5
        (None, False, "0" * 32 + "-3", Method.LENGTH),
    ],
)
def test_a_check_says_what_it_costs_the_copy(
    checksum: str | None, validated: bool, etag: str, method: Method
) -> None:
    info = ObjectInfo("a.zip", 1, etag, datetime.now(UTC), checksum, None, validated)
    check = BodyCheck.of(info)
    assert check.method is method


def test_a_checksum_the_client_validates_is_not_hashed_again(tmp_path: Path) -> None:
    backend = _Backend(secrets.token_hex(16), checksum="CRC32:AAAAAA==")  # not BODY's CRC
    backend.validated = True  # the client said it checks the body against it as it reads
    cache = _cache(backend, tmp_path)
    assert cache.open("a.zip").read() == BODY
    assert cache.disk_usage()[0] == 1  # kept: it is the client's check, not a second one
    assert cache.stats.snapshot()["fill_checks_client"] == 1


def _s3_dists(s3_env: dict[str, str], tmp_path: Path) -> tuple[MirrorStore, RequestCounter]:
    env = {**s3_env, "MIRROR_DIST_CACHE_DIR": str(tmp_path / "dists")}
    mirror = open_mirror(load_settings(env))
    return mirror, RequestCounter(mirror)


def _s3(mirror: MirrorStore) -> S3Adapter:
    adapter = mirror.dists.storage.adapter
    assert isinstance(adapter, S3Adapter)
    return adapter


def _temp_files(directory: Path) -> list[Path]:
    return [path for path in directory.rglob(f"{TEMP_PREFIX}*") if path.is_file()]


@pytest.mark.parametrize("kind", ["single-part", "multipart"])
def test_a_fill_of_a_dist_the_app_wrote_does_no_hash_of_its_own(
    s3_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    mirror, requests = _s3_dists(s3_env, tmp_path)
    body = secrets.token_bytes(MULTIPART_THRESHOLD + 7 if kind == "multipart" else 300_000)
    mirror.put_dist("acme/lib/1.0.zip", io.BufferedReader(io.BytesIO(body)))

    def no_hash(self: BodyCheck, data: bytes | memoryview) -> None:
        raise AssertionError("the fill hashed the body in Python")

    monkeypatch.setattr(BodyCheck, "update", no_hash)
    with mirror.open_dist("acme/lib/1.0.zip") as stream:
        assert stream.read() == body
    stats = mirror.stats.snapshot()
    assert stats["fill_checks_client"] == 1 and stats["dist_hits"] == 0
    assert mirror.dists.disk_usage()[0] == 1
    with mirror.open_dist("acme/lib/1.0.zip") as stream:  # a hit
        assert stream.read() == body
    assert requests.take()["GetObject"] == 1


def test_a_fill_whose_bytes_do_not_match_their_checksum_keeps_nothing_and_fails_the_read(
    s3_env: dict[str, str], tmp_path: Path, lying_checksum: Any
) -> None:
    mirror, _ = _s3_dists(s3_env, tmp_path)
    body = secrets.token_bytes(3 * 1024 * 1024)
    mirror.put_dist("acme/lib/1.0.zip", body)
    lying_checksum(_s3(mirror).client, "AAAAAA==")
    for _ in range(2):  # not remembered as good, nor as uncacheable
        with pytest.raises(BackendUnavailable, match="checksum"):
            mirror.open_dist("acme/lib/1.0.zip")  # an error, not a byte of the body
        assert mirror.dists.lookup("acme/lib/1.0.zip", count=False) is None
        assert not _temp_files(tmp_path / "dists")
        assert mirror.dists.usage().bytes == 0  # the reservation was given back
    assert mirror.stats.snapshot()["fill_checks_client"] == 2


def test_a_stateless_read_whose_bytes_do_not_match_their_checksum_fails_at_its_end(
    s3_env: dict[str, str], lying_checksum: Any
) -> None:
    mirror = open_mirror(load_settings(s3_env))
    mirror.put_dist("acme/lib/1.0.zip", secrets.token_bytes(100_000))
    lying_checksum(_s3(mirror).client, "AAAAAA==")
    with (
        mirror.open_dist("acme/lib/1.0.zip") as stream,
        pytest.raises(BackendUnavailable, match="checksum"),
    ):
        while stream.read(16_384):
            pass


def test_an_md5_only_object_is_still_verified_by_its_md5(
    s3_env: dict[str, str], tmp_path: Path
) -> None:
    """A single-part object another writer stored without a checksum (its ETag the MD5)."""
    mirror, _ = _s3_dists(s3_env, tmp_path)
    storage, adapter = mirror.dists.storage, _s3(mirror)
    body = secrets.token_bytes(300_000)
    # the app's client sends no checksum of its own to an S3-compatible endpoint
    adapter.client.put_object(Bucket=adapter.bucket, Key=f"{storage.prefix}/old.zip", Body=body)
    fetched = storage.get("old.zip")
    assert fetched.info is not None and fetched.stream is not None
    fetched.stream.close()
    assert fetched.info.checksum is None and fetched.info.etag == hashlib.md5(body).hexdigest()
    with mirror.open_dist("old.zip") as stream:
        assert stream.read() == body
    assert mirror.stats.snapshot()["fill_checks_digest"] == 1
    assert mirror.dists.disk_usage()[0] == 1
