"""Mirrored metadata documents (an upstream's packages.json and its p2 files).

A document is served from, in order: this worker's hot cache, the mirror store (when its
upstream answer is younger than the TTL), or the upstream. After the TTL, one conditional
request per document and worker: a 304 only restarts the clock (nothing is written); a 200
is rewritten and stored, document first, then its state. If the upstream fails in any way
(unreachable, 5xx, a redirect loop, an undecodable or unreadable body, an invalid URL), the
stored copy is served however old (stale-if-error) and the upstream is retried after a pause.
A 404 from the upstream is remembered for the negative TTL.

When an upstream's packages.json advertises `metadata-changes-url` (packagist), its p2
documents follow the feed instead of the TTL (`changes.py`): read once per
`SATCHEL_CHANGES_INTERVAL` per worker, it says which stored documents changed; the others
are served without asking. A document the feed names is first looked for in the bucket
(another replica may have refreshed it already), then refreshed conditionally.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

from anyio import to_thread

from runtime.app.caches import Expiring, Lru
from runtime.app.changes import ChangesFeed
from runtime.app.composer import (
    Dist,
    RootInfo,
    load_root,
    p2_path,
    parse_upstream_root,
    render,
    rewrite_p2,
    split_p2_file,
)
from runtime.app.config import ServeConfig
from runtime.app.egress import own_hosts
from runtime.app.http import Encoded
from runtime.app.outbound import HostRule
from runtime.app.state import UpstreamState, document_key, state_key
from runtime.app.upstream import UpstreamClient, UpstreamError, Validators, safe_url
from runtime.mirror import MetadataEntry, MirrorStore

log = logging.getLogger("satchel.mirror")

ROOT = "packages.json"
# After an upstream failure, serve the stored copy this long before asking again.
ERROR_RETRY = 30.0


class UpstreamUnavailable(Exception):
    """The upstream failed and the mirror has no stored copy to fall back on."""


@dataclass
class Doc:
    entry: MetadataEntry  # the stored body, with the bucket's ETag and Last-Modified
    state: UpstreamState | None  # None: no usable state; the next refresh is unconditional
    checked: float  # when the upstream last vouched for it (0: never, as far as we know)
    stale: bool = False  # kept because the upstream failed
    _rendered: dict[str, Encoded] = field(default_factory=dict)
    _root: RootInfo | None = None

    def render(self, base: str) -> Encoded:
        """The document as served from `base`, with its gzip encoding once made."""
        body = self._rendered.get(base)
        if body is None:
            if len(self._rendered) >= 2:  # bounded: a client inventing Host names
                self._rendered.clear()
            body = self._rendered[base] = Encoded(render(self.entry.body, base))
        return body

    def root(self) -> RootInfo:
        if self._root is None:
            self._root = load_root(self.entry.body)
        return self._root

    def cost(self) -> int:
        # The body and up to two renderings, each with its gzip encoding (~1/5 of it).
        return 3 * len(self.entry.body) + len(self.entry.body) // 2 + 1024


@dataclass(frozen=True)
class Lookup:
    doc: Doc | None  # None: the upstream has no such document
    outcome: str  # for the access log: hot, stored, miss, refreshed, revalidated, stale, ...
    # Seconds this answer stays what `get` answers without asking anything (see reuse.py).
    reusable: float = 0.0


class Documents:
    def __init__(
        self,
        mirror: MirrorStore,
        upstream: UpstreamClient,
        config: ServeConfig,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.mirror = mirror
        self.upstream = upstream
        self.config = config
        self.ttl = config.upstream_ttl
        self.clock = clock
        self.hot: Lru[str, Doc] = Lru(config.hot_cache_size, Doc.cost)
        self.negative: Expiring[str] = Expiring(config.negative_ttl, clock)
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self.feeds: dict[str, ChangesFeed] = {}  # alias -> its changes feed, when it has one
        self._own_hosts: dict[str, HostRule] = {}

    async def get(self, alias: str, path: str) -> Lookup:
        """The document, refreshed as needed. Raises UpstreamUnavailable and StorageError."""
        key = document_key(alias, path)
        feed = self.feeds.get(alias) if path != ROOT else None
        if feed is not None and feed.due():
            await feed.poll()  # one request per interval and worker
        quick = self._quick(key, feed, path)
        if quick is not None:
            return quick
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # one refresh per document and worker; the others wait for it
            quick = self._quick(key, feed, path)
            if quick is not None:
                return quick
            doc = self.hot.get(key)
            # Named by the feed: another worker or replica may have refreshed it already.
            if doc is None or (
                feed is not None and not doc.stale and feed.verdict(path, doc.checked) is False
            ):
                loaded = await self._load(alias, path)
                if loaded is not None and self._fresh_for(loaded, feed, path) is not None:
                    self.hot.put(key, loaded)
                    return Lookup(loaded, "stored")
                doc = doc or loaded
            return await self._refresh(alias, path, doc)

    async def root(self, alias: str) -> RootInfo:
        lookup = await self.get(alias, ROOT)
        if lookup.doc is None:
            raise UpstreamUnavailable(f"upstream {alias!r} has no packages.json")
        info = lookup.doc.root()
        if info.changes_url is not None and alias not in self.feeds:
            self.feeds[alias] = ChangesFeed(
                info.changes_url,
                self.upstream,
                self.config.changes_interval,
                self.clock,
                self.own_hosts(alias),
            )
        return info

    def own_hosts(self, alias: str) -> HostRule:
        """Where the upstream's metadata-url, api-url and changes feed may be fetched."""
        rule = self._own_hosts.get(alias)
        if rule is None:
            rule = self._own_hosts[alias] = own_hosts(self.config, alias)
        return rule

    async def find_dist(self, alias: str, name: str, file: str) -> Dist | None:
        """Where the upstream serves a dist the mirror advertised (from the p2 states)."""
        path = f"{name}/{file}"
        keys = [p2_path(name, dev) for dev in (False, True)]
        for p2 in keys:
            doc = self.hot.get(document_key(alias, p2))
            if doc is not None and doc.state is not None and path in doc.state.dists:
                return doc.state.dists[path]
        for p2 in keys:  # another worker or replica may have mirrored a newer p2
            state = await to_thread.run_sync(self._read_state, alias, p2)
            if state is not None and path in state.dists:
                return state.dists[path]
        return None

    # -- internals -----------------------------------------------------------------

    def _quick(self, key: str, feed: ChangesFeed | None, path: str) -> Lookup | None:
        if key in self.negative:
            return Lookup(None, "negative")
        doc = self.hot.get(key)
        if doc is None:
            return None
        fresh_for = self._fresh_for(doc, feed, path)
        if fresh_for is None:
            return None
        return Lookup(doc, "stale") if doc.stale else Lookup(doc, "hot", fresh_for)

    def _fresh_for(self, doc: Doc, feed: ChangesFeed | None, path: str) -> float | None:
        """None when the held doc is not fresh; else how long it stays fresh: until its TTL
        ends or, with a changes feed, until the feed's next poll (which may name it
        changed). A feed that can tell decides instead of the TTL; a stale copy waits out
        its error pause (the TTL)."""
        left = self.ttl - (self.clock() - doc.checked)
        if doc.stale or feed is None:
            return left if left > 0 else None
        verdict = feed.verdict(path, doc.checked)
        if verdict is None:
            return min(left, feed.next_poll_in()) if left > 0 else None
        return feed.next_poll_in() if verdict else None

    async def _load(self, alias: str, path: str) -> Doc | None:
        entry, state = await asyncio.gather(
            to_thread.run_sync(self.mirror.get_metadata, document_key(alias, path)),
            to_thread.run_sync(self._read_state, alias, path),
        )
        if entry is None:
            return None
        if state is None or state.body_etag != entry.etag:
            # Written by a refresh cut short between its two writes: refetch in full.
            return Doc(entry, None, checked=0)
        return Doc(entry, state, checked=state.checked)

    def _read_state(self, alias: str, path: str) -> UpstreamState | None:
        entry = self.mirror.get_metadata(state_key(alias, path))
        if entry is None:
            return None
        try:
            return UpstreamState.from_json(entry.body)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring an unreadable state for %s/%s: %s", alias, path, exc)
            return None

    async def _upstream_url(self, alias: str, path: str) -> str:
        upstream = self.config.upstream(alias)
        assert upstream is not None, f"unknown alias {alias}"
        if path == ROOT:
            return f"{upstream.url}/{ROOT}"
        name, dev = split_p2_file(path.removeprefix("p2/").removesuffix(".json"))
        return (await self.root(alias)).p2_url(name, dev)

    async def _refresh(self, alias: str, path: str, doc: Doc | None) -> Lookup:
        key = document_key(alias, path)
        validators = doc.state.validators if doc is not None and doc.state is not None else None
        try:
            url = await self._upstream_url(alias, path)
            # p2 documents (metadata-url) only from the upstream's own host and port.
            hosts = None if path == ROOT else self.own_hosts(alias)
            answer = await self.upstream.fetch(url, validators, hosts=hosts)
            if answer.status == 304 and validators is None:
                raise UpstreamError(f"{safe_url(url)} answered 304 to an unconditional request")
            if answer.status == 200:  # parsing a big p2 file would stall the event loop
                body, dists = await to_thread.run_sync(self._transform, alias, path, answer.body)
        except (UpstreamError, UpstreamUnavailable, ValueError) as exc:
            return self._stale(key, doc, exc)
        now = self.clock()
        if answer.status == 304:
            assert doc is not None
            doc.checked, doc.stale = now, False
            self.hot.put(key, doc)
            return Lookup(doc, "revalidated")
        if answer.status == 404:
            self.negative.add(key)
            self.hot.pop(key)
            return Lookup(None, "absent")
        entry, state = await to_thread.run_sync(
            self._store, key, state_key(alias, path), doc, body, url, answer.validators, now, dists
        )
        fresh = Doc(entry, state, checked=now)
        self.hot.put(key, fresh)
        return Lookup(fresh, "miss" if doc is None else "refreshed")

    def _transform(self, alias: str, path: str, body: bytes) -> tuple[bytes, dict[str, Dist]]:
        """The stored form of an upstream body; ValueError for any body it cannot read."""
        try:
            if path == ROOT:
                upstream = self.config.upstream(alias)
                assert upstream is not None
                return parse_upstream_root(upstream.url, body), {}
            return rewrite_p2(alias, body)
        except RecursionError:  # JSON nested deeper than the parser goes
            raise ValueError("the upstream document is nested too deeply to parse") from None

    def _store(
        self,
        key: str,
        state_path: str,
        doc: Doc | None,
        body: bytes,
        url: str,
        validators: Validators,
        now: float,
        dists: dict[str, Dist],
    ) -> tuple[MetadataEntry, UpstreamState]:
        entry = doc.entry if doc is not None else None
        if entry is None or entry.body != body:
            # Another replica may have stored this very body: keep its ETag and date.
            latest = self.mirror.get_metadata(key)
            entry = (
                latest if latest and latest.body == body else self.mirror.put_metadata(key, body)
            )
        state = UpstreamState(url, validators, now, entry.etag, dists)
        self.mirror.put_metadata(state_path, state.to_json())
        return entry, state

    def _stale(self, key: str, doc: Doc | None, exc: Exception) -> Lookup:
        if doc is None:
            raise UpstreamUnavailable(str(exc)) from exc
        log.warning("upstream failed for %s (%s); serving the stored copy", key, exc)
        doc.stale = True
        doc.checked = self.clock() - self.ttl + ERROR_RETRY
        self.hot.put(key, doc)
        return Lookup(doc, "stale")
