"""Readiness: is the bucket there and reachable with the credentials we have now? One
bucket-level request (S3 HeadBucket, GCS bucket metadata, the local root directory): a
missing bucket says so, instead of passing for a missing key. Remembered for a few
seconds so probes from the kubelet and load balancers don't each cost a request."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import anyio
from anyio import to_thread

from runtime.storage import Storage

REMEMBER_SECONDS = 2.0
PROBE_TIMEOUT = 3.0  # below the kubelet's probe timeout habits; botocore would retry longer


@dataclass(frozen=True)
class Readiness:
    ok: bool
    reason: str | None = None


class ReadinessProbe:
    def __init__(
        self,
        storage: Storage,
        clock: Callable[[], float] = time.monotonic,
        remember: float = REMEMBER_SECONDS,
        timeout: float = PROBE_TIMEOUT,
    ) -> None:
        self.storage = storage
        self.clock = clock
        self.remember = remember
        self.timeout = timeout
        self._last: tuple[float, Readiness] | None = None
        self._lock = asyncio.Lock()

    async def check(self) -> Readiness:
        async with self._lock:  # concurrent probes share one request
            if self._last is not None and self.clock() - self._last[0] < self.remember:
                return self._last[1]
            result = Readiness(False, f"storage did not answer within {self.timeout:g} s")
            with anyio.move_on_after(self.timeout):
                result = await to_thread.run_sync(self._probe, abandon_on_cancel=True)
            self._last = (self.clock(), result)
            return result

    def _probe(self) -> Readiness:
        try:
            self.storage.check_bucket()
        except Exception as exc:  # any failure means "not ready", with its reason
            return Readiness(False, f"{type(exc).__name__}: {exc}")
        return Readiness(True)
