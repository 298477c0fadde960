"""Local adapter specifics: atomic writes on real (small, read-only) filesystems."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import runtime
from runtime import BackendUnavailable, ConfigError, PermissionDenied, Storage
from runtime.storage.local import TEMP_PREFIX


def _local(root: Path) -> Storage:
    env = {"STORAGE_SOURCE": "local", "SATCHEL_LOCAL_ROOT": str(root)}
    return runtime.open_storages(runtime.load_settings(env)).packages


def _all_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


class _FailingStream(io.RawIOBase):
    """Yields some bytes, then fails like a dropped upload."""

    def __init__(self) -> None:
        self.sent = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self.sent >= 3 * 1024 * 1024:
            raise ConnectionResetError("client went away")
        n = min(len(buffer), 1024 * 1024)
        buffer[:n] = b"x" * n
        self.sent += n
        return n


def test_a_failed_stream_leaves_no_file_and_no_temp_file(tmp_path: Path) -> None:
    storage = _local(tmp_path)
    with pytest.raises(ConnectionResetError):
        storage.write("pkg/a.zip", _FailingStream())
    assert _all_files(tmp_path) == []


def test_a_failed_overwrite_keeps_the_old_contents(tmp_path: Path) -> None:
    storage = _local(tmp_path)
    storage.write("pkg/a.zip", b"old")
    with pytest.raises(ConnectionResetError):
        storage.write("pkg/a.zip", _FailingStream())
    assert storage.read("pkg/a.zip") == b"old"
    assert _all_files(tmp_path) == ["packeton/pkg/a.zip"]


def test_a_full_filesystem_fails_the_write_cleanly(
    mount_tmpfs: Callable[..., Path],
) -> None:
    root = mount_tmpfs(size="1m")
    storage = _local(root)
    storage.write("keep.bin", b"kept")
    with pytest.raises(BackendUnavailable, match="No space left"):
        storage.write("huge.bin", io.BytesIO(b"y" * (2 * 1024 * 1024)))
    assert _all_files(root) == ["packeton/keep.bin"]
    assert storage.read("keep.bin") == b"kept"


def test_a_read_only_filesystem_is_a_config_error_at_open(
    mount_tmpfs: Callable[..., Path],
) -> None:
    root = mount_tmpfs(read_only=True)
    with pytest.raises(ConfigError, match=r"SATCHEL_LOCAL_ROOT: .* is not writable"):
        _local(root)


def test_a_root_that_is_a_file_is_a_config_error(tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(ConfigError, match=r"SATCHEL_LOCAL_ROOT: .* is a file"):
        _local(file)


def test_a_read_only_directory_below_the_root_is_permission_denied(
    tmp_path: Path, mount_tmpfs: Callable[..., Path]
) -> None:
    storage = _local(tmp_path / "root")
    mount_tmpfs("root/packeton/ro", read_only=True)
    with pytest.raises(PermissionDenied, match="Read-only file system") as caught:
        storage.write("ro/x.zip", b"x")
    assert caught.value.key == "ro/x.zip"


@pytest.fixture
def in_progress_upload(tmp_path: Path) -> Iterator[Path]:
    temp = tmp_path / "packeton" / f"{TEMP_PREFIX}abc"
    temp.parent.mkdir(parents=True)
    temp.write_bytes(b"partial")
    yield temp
    os.unlink(temp)


def test_listing_skips_uploads_in_progress(tmp_path: Path, in_progress_upload: Path) -> None:
    storage = _local(tmp_path)
    storage.write("done.zip", b"done")
    assert [info.key for info in storage.list()] == ["done.zip"]


def test_written_files_are_world_readable_like_ordinary_files(tmp_path: Path) -> None:
    _local(tmp_path).write("f.txt", b"x")
    assert (tmp_path / "packeton" / "f.txt").stat().st_mode & 0o777 == 0o644
