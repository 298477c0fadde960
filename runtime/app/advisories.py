"""Security advisories through the mirror: Composer's `api-url` (`composer audit`, and the
insecure-version blocking of Composer 2.9+), answered from the upstreams that offer one.

For each package and upstream, the answer is kept in mirror_meta
(`<alias>/advisories/<name>.json`: when the upstream gave it, and its list) and in this
worker's memory, `SATCHEL_ADVISORIES_TTL` seconds; then the upstream is asked again, in
batches (the GET form `?packages[]=...` that packagist also accepts). When it fails, the
stored answer is served however old; a package with no stored answer from an upstream that
failed, or an upstream whose packages.json cannot be fetched and is not stored, makes the
request fail (502, with a request id): "no advisories" must never be said by mistake.
Private packages have none and are never sent upstream.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from anyio import to_thread

from runtime.app.caches import Lru
from runtime.app.documents import Documents, UpstreamUnavailable
from runtime.app.http import Encoded
from runtime.app.upstream import UpstreamClient, UpstreamError
from runtime.mirror import MirrorStore

log = logging.getLogger("satchel.advisories")

BATCH = 50  # names per upstream request: the URL stays well under common limits
MAX_NAMES = 5000  # per client request


class AdvisoriesUnavailable(Exception):
    """An upstream failed and nothing is stored for some of the names it could answer (or
    for its packages.json). The message is for the log; `public` is what a client is told."""

    public = "an upstream failed and nothing is stored to answer from"


def advisories_key(alias: str, name: str) -> str:
    return f"{alias}/advisories/{name}.json"


@dataclass(frozen=True)
class Known:
    checked: float  # wall-clock time of the upstream answer
    advisories: tuple[Any, ...]


class Advisories:
    def __init__(
        self,
        mirror: MirrorStore,
        upstream: UpstreamClient,
        documents: Documents,
        ttl: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.mirror = mirror
        self.upstream = upstream
        self.documents = documents
        self.ttl = ttl
        self.clock = clock
        self.hot: Lru[str, Known] = Lru(16 << 20, lambda k: 256 + 512 * len(k.advisories))
        self.answers: Lru[tuple[str, ...], tuple[tuple[Known, ...], Encoded, str]] = Lru(
            16 << 20, lambda a: a[1].cost()
        )

    async def answer(
        self, aliases: Iterable[str], names: list[str], private: frozenset[str]
    ) -> tuple[Encoded, str, str]:
        """`{"advisories": {name: [...]}}` for `names` (private ones answered empty), its ETag
        and what it cost (for the access log). Raises AdvisoriesUnavailable."""
        wanted = sorted({n.lower() for n in names if n})[:MAX_NAMES]
        public = [n for n in wanted if n not in private]
        named: list[str] = []  # with `parts`: each name's answer from each upstream
        parts: list[Known] = []
        outcomes: set[str] = set()
        for alias in aliases:
            try:
                root = await self.documents.root(alias)
            except UpstreamUnavailable as exc:
                if not public:
                    continue
                # Its packages.json cannot be fetched and none is stored: whether it has
                # advisories is unknown, never "none".
                raise AdvisoriesUnavailable(
                    f"upstream {alias!r}: no packages.json (unreachable, none stored), so its"
                    f" advisories are unknown: {exc}"
                ) from exc
            if root.advisories_url is None:
                continue
            asked = [n for n in public if root.allows(n)]
            known, outcome = await self._known(alias, root.advisories_url, asked)
            outcomes.add(outcome)
            named += asked
            parts += [known[name] for name in asked]
        key, stamp = tuple(wanted), tuple(parts)
        cost = ",".join(sorted(outcomes)) or "none"
        cached = self.answers.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1], cached[2], cost
        found: dict[str, list[Any]] = {name: [] for name in wanted}
        for name, entry in zip(named, parts, strict=True):
            for advisory in entry.advisories:
                if advisory not in found[name]:
                    found[name].append(advisory)
        body = json.dumps({"advisories": found}, separators=(",", ":")).encode()
        etag = hashlib.sha1(body, usedforsecurity=False).hexdigest()
        encoded = Encoded(body)
        self.answers.put(key, (stamp, encoded, etag))
        return encoded, etag, cost

    async def _known(self, alias: str, api: str, names: list[str]) -> tuple[dict[str, Known], str]:
        now = self.clock()
        known: dict[str, Known] = {}
        missing: list[str] = []
        for name in names:
            hot = self.hot.get(f"{alias}/{name}")
            if hot is not None and now - hot.checked < self.ttl:
                known[name] = hot
            else:
                missing.append(name)
        if not missing:
            return known, "hot"
        stored = await to_thread.run_sync(self._read, alias, missing)
        stale = [n for n in missing if n not in stored or now - stored[n].checked >= self.ttl]
        known.update(stored)
        if not stale:
            for name, entry in stored.items():
                self.hot.put(f"{alias}/{name}", entry)
            return known, "stored"
        try:
            fetched = await self._fetch(alias, api, stale)
        except (UpstreamError, ValueError) as exc:
            lacking = [n for n in stale if n not in stored]
            if lacking:
                raise AdvisoriesUnavailable(
                    f"upstream {alias!r}: advisories API failed and nothing is stored for"
                    f" {len(lacking)} package(s)"
                ) from exc
            log.warning("advisories API of %s failed (%s); serving stored answers", alias, exc)
            for name in stale:  # ask again after a pause, not on every request
                entry = stored[name]
                self.hot.put(f"{alias}/{name}", Known(now - self.ttl + 30, entry.advisories))
            return known, "stale"
        entries = {name: Known(now, tuple(fetched.get(name, ()))) for name in stale}
        await to_thread.run_sync(self._write, alias, entries)
        known.update(entries)
        for name in missing:
            self.hot.put(f"{alias}/{name}", known[name])
        return known, "miss"

    async def _fetch(self, alias: str, api: str, names: list[str]) -> dict[str, list[Any]]:
        """The upstream's answers, from its own host and port only (the names asked never
        go elsewhere, whatever its packages.json says)."""
        hosts = self.documents.own_hosts(alias)
        out: dict[str, list[Any]] = {}
        separator = "&" if "?" in api else "?"
        for start in range(0, len(names), BATCH):
            batch = names[start : start + BATCH]
            query = urlencode([("packages[]", n) for n in batch])
            answer = await self.upstream.fetch(f"{api}{separator}{query}", hosts=hosts)
            if answer.status != 200:
                raise UpstreamError(f"the advisories API answered {answer.status}")
            try:
                document = json.loads(answer.body)
                advisories = document["advisories"]
            except (ValueError, KeyError, TypeError, RecursionError):
                raise ValueError("the advisories API answered an unreadable document") from None
            if isinstance(advisories, dict):  # packagist answers [] when there are none
                for name, items in advisories.items():
                    if isinstance(items, list):
                        out[str(name).lower()] = items
                    elif isinstance(items, dict):  # a PHP array with gaps in its keys
                        out[str(name).lower()] = list(items.values())
        return out

    def _read(self, alias: str, names: list[str]) -> dict[str, Known]:
        out: dict[str, Known] = {}
        for name in names:
            entry = self.mirror.get_metadata(advisories_key(alias, name))
            if entry is None:
                continue
            try:
                document = json.loads(entry.body)
                out[name] = Known(float(document["checked"]), tuple(document["advisories"]))
            except (ValueError, KeyError, TypeError):
                log.warning("ignoring unreadable stored advisories of %s/%s", alias, name)
        return out

    def _write(self, alias: str, entries: dict[str, Known]) -> None:
        for name, known in entries.items():
            body = {"checked": known.checked, "advisories": list(known.advisories)}
            self.mirror.put_metadata(
                advisories_key(alias, name), json.dumps(body, separators=(",", ":")).encode()
            )
