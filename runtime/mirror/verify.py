"""What a cache fill can check of the bytes it copied, for every kind of bucket object.

- S3's own full-object checksum (CRC32, CRC32C, SHA-1, SHA-256) when the GET returned one;
- else the ETag, but only where it is the body's MD5: a single-part object stored plain or
  with SSE-S3. With SSE-KMS, DSSE-KMS or SSE-C the ETag is no digest of the body (nor is a
  multipart ETag, `<hex>-<parts>`, nor GCS's), so it is never taken for one;
- else the length only.
"""

from __future__ import annotations

import base64
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


def etag_is_md5(info: ObjectInfo) -> bool:
    etag = info.etag
    return len(etag) == 32 and _HEX.issuperset(etag) and info.encryption in _MD5_ETAG_ENCRYPTION


@dataclass
class BodyCheck:
    size: int
    name: str | None = None  # what is checked besides the length, for messages
    expected: bytes | None = None
    _digest: _Crc | hashlib._Hash | None = field(default=None, repr=False)
    _received: int = 0

    @classmethod
    def of(cls, info: ObjectInfo) -> BodyCheck:
        if info.checksum is not None:
            algorithm, _, value = info.checksum.partition(":")
            if algorithm in _CHECKSUMS:
                return cls(info.size, algorithm, base64.b64decode(value), _CHECKSUMS[algorithm]())
        if etag_is_md5(info):
            md5 = hashlib.md5(usedforsecurity=False)
            return cls(info.size, "MD5", bytes.fromhex(info.etag), md5)
        return cls(info.size)

    @property
    def hashes(self) -> bool:
        """Whether there is a digest to compute (else only the length is checked)."""
        return self._digest is not None

    def count(self, size: int) -> None:
        """Bytes received (the length check)."""
        self._received += size

    def update(self, data: bytes | memoryview) -> None:
        """Bytes for the digest, in order (counted separately: `count`)."""
        if self._digest is not None:
            self._digest.update(data)

    def problem(self) -> str | None:
        """Why the copied bytes are not the object, or None when they are."""
        if self._received != self.size:
            return f"got {self._received} of {self.size} bytes"
        if self._digest is not None and self._digest.digest() != self.expected:
            return f"its {self.name} does not match the bucket's"
        return None
