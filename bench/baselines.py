"""What ours is compared with: a Packeton-style metadata copy, raw boto3 and obstore reads."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import obstore
from obstore.store import S3Store

from bench.harness import CHUNK
from runtime.storage import Storage
from runtime.storage.s3 import S3Adapter


class PacketonCopy:
    """A miss asks the bucket whether the file exists (HEAD), then reads it (GET) and keeps a
    local copy that is served from then on without revalidation."""

    def __init__(self, storage: Storage, directory: Path) -> None:
        self.storage = storage
        self.directory = directory

    def get(self, path: str) -> bytes | None:
        local = self.directory / path
        try:
            return local.read_bytes()
        except FileNotFoundError:
            pass
        if not self.storage.exists(path):
            return None
        body = self.storage.read(path)
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(body)
        return body


class NullSink(io.RawIOBase):
    """A seekable sink that drops what it is given (download_fileobj's fastest path)."""

    def __init__(self) -> None:
        self.received = 0
        self._position = 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        n = len(data)
        self.received += n
        self._position += n
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._position = offset if whence == io.SEEK_SET else self._position + offset
        return self._position

    def tell(self) -> int:
        return self._position


def boto3_download(adapter: S3Adapter, key: str) -> int:
    """`download_fileobj` with its default transfer settings, on the app's own client."""
    sink = NullSink()
    adapter.client.download_fileobj(adapter.bucket, key, sink)
    return sink.received


def boto3_iter_chunks(adapter: S3Adapter, key: str) -> int:
    body = adapter.client.get_object(Bucket=adapter.bucket, Key=key)["Body"]
    return sum(len(chunk) for chunk in body.iter_chunks(CHUNK))


def obstore_store(adapter: S3Adapter, endpoint: str, region: str) -> S3Store:
    """obstore on the same server with the app's IRSA session (frozen: no refresh needed)."""
    assert adapter.credentials is not None and adapter.credentials.credentials is not None
    frozen = adapter.credentials.credentials.get_frozen_credentials()
    return S3Store(
        adapter.bucket,
        endpoint=endpoint,
        region=region,
        access_key_id=frozen.access_key,
        secret_access_key=frozen.secret_key,
        session_token=frozen.token,
        virtual_hosted_style_request=False,
        client_options={"allow_http": True},
    )


def obstore_read(store: S3Store, key: str) -> int:
    """The sync API only: its async calls can abort the interpreter at exit (TESTBED.md)."""
    stream = obstore.get(store, key).stream(min_chunk_size=CHUNK)
    return sum(len(chunk) for chunk in stream)
