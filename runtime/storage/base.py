"""The adapter contract: what every backend implements. Keys here are already normalised and
prefixed by the `Storage` façade; adapters only do I/O and raise `runtime.errors` types."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO, Protocol

# What `write` accepts: the whole body, or a binary stream read to its end.
Body = bytes | BinaryIO


@dataclass(frozen=True)
class ObjectInfo:
    """What `stat` and `list` return. `key` is relative to the storage's prefix."""

    key: str
    size: int
    etag: str
    modified: datetime
    # From a GET, where the backend tells them: the object's own full-object checksum
    # ("CRC32:<base64>", likewise CRC32C, SHA1, SHA256) and its server-side encryption
    # ("AES256", "aws:kms", "aws:kms:dsse", "SSE-C"): what tells whether the ETag is an MD5.
    checksum: str | None = None
    encryption: str | None = None
    # True when the GET's own body stream validates `checksum` as it is read (botocore does,
    # with ChecksumMode=ENABLED): a body that does not match it raises at its end, so a
    # reader that reads to the end needs no hash of its own.
    checksum_validated: bool = False


@dataclass(frozen=True)
class Fetched:
    """One GET. `stream` is None (and `info` too) when the object still has the ETag the
    caller already holds: HTTP's 304 Not Modified."""

    info: ObjectInfo | None
    stream: BinaryIO | None

    @property
    def not_modified(self) -> bool:
        return self.stream is None


class Adapter(Protocol):
    """One backend. Every method may raise NotFound, PermissionDenied, BackendUnavailable."""

    location: str  # the backend and bucket (or root) it talks to, never a credential

    def read(self, key: str) -> bytes:
        """The object's bytes. NotFound when missing."""
        ...

    def open(self, key: str) -> BinaryIO:
        """A readable binary stream of the object; the caller closes it. NotFound when missing."""
        ...

    def get(self, key: str, if_none_match: str | None = None) -> Fetched:
        """The object's info and body stream in one request; the caller closes the stream.
        With `if_none_match`, an object whose ETag is still that one is not sent."""
        ...

    def write(self, key: str, body: Body) -> ObjectInfo | None:
        """Create or replace the object. Readers never see a partial object. Returns the new
        object's info when the backend tells it without another request."""
        ...

    def create(self, key: str, data: bytes) -> ObjectInfo | None:
        """Write the object only if the key is free, atomically: AlreadyExists otherwise,
        even when another process creates it at the same moment."""
        ...

    def exists(self, key: str) -> bool: ...

    def stat(self, key: str) -> ObjectInfo:
        """Size, ETag and modification time (`key` in the result is the full key)."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object; deleting a missing object is not an error (as on S3)."""
        ...

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Objects whose full key starts with `prefix` (a directory-like prefix, or '')."""
        ...

    def check_bucket(self) -> None:
        """One cheap request proving the bucket (local: the root directory) exists and
        the credentials reach it. NotFound naming the bucket when it does not exist."""
        ...
