"""Where a download waits on its way to the bucket.

With a dist cache directory, a spool is a temp file in it whose bytes are reserved in the
directory's bound as they arrive (and given back when it closes): downloads can never push
the cache volume past its size, and a crash's leftover is removed like any other stale temp
file. Without one, the first `MEMORY_BYTES` stay in memory and the rest goes to the system's
temp directory, as `tempfile.SpooledTemporaryFile` does.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, cast

from runtime.mirror.budget import SPOOL_DIR, DiskBudget, create_temp

MEMORY_BYTES = 1024 * 1024
# Reserved in steps: one counter update per step downloaded. A step is small beside the
# bound, so a few concurrent spools of small dists never push the cached entries out.
RESERVE_STEP = 8 * 1024 * 1024
STEPS_PER_BOUND = 256


def open_spool(budget: DiskBudget | None) -> BinaryIO:
    """A read/write binary file for one download; closing it deletes it."""
    if budget is None:
        return cast(BinaryIO, tempfile.SpooledTemporaryFile(max_size=MEMORY_BYTES))
    # A directory of its own, which the budget's scans count as temp files (.fill-*).
    fd, path = create_temp(budget.directory / SPOOL_DIR, 0)
    return cast(BinaryIO, _BudgetedSpool(fd, path, budget))


class _BudgetedSpool(io.FileIO):
    def __init__(self, fd: int, path: Path, budget: DiskBudget) -> None:
        super().__init__(fd, "w+b", closefd=True)
        self._path = path
        self._budget = budget
        self._reserved = 0

    def write(self, data: Any) -> int:
        """Blocking (the budget's lock, the disk): call it off the event loop."""
        needed = self.tell() + len(memoryview(data))
        if needed > self._reserved:
            unit = min(RESERVE_STEP, max(64 * 1024, self._budget.max_bytes // STEPS_PER_BOUND))
            step = max(needed - self._reserved, unit)
            # Renamed first to hold the new reservation: a recount elsewhere counts it.
            renamed = self._path.with_name(
                self._path.name.replace(f"-{self._reserved}-", f"-{self._reserved + step}-", 1)
            )
            os.rename(self._path, renamed)
            self._path = renamed
            if not self._budget.reserve(step, renamed):
                raise OSError(errno.EFBIG, "the download is larger than the dist cache's bound")
            self._reserved += step
        written: int = super().write(data)
        return written

    def close(self) -> None:
        if not self.closed:
            super().close()  # drops the temp file's lock
            with contextlib.suppress(OSError):
                os.unlink(self._path)
            with contextlib.suppress(OSError):
                self._budget.release(self._reserved)
            self._reserved = 0
