"""Key normalisation, done once in the façade before any I/O (after flysystem's normaliser)."""

from __future__ import annotations

import re

from runtime.errors import InvalidKey

# S3's limit on an object key, in UTF-8 bytes; applied to the full key (prefix included).
MAX_KEY_BYTES = 1024

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def normalize_key(key: str, *, allow_empty: bool = False) -> str:
    """Return the canonical form of `key` or raise InvalidKey.

    `\\` becomes `/`, leading and trailing `/` and empty or `.` segments are dropped, `..`
    removes the previous segment and may not climb above the root.
    """
    if _CONTROL.search(key):
        raise InvalidKey(
            "key contains a control character (NUL, newline, ...); use printable characters",
            key=_CONTROL.sub("?", key),
        )
    parts: list[str] = []
    for part in key.replace("\\", "/").split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise InvalidKey("key climbs above the storage root with '..'", key=key)
            parts.pop()
            continue
        parts.append(part)
    normalized = "/".join(parts)
    if not normalized and not allow_empty:
        raise InvalidKey("key is empty; give a file name such as 'dir/file.zip'", key=key)
    return normalized


def join_key(prefix: str, key: str) -> str:
    """Prefix a normalised key, enforcing S3's key-length limit on the result."""
    full = f"{prefix}/{key}" if prefix and key else prefix or key
    if len(full.encode()) > MAX_KEY_BYTES:
        raise InvalidKey(
            f"key is {len(full.encode())} bytes with its prefix; S3 allows {MAX_KEY_BYTES}",
            key=key[:64] + "...",
        )
    return full
