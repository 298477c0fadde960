"""An upstream's changes feed (`metadata-changes-url`; packagist's
`/metadata/changes.json?since=`): one request per interval tells which documents changed,
instead of one conditional request per stored document per TTL.

Packagist's feed answers `{"actions": [{"type": "update" | "delete" | "resync",
"package": "vendor/name[~dev]", "time": ...}], "timestamp": T}`; `T` (in 1/10000 s) is the
next `since`. The first `since` is this worker's clock a minute back.

The feed vouches for a document only when it was watching the whole time since the
document was last checked (`checked >= origin`, the first successful read) and has read
successfully within two intervals; otherwise the documents fall back on their TTL. An
`update` or `delete` of a package makes its p2 documents stale at once; `resync` (a
`since` the upstream no longer keeps) makes every document of the upstream stale.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from urllib.parse import urlencode

from runtime.app.composer import p2_path, split_p2_file
from runtime.app.outbound import HostRule
from runtime.app.upstream import UpstreamClient, UpstreamError
from runtime.repository.names import is_package_name

log = logging.getLogger("satchel.changes")

FIRST_SINCE_MARGIN = 60.0  # seconds before our first read: clocks differ a little
MAX_TRACKED = 100_000  # changed paths remembered; beyond, a resync (everything revalidates)


class ChangesFeed:
    def __init__(
        self,
        url: str,
        upstream: UpstreamClient,
        interval: float,
        clock: Callable[[], float],
        hosts: HostRule | None = None,
    ) -> None:
        self.url = url
        self.hosts = hosts  # the upstream's own (egress.own_hosts)
        self.upstream = upstream
        self.interval = interval
        self.clock = clock
        self.since: int | None = None
        self.origin: float | None = None  # our time of the first successful read
        self.attempted = float("-inf")
        self.succeeded = float("-inf")
        self.resynced = float("-inf")
        self.changed: dict[str, float] = {}  # p2 path -> when the feed named it
        self.reads = 0  # requests made (for tests and the bench)
        self._lock = asyncio.Lock()

    def verdict(self, path: str, checked: float) -> bool | None:
        """Whether a document last checked at `checked` is current; None: cannot tell."""
        if self.origin is None or checked < self.origin:
            return None
        if self.clock() - self.succeeded > 2 * self.interval:
            return None  # the feed is failing: the TTL decides
        return checked >= self.resynced and self.changed.get(path, float("-inf")) <= checked

    def due(self) -> bool:
        return self.next_poll_in() <= 0

    def next_poll_in(self) -> float:
        """Seconds until the next read is due (<= 0: now)."""
        return self.attempted + self.interval - self.clock()

    async def poll(self) -> None:
        """Read the feed if an interval has passed (one read per worker at a time)."""
        if not self.due():
            return
        async with self._lock:
            if not self.due():
                return
            now = self.attempted = self.clock()
            since = self.since if self.since is not None else int((now - FIRST_SINCE_MARGIN) * 1e4)
            separator = "&" if "?" in self.url else "?"
            self.reads += 1
            try:
                answer = await self.upstream.fetch(
                    f"{self.url}{separator}{urlencode({'since': since})}", hosts=self.hosts
                )
                if answer.status != 200:
                    raise UpstreamError(f"the changes feed answered HTTP {answer.status}")
                self._apply(json.loads(answer.body), now)
            except (UpstreamError, ValueError, KeyError, TypeError, RecursionError) as exc:
                log.warning("changes feed %s failed (%s); documents use their TTL", self.url, exc)

    def _apply(self, document: dict[str, object], now: float) -> None:
        timestamp = document["timestamp"]
        actions = document.get("actions") or []
        if not isinstance(timestamp, int) or not isinstance(actions, list):
            raise ValueError("not a changes feed (no integer timestamp, no actions list)")
        for action in actions:
            if not isinstance(action, dict):
                continue
            kind, package = action.get("type"), action.get("package")
            if kind == "resync":
                self.resynced = now
                self.changed.clear()
            elif kind in ("update", "delete") and isinstance(package, str):
                name, dev = split_p2_file(package.lower())
                if is_package_name(name):
                    self.changed[p2_path(name, dev)] = now
        if len(self.changed) > MAX_TRACKED:
            self.resynced = now
            self.changed.clear()
        self.since = timestamp
        self.succeeded = now
        if self.origin is None:
            self.origin = now
