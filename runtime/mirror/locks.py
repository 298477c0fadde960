"""Single flight across threads and processes: `flock` on a fixed set of striped lock files.

flock locks belong to an open file description, so two threads of one process that each
open the lock file exclude each other just as two processes do, and a lock dies with its
process. Keys map onto `STRIPES` lock files: the directory never holds more than that,
however many keys (existing or invented) anyone asks for. Two keys sharing a stripe only
serialise their (short) fills.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from pathlib import Path

LOCK_DIR = ".locks"
STRIPES = 256  # the first byte of the key's hash
USAGE_LOCK = "usage.lock"  # guards the shared byte counter (runtime.mirror.budget)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def stripe_names() -> frozenset[str]:
    return frozenset(f"{n:02x}.lock" for n in range(STRIPES))


class FileLock:
    """An exclusive flock on one file, held from `acquire()` until `release()`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, *, blocking: bool = True) -> bool:
        """Take the lock; without `blocking`, False at once when someone else holds it.
        Raises OSError if the directory is unusable."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


class KeyLock(FileLock):
    """The lock of the stripe a key falls in."""

    def __init__(self, directory: Path, key: str) -> None:
        super().__init__(directory / LOCK_DIR / f"{key_hash(key)[:2]}.lock")


def is_held(path: Path) -> bool:
    """Whether some process holds an flock on `path` (a missing file is not held)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the lock we may have taken
    return False


def remove_foreign_locks(directory: Path) -> int:
    """Delete lock files that are no stripe (left by older versions: one per key)."""
    removed = 0
    stripes = stripe_names() | {USAGE_LOCK}
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(directory / LOCK_DIR):
            if entry.name not in stripes and not is_held(Path(entry.path)):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed += 1
    return removed


def count_locks(directory: Path) -> int:
    try:
        return sum(1 for _ in os.scandir(directory / LOCK_DIR))
    except FileNotFoundError:
        return 0
