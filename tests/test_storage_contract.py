"""One behavioural suite for every adapter: local directory, S3 (SeaweedFS), GCS (fake-gcs-server).

The `storage` fixture is the single hook that builds a storage; each test runs once per backend.
"""

from __future__ import annotations

import io
import json
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import runtime
from runtime import AlreadyExists, InvalidKey, NotFound, Storage, Storages
from runtime.storage.local import LocalAdapter
from tests.servers import FakeGcs

GCS_BUCKET = "satchel-gcs-test"


def _gcs_env(fake_gcs: FakeGcs, tmp_path: Path, bucket: str = GCS_BUCKET) -> dict[str, str]:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage as gcs

    client = gcs.Client(
        project="test",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": fake_gcs.endpoint},
    )
    if bucket == GCS_BUCKET and client.lookup_bucket(GCS_BUCKET) is None:
        client.create_bucket(GCS_BUCKET)
    prefix = f"t-{secrets.token_hex(4)}"
    config = tmp_path / "storage.yaml"
    config.write_text(
        f"""
flysystem:
    storages:
        gcloud.storage:
            adapter: 'gcloud'
            options:
                client: 'gcloud_client_service'
                bucket: '{bucket}'
                prefix: '{prefix}/packages'
        gcloud.artifact:
            adapter: 'gcloud'
            options:
                client: 'gcloud_client_service'
                bucket: '{bucket}'
                prefix: '{prefix}/artifact'
services:
    gcloud_client_service:
        class: Google\\Cloud\\Storage\\StorageClient
        arguments:
            - {{ projectId: 'test' }}
"""
    )
    return {
        "STORAGE_SOURCE": "gcloud",
        "SATCHEL_STORAGE_CONFIG": str(config),
        "STORAGE_EMULATOR_HOST": fake_gcs.endpoint,
        "STORAGE_AWS_MIRROR_META_PREFIX": f"{prefix}/mirror-meta",
        "STORAGE_AWS_MIRROR_DIST_PREFIX": f"{prefix}/mirror-dist",
    }


@pytest.fixture(params=["local", "s3", "gcs"])
def storages(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storages]:
    if request.param == "local":
        env = request.getfixturevalue("local_env")
    elif request.param == "s3":
        env = request.getfixturevalue("s3_env")
    else:
        env = _gcs_env(request.getfixturevalue("fake_gcs"), tmp_path)
    yield runtime.open_storages(runtime.load_settings(env))


@pytest.fixture
def storage(storages: Storages) -> Storage:
    return storages.packages


MISSING_BUCKET = "satchel-no-such-bucket"


