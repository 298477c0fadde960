"""Google Cloud Storage adapter on `google-cloud-storage`.

Every error the client raises, also while a caller reads an open stream, becomes a
`runtime.errors` type: API errors, auth errors, the transport's (requests), and the media
layer's (an invalid response, a corrupt download). Streams are pinned to the generation
they opened: an object replaced or deleted mid-read fails, never mixes two versions.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any, BinaryIO, NoReturn

from google.api_core import exceptions as gexc
from google.auth.exceptions import GoogleAuthError
from google.cloud.storage import exceptions as media
from google.cloud.storage.retry import DEFAULT_RETRY
from requests import exceptions as rexc

from runtime.errors import (
    AlreadyExists,
    BackendUnavailable,
    NotFound,
    PermissionDenied,
    StorageError,
)
from runtime.storage.base import Body, Fetched, ObjectInfo

_CHUNK = 8 * 1024 * 1024  # one ranged GET
_BUFFER = 1024 * 1024
# The client retries a stream's ranged GETs for 120 s by default: a request would hang
# that long on a GCS outage. Transient failures are still retried, within this bound.
STREAM_RETRY = DEFAULT_RETRY.with_timeout(15.0)
_ERRORS = (
    gexc.GoogleAPIError,
    GoogleAuthError,
    rexc.RequestException,
    media.InvalidResponse,
    media.DataCorruption,
)


class GcsAdapter:
    def __init__(self, client: Any, bucket: str) -> None:
        self.client = client
        self.bucket = client.bucket(bucket)
        self.location = f"gs://{bucket}"  # what tells two buckets apart

    def read(self, key: str) -> bytes:
        try:
            data: bytes = self.bucket.blob(key).download_as_bytes()
        except _ERRORS as exc:
            _raise(exc, "read")
        return data

    def open(self, key: str) -> BinaryIO:
        blob = self.bucket.blob(key)
        try:
            # reload() makes a missing object fail here, not at the caller's first read.
            blob.reload()
            return _stream(blob)
        except _ERRORS as exc:
            _raise(exc, "open")

    def get(self, key: str, if_none_match: str | None = None) -> Fetched:
        try:
            blob = self.bucket.get_blob(key, if_etag_not_match=if_none_match)
        except gexc.NotModified:
            return Fetched(info=None, stream=None)
        except _ERRORS as exc:
            _raise(exc, "read")
        if blob is None:
            raise NotFound("no such key", operation="read")
        if if_none_match is not None and blob.etag == if_none_match:
            return Fetched(info=None, stream=None)  # for servers that ignore If-None-Match
        try:
            stream = _stream(blob)
        except _ERRORS as exc:
            _raise(exc, "read")
        return Fetched(info=_info(blob), stream=stream)

    def write(self, key: str, body: Body) -> ObjectInfo:
        blob = self.bucket.blob(key)
        try:
            if isinstance(body, bytes | bytearray | memoryview):
                blob.upload_from_string(bytes(body), content_type="application/octet-stream")
            else:
                blob.upload_from_file(body, content_type="application/octet-stream")
        except _ERRORS as exc:
            _raise(exc, "write")
        return _info(blob)  # the upload's answer fills in etag, size and updated

    def create(self, key: str, data: bytes) -> ObjectInfo:
        blob = self.bucket.blob(key)
        try:
            blob.upload_from_string(
                data, content_type="application/octet-stream", if_generation_match=0
            )
        except gexc.PreconditionFailed as exc:
            raise AlreadyExists("the key exists already", operation="create") from exc
        except _ERRORS as exc:
            _raise(exc, "create")
        return _info(blob)

    def exists(self, key: str) -> bool:
        try:
            return bool(self.bucket.blob(key).exists())
        except _ERRORS as exc:
            _raise(exc, "exists")

    def stat(self, key: str) -> ObjectInfo:
        try:
            blob = self.bucket.get_blob(key)
        except _ERRORS as exc:
            _raise(exc, "stat")
        if blob is None:
            raise NotFound("no such key", operation="stat")
        return _info(blob)

    def delete(self, key: str) -> None:
        try:
            self.bucket.blob(key).delete()
        except gexc.NotFound:
            return
        except _ERRORS as exc:
            _raise(exc, "delete")

    def check_bucket(self) -> None:
        try:
            # A list of at most one object: needs only object permissions (objectViewer),
            # unlike the bucket's metadata (storage.buckets.get), and 404s without a bucket.
            next(iter(self.bucket.list_blobs(max_results=1)), None)
        except gexc.NotFound as exc:
            reason = f"bucket {self.bucket.name!r} does not exist"
            raise NotFound(reason, operation="check", cause=exc) from exc
        except _ERRORS as exc:
            _raise(exc, "check")

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        try:
            for blob in self.client.list_blobs(self.bucket, prefix=prefix or None):
                yield _info(blob)
        except _ERRORS as exc:
            _raise(exc, "list")


def _stream(blob: Any) -> BinaryIO:
    """The blob's body (its generation, as reload or get_blob set it), with mapped errors."""
    return io.BufferedReader(
        _BlobStream(blob.open("rb", chunk_size=_CHUNK, retry=STREAM_RETRY)), _BUFFER
    )


class _BlobStream(io.RawIOBase):
    """A BlobReader as a raw, non-seekable stream whose errors are StorageErrors (its reads
    are network requests: callers must not take it for a local file)."""

    def __init__(self, reader: Any) -> None:
        self._reader = reader

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            chunk: bytes = self._reader.read(len(buffer))
        except (*_ERRORS, OSError) as exc:
            if isinstance(exc, gexc.NotFound | gexc.PreconditionFailed):
                reason = "the object was replaced or deleted while it was being read"
                raise NotFound(reason, operation="read", cause=exc) from exc
            _raise(exc, "read")
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def close(self) -> None:
        try:
            self._reader.close()
        finally:
            super().close()


def _info(blob: Any) -> ObjectInfo:
    return ObjectInfo(key=blob.name, size=blob.size, etag=blob.etag or "", modified=blob.updated)


def _raise(exc: Exception, operation: str) -> NoReturn:
    kind: type[StorageError]
    if isinstance(exc, gexc.NotFound):
        kind, reason = NotFound, "no such key (or bucket)"
    elif isinstance(exc, gexc.Forbidden | gexc.Unauthorized | GoogleAuthError):
        kind, reason = PermissionDenied, f"access denied by GCS: {exc}"
    else:
        kind, reason = BackendUnavailable, f"GCS error: {exc}"
    raise kind(reason, operation=operation, cause=exc) from exc
