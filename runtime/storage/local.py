"""Local filesystem adapter: full keys are paths below a root directory.

Writes go to a temp file in the target's directory, are flushed to disk and renamed over the
target, so a reader sees the old object or the new one, never a partial file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, NoReturn

from runtime.errors import (
    AlreadyExists,
    BackendUnavailable,
    NotFound,
    PermissionDenied,
    StorageError,
)
from runtime.storage.base import Body, Fetched, ObjectInfo

# Temp files carry this prefix so `list` can skip an upload in progress.
TEMP_PREFIX = ".satchel-tmp-"
_COPY_CHUNK = 1024 * 1024


class LocalAdapter:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.location = f"file://{root.resolve()}"  # what tells two roots apart

    def _path(self, key: str) -> Path:
        return self.root / key

    def read(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except OSError as exc:
            _raise(exc, "read")

    def open(self, key: str) -> BinaryIO:
        try:
            return self._path(key).open("rb")
        except OSError as exc:
            _raise(exc, "open")

    def get(self, key: str, if_none_match: str | None = None) -> Fetched:
        stream = self.open(key)
        info = _info(key, os.fstat(stream.fileno()))
        if if_none_match is not None and info.etag == if_none_match:
            stream.close()
            return Fetched(info=None, stream=None)
        return Fetched(info=info, stream=stream)

    def write(self, key: str, body: Body) -> ObjectInfo:
        target = self._path(key)
        self._publish(target, body, os.replace, "write")
        return _info(key, target.stat())

    def create(self, key: str, data: bytes) -> ObjectInfo:
        """A complete temp file hard-linked to the key: `link` fails if the key exists, so
        the object appears whole or not at all, once."""
        target = self._path(key)
        try:
            self._publish(target, data, os.link, "create")
        except FileExistsError as exc:
            raise AlreadyExists("the key exists already", operation="create") from exc
        return _info(key, target.stat())

    def _publish(
        self, target: Path, body: Body, put: Callable[[str, Path], None], operation: str
    ) -> None:
        """Write `body` to a temp file beside `target`, flushed to disk, then `put` it in
        place (rename: replaces; link: only if free); the temp file never stays."""
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, temp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=target.parent)
        except OSError as exc:
            _raise(exc, operation)
        try:
            with os.fdopen(fd, "wb") as temp:
                _copy(body, temp)
                temp.flush()
                os.fsync(temp.fileno())
            os.chmod(temp_name, 0o644)  # mkstemp makes 0600; objects are ordinary files
            put(temp_name, target)
        except FileExistsError:
            raise
        except BaseException as exc:
            if isinstance(exc, _SourceFailed):
                raise exc.original from None
            if isinstance(exc, OSError):
                _raise(exc, operation)
            raise
        finally:
            with contextlib.suppress(OSError):
                os.unlink(temp_name)  # after a rename: already gone; after a link: the copy

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def stat(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            st = path.stat()
        except OSError as exc:
            _raise(exc, "stat")
        if not path.is_file():
            raise NotFound("not a file")
        return _info(key, st)

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            _raise(exc, "delete")

    def check_bucket(self) -> None:
        if not self.root.is_dir():
            raise NotFound(
                f"the storage root directory {str(self.root)!r} does not exist",
                operation="check",
            )

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        # `prefix` is '' or ends with '/': it names a directory below the root.
        base = self._path(prefix) if prefix else self.root
        if not base.is_dir():
            return
        for directory, dirs, files in os.walk(base, onerror=_walk_error):
            dirs.sort()
            for name in sorted(files):
                if name.startswith(TEMP_PREFIX):
                    continue
                path = Path(directory, name)
                with contextlib.suppress(FileNotFoundError):  # deleted while listing
                    yield _info(path.relative_to(self.root).as_posix(), path.stat())


class _SourceFailed(Exception):
    """Reading the caller's stream failed: re-raised as is, not as a storage error."""

    def __init__(self, original: BaseException) -> None:
        self.original = original


def _copy(body: Body, temp: BinaryIO) -> None:
    if isinstance(body, bytes | bytearray | memoryview):
        temp.write(body)
        return
    while True:
        try:
            chunk = body.read(_COPY_CHUNK)
        except Exception as exc:
            raise _SourceFailed(exc) from exc
        if not chunk:
            return
        temp.write(chunk)


def _info(key: str, st: os.stat_result) -> ObjectInfo:
    # A cheap validator in the style of web servers' ETags: size and mtime. The '-' keeps it
    # from looking like an MD5 of the body (as S3's single-part ETags are).
    return ObjectInfo(
        key=key,
        size=st.st_size,
        etag=f"{st.st_size:x}-{st.st_mtime_ns:x}",
        modified=datetime.fromtimestamp(st.st_mtime, UTC),
    )


def _walk_error(exc: OSError) -> None:
    _raise(exc, "list")


def _raise(exc: OSError, operation: str) -> NoReturn:
    reason = exc.strerror or str(exc)
    kind: type[StorageError]
    if isinstance(exc, FileNotFoundError | IsADirectoryError | NotADirectoryError):
        kind = NotFound
    elif isinstance(exc, PermissionError) or exc.errno == errno.EROFS:
        kind = PermissionDenied
    else:  # ENOSPC, EIO, ...
        kind = BackendUnavailable
    raise kind(reason, operation=operation, cause=exc) from exc
