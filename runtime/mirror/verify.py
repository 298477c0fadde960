"""What a cache fill can check of the bytes it copied, for every kind of bucket object, and
what that costs the copy (`Method`).

- S3's own full-object checksum (CRC32, CRC32C, SHA-1, SHA-256) when the GET returned one.
  When the client validates it itself as the body streams (botocore does for the objects the
  app writes, which all carry a CRC32), nothing is hashed here: a mismatch raises from the
  read that reaches the body's end, before the entry is renamed into place. Else a CRC is
  computed in the copy pass (zlib, google-crc32c: GB/s) and a SHA on a thread of its own;
- else the ETag, but only where it is the body's MD5: a single-part object stored plain or
  with SSE-S3 by another writer. With SSE-KMS, DSSE-KMS or SSE-C the ETag is no digest of
  the body (nor is a multipart ETag, `<hex>-<parts>`, nor GCS's), so it is never taken for
  one. MD5 runs at ~600 MiB/s, on a thread of its own beside the copy;
- else the length only.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import google_crc32c

from runtime.storage import ObjectInfo

# Encryption modes whose single-part ETag is still the body's MD5.
_MD5_ETAG_ENCRYPTION = {None, "AES256"}
_HEX = frozenset("0123456789abcdef")


class _Crc:
    """CRC32 or CRC32C as a hashlib-like object (big-endian 4-byte digest, as S3 sends)."""

    def __init__(self, update: Callable[[bytes | memoryview, int], int]) -> None:
        self._update = update
        self._value = 0

    def update(self, data: bytes | memoryview) -> None:
        self._value = self._update(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(4, "big")


def _crc32c(data: bytes | memoryview, value: int) -> int:
    return int(google_crc32c.extend(value, bytes(data) if isinstance(data, memoryview) else data))


_CHECKSUMS: dict[str, Callable[[], _Crc | hashlib._Hash]] = {
    "CRC32": lambda: _Crc(zlib.crc32),
    "CRC32C": lambda: _Crc(_crc32c),
    "SHA1": lambda: hashlib.sha1(usedforsecurity=False),
    "SHA256": hashlib.sha256,
}


class Method(enum.Enum):
    """How a fill checks the bytes beyond their length, by what it costs the copy."""

    CLIENT = "client"  # the bucket's client validates the object's checksum: no hash here
    INLINE = "inline"  # a CRC in the copy pass itself (GB/s, the GIL released)
    DIGEST = "digest"  # a slower digest (MD5, SHA) on a thread of its own beside the copy
    LENGTH = "length"  # nothing to check the bytes against: the length only


_INLINE = {"CRC32", "CRC32C"}


def etag_is_md5(info: ObjectInfo) -> bool:
    etag = info.etag
    return len(etag) == 32 and _HEX.issuperset(etag) and info.encryption in _MD5_ETAG_ENCRYPTION


@dataclass
class BodyCheck:
    size: int
    name: str | None = None  # what is checked besides the length, for messages
    method: Method = Method.LENGTH
    expected: bytes | None = None
    _digest: _Crc | hashlib._Hash | None = field(default=None, repr=False)
    _received: int = 0

    @classmethod
    def of(cls, info: ObjectInfo) -> BodyCheck:
        if info.checksum is not None:
            algorithm, _, value = info.checksum.partition(":")
            if info.checksum_validated:
                return cls(info.size, algorithm, Method.CLIENT)
            if algorithm in _CHECKSUMS:
                method = Method.INLINE if algorithm in _INLINE else Method.DIGEST
                digest = _CHECKSUMS[algorithm]()
                return cls(info.size, algorithm, method, base64.b64decode(value), digest)
        if etag_is_md5(info):
            md5 = hashlib.md5(usedforsecurity=False)
            return cls(info.size, "MD5", Method.DIGEST, bytes.fromhex(info.etag), md5)
        return cls(info.size)

    def describe(self) -> str:
        if self.method is Method.CLIENT:
            return f"{self.name}, validated by the bucket's client"
        return self.name or "length only"

    def count(self, size: int) -> None:
        """Bytes received (the length check)."""
        self._received += size

    def update(self, data: bytes | memoryview) -> None:
        """Bytes for the digest, in order (counted separately: `count`)."""
        if self._digest is not None:
            self._digest.update(data)

    def problem(self) -> str | None:
        """Why the copied bytes are not the object, or None when they are. (A checksum the
        client validates has raised already, from the read that reached the end.)"""
        if self._received != self.size:
            return f"got {self._received} of {self.size} bytes"
        if self._digest is not None and self._digest.digest() != self.expected:
            return f"its {self.name} does not match the bucket's"
        return None