@pytest.fixture(params=["local", "s3", "gcs"])
def in_a_missing_bucket(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    """A storage whose bucket (local: root directory, removed after opening) does not exist."""
    if request.param == "local":
        root = tmp_path / "no"
        env = {**request.getfixturevalue("local_env"), "SATCHEL_LOCAL_ROOT": str(root)}
        opened = runtime.open_storages(runtime.load_settings(env)).mirror_meta
        root.rmdir()
        return opened
    if request.param == "s3":
        env = {**request.getfixturevalue("s3_env"), "STORAGE_AWS_BUCKET": MISSING_BUCKET}
    else:
        env = _gcs_env(request.getfixturevalue("fake_gcs"), tmp_path, MISSING_BUCKET)
    return runtime.open_storages(runtime.load_settings(env)).mirror_meta


def test_writing_and_reading_a_file(storage: Storage) -> None:
    storage.write("vendor/pkg/1.0.zip", b"zip bytes")
    assert storage.read("vendor/pkg/1.0.zip") == b"zip bytes"


def test_writing_and_reading_an_empty_file(storage: Storage) -> None:
    storage.write("empty", b"")
    assert storage.read("empty") == b""
    assert storage.stat("empty").size == 0


def test_writing_a_stream_and_opening_it_as_a_stream(storage: Storage) -> None:
    payload = secrets.token_bytes(3 * 1024 * 1024 + 7)
    storage.write("big.bin", io.BytesIO(payload))
    with storage.open("big.bin") as stream:
        first = stream.read(1000)
        rest = stream.read()
    assert first + rest == payload


def test_overwriting_a_file_replaces_its_contents(storage: Storage) -> None:
    storage.write("f.json", b'{"v": 1}')
    storage.write("f.json", b'{"v": 2}')
    assert json.loads(storage.read("f.json")) == {"v": 2}


def test_reading_a_file_that_does_not_exist(storage: Storage) -> None:
    with pytest.raises(NotFound) as caught:
        storage.read("missing/file.zip")
    assert caught.value.key == "missing/file.zip"
    assert caught.value.storage == "packages"
    assert "packages" in str(caught.value) and "missing/file.zip" in str(caught.value)


def test_opening_a_file_that_does_not_exist(storage: Storage) -> None:
    with pytest.raises(NotFound):
        storage.open("missing.zip")


def test_checking_existence(storage: Storage) -> None:
    assert not storage.exists("a.txt")
    storage.write("a.txt", b"x")
    assert storage.exists("a.txt")


def test_stat_gives_size_etag_and_modification_time(storage: Storage) -> None:
    storage.write("dir/s.txt", b"12345")
    info = storage.stat("dir/s.txt")
    assert info.key == "dir/s.txt"
    assert info.size == 5
    assert info.etag
    assert info.modified.tzinfo is not None
    storage.write("dir/s.txt", b"123456")
    assert storage.stat("dir/s.txt").etag != info.etag


def test_stat_of_a_file_that_does_not_exist(storage: Storage) -> None:
    with pytest.raises(NotFound):
        storage.stat("nope")


def test_deleting_a_file(storage: Storage) -> None:
    storage.write("d.txt", b"x")
    storage.delete("d.txt")
    assert not storage.exists("d.txt")


def test_deleting_a_file_that_does_not_exist_is_not_an_error(storage: Storage) -> None:
    storage.delete("never-written.txt")


def test_listing_a_prefix_returns_relative_keys_below_it_only(storage: Storage) -> None:
    for key in ("a/1.zip", "a/sub/2.zip", "ab/3.zip", "b.zip"):
        storage.write(key, b"x")
    assert sorted(i.key for i in storage.list("a")) == ["a/1.zip", "a/sub/2.zip"]
    assert sorted(i.key for i in storage.list()) == ["a/1.zip", "a/sub/2.zip", "ab/3.zip", "b.zip"]
    assert [i.size for i in storage.list("b.zip/")] == []


def test_listing_an_empty_prefix_returns_nothing(storage: Storage) -> None:
    assert list(storage.list("no/such/dir")) == []


def test_keys_are_normalised_like_flysystem(storage: Storage) -> None:
    storage.write("\\win\\style\\key.txt", b"w")
    assert storage.read("/win/style/./key.txt") == b"w"
    assert storage.read("win/other/../style/key.txt") == b"w"
    assert [i.key for i in storage.list("win")] == ["win/style/key.txt"]


@pytest.mark.parametrize(
    "bad_key",
    ["../escape", "a/../../escape", "nul\x00byte", "line\nbreak", "", "/", "x" * 1100],
)
def test_invalid_keys_are_rejected_before_any_io(storage: Storage, bad_key: str) -> None:
    with pytest.raises(InvalidKey):
        storage.write(bad_key, b"x")
    with pytest.raises(InvalidKey):
        storage.read(bad_key)
    assert list(storage.list()) == []


def test_storages_are_isolated_by_prefix(storages: Storages) -> None:
    storages.packages.write("same.txt", b"packages")
    storages.artifacts.write("same.txt", b"artifacts")
    storages.mirror_meta.write("same.txt", b"meta")
    assert storages.packages.read("same.txt") == b"packages"
    assert storages.artifacts.read("same.txt") == b"artifacts"
    assert storages.mirror_meta.read("same.txt") == b"meta"
    assert not storages.mirror_dist.exists("same.txt")
    assert [i.key for i in storages.artifacts.list()] == ["same.txt"]


def test_get_returns_the_info_and_the_body_in_one_go(storage: Storage) -> None:
    written = storage.write("g/a.json", b'{"a": 1}')
    fetched = storage.get("g/a.json")
    assert fetched.info is not None and fetched.stream is not None
    with fetched.stream as stream:
        assert stream.read() == b'{"a": 1}'
    assert fetched.info.key == "g/a.json"
    assert fetched.info.size == 8
    stat = storage.stat("g/a.json")  # (checksum and encryption: a GET's only)
    assert (fetched.info.key, fetched.info.size, fetched.info.etag, fetched.info.modified) == (
        stat.key,
        stat.size,
        stat.etag,
        stat.modified,
    )
    if written is not None:  # the backend said what it stored, as a later read sees it
        assert written.etag == fetched.info.etag
        assert abs((written.modified - fetched.info.modified).total_seconds()) < 2


def test_a_conditional_get_with_the_current_etag_is_not_modified(storage: Storage) -> None:
    storage.write("g/c.json", b"v1")
    first = storage.get("g/c.json")
    assert first.info is not None and first.stream is not None
    first.stream.close()
    again = storage.get("g/c.json", if_none_match=first.info.etag)
    assert again.not_modified and again.info is None
    storage.write("g/c.json", b"v2 is longer")
    changed = storage.get("g/c.json", if_none_match=first.info.etag)
    assert not changed.not_modified and changed.stream is not None
    with changed.stream as stream:
        assert stream.read() == b"v2 is longer"


def test_a_conditional_get_of_a_missing_key_is_not_found(storage: Storage) -> None:
    with pytest.raises(NotFound):
        storage.get("g/missing.json", if_none_match="0123")


def test_checking_the_bucket_of_a_working_storage(storage: Storage) -> None:
    storage.check_bucket()  # before anything was written under the prefix, too


def test_checking_a_bucket_that_does_not_exist_names_it(in_a_missing_bucket: Storage) -> None:
    with pytest.raises(NotFound, match="does not exist") as caught:
        in_a_missing_bucket.check_bucket()
    assert caught.value.storage == "mirror_meta" and caught.value.key is None
    missing = "no" if isinstance(in_a_missing_bucket.adapter, LocalAdapter) else MISSING_BUCKET
    assert missing in str(caught.value)


def test_creating_a_file_that_does_not_exist_yet(storage: Storage) -> None:
    info = storage.create("created/a.zip", b"first")
    assert storage.read("created/a.zip") == b"first"
    assert info is None or (info.key == "created/a.zip" and info.size == 5)


def test_creating_a_file_that_exists_is_refused_and_keeps_the_first(storage: Storage) -> None:
    storage.create("created/b.zip", b"first")
    with pytest.raises(AlreadyExists) as raised:
        storage.create("created/b.zip", b"second")
    assert raised.value.key == "created/b.zip" and raised.value.operation == "create"
    assert storage.read("created/b.zip") == b"first"
    assert [i.key for i in storage.list("created")] == ["created/b.zip"]  # no temp left


def test_creating_one_key_from_many_threads_at_once_lets_exactly_one_win(
    storage: Storage,
) -> None:
    bodies = [f"body {i}".encode() for i in range(8)]
    won: list[bytes] = []
    barrier = threading.Barrier(len(bodies))

    def create(body: bytes) -> None:
        barrier.wait()
        try:
            storage.create("created/race.zip", body)
            won.append(body)
        except AlreadyExists:
            pass

    threads = [threading.Thread(target=create, args=(b,)) for b in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1
    assert storage.read("created/race.zip") == won[0]
