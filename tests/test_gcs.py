"""The GCS adapter's failure modes against fake-gcs-server: errors raised while a caller
reads an open stream are `runtime.errors` types like every other failure."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

import runtime
from runtime import BackendUnavailable, NotFound, Storage
from runtime.storage import gcs
from tests.servers import FakeGcs
from tests.test_storage_contract import _gcs_env as gcs_env

BIG = 9 * 1024 * 1024  # more than one ranged GET of the stream (8 MiB)


def open_packages(server: FakeGcs, tmp_path: Path) -> Storage:
    return runtime.open_storages(runtime.load_settings(gcs_env(server, tmp_path))).packages


@pytest.fixture
def own_gcs(tmp_path: Path) -> Iterator[FakeGcs]:
    """A fake-gcs-server of this test's own, to stop while a stream is open."""
    server = FakeGcs()
    server.start(tmp_path / "own-gcs.log")
    yield server
    server.stop()


def test_an_object_deleted_while_it_is_read_fails_as_not_found(
    fake_gcs: FakeGcs, tmp_path: Path
) -> None:
    storage = open_packages(fake_gcs, tmp_path)
    storage.write("big.bin", secrets.token_bytes(BIG))
    fetched = storage.get("big.bin")
    assert fetched.stream is not None
    with fetched.stream as stream:
        assert len(stream.read(1024)) == 1024  # the first range is buffered
        storage.delete("big.bin")
        with pytest.raises(NotFound, match="replaced or deleted while it was being read"):
            stream.read()


def test_a_server_gone_while_a_stream_is_read_is_backend_unavailable(
    own_gcs: FakeGcs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gcs, "STREAM_RETRY", gcs.STREAM_RETRY.with_timeout(1.0))
    storage = open_packages(own_gcs, tmp_path)
    storage.write("big.bin", secrets.token_bytes(BIG))
    stream = storage.open("big.bin")
    assert len(stream.read(1024)) == 1024
    own_gcs.stop()
    with pytest.raises(BackendUnavailable, match="GCS error"):
        stream.read()
    stream.close()


def test_a_gcs_stream_is_not_taken_for_a_local_file(fake_gcs: FakeGcs, tmp_path: Path) -> None:
    storage = open_packages(fake_gcs, tmp_path)
    storage.write("s.bin", b"x")
    with storage.open("s.bin") as stream:
        assert not stream.seekable()  # its reads are network requests: off the event loop
