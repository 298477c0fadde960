"""Single flight across threads and processes: one blocking `flock` per key.

flock locks belong to an open file description, so two threads of one process that each
open the lock file exclude each other just as two processes do. Waiting blocks in the
kernel: no polling.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path

LOCK_DIR = ".locks"


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyLock:
    """Held from `acquire()` until `release()`; the caller releases exactly once."""

    def __init__(self, directory: Path, key: str) -> None:
        self.path = directory / LOCK_DIR / f"{key_hash(key)}.lock"
        self._fd: int | None = None

    def acquire(self) -> KeyLock:
        """Block until this process holds the key. Raises OSError if the dir is unusable."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
