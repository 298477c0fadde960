"""Talking to an upstream Composer repository: conditional GETs and dist downloads, with
timeouts and a few retries (backoff) on connection errors and 5xx answers.

A host that still fails after the retries is left alone for a short pause: while it is
down, every other document it would serve is answered from the bucket at once (stale-if-
error) instead of each paying the retries, or the timeouts of a host that drops packets.
Every failure, whatever httpx raised, ends as one `UpstreamError` (so the documents fall
back on their stored copies); only the host's own failures pause it, not a busy local
connection pool, a broken document nor a refusal of the outbound policy
(`runtime.app.outbound`: schemes, redirects, dist hosts, addresses, size bounds).
Credentials come from COMPOSER_AUTH (by host), never from URLs: messages carry none.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import BinaryIO, TypeVar
from urllib.parse import urlsplit

import httpx
from anyio import to_thread

from runtime import metrics
from runtime.app import outbound
from runtime.app.outbound import (
    GuardedBackend,
    HostRule,
    Outbound,
    Refused,
    Resolver,
    iter_bounded,
    read_bounded,
    system_resolver,
)
from runtime.app.outbound import safe_url as safe_url  # re-exported for the documents
from runtime.app.upstream_auth import UpstreamAuth

log = logging.getLogger("satchel.upstream")

CHUNK = 256 * 1024
HOST_PAUSE = 10.0  # seconds a failing host is not asked again
MAX_CONNECTIONS = 64  # to all upstreams, per worker
MAX_DOCUMENT = 64 * 1024 * 1024  # SATCHEL_MAX_METADATA_SIZE
MAX_DIST = 512 * 1024 * 1024  # SATCHEL_MAX_DIST_SIZE

T = TypeVar("T")


class UpstreamError(Exception):
    """The upstream could not be reached or failed (after retries). Never holds a secret.
    The message (URLs, hosts, checksums) is for the log; `public` is what a client is told."""

    public = "the upstream is unavailable"


class OutboundRefused(UpstreamError):
    """Not fetched: the outbound policy refused the URL, a redirect, an address or a size."""

    def __init__(self, reason: str, public: str) -> None:
        super().__init__(reason)
        self.public = public


class ChecksumMismatch(UpstreamError):
    public = "the upstream's file did not match its checksum"


@dataclass(frozen=True)
class Validators:
    """What the upstream said about its copy, sent back on the next conditional request."""

    etag: str | None = None
    last_modified: str | None = None

    def headers(self) -> dict[str, str]:
        out = {}
        if self.etag:
            out["If-None-Match"] = self.etag
        if self.last_modified:
            out["If-Modified-Since"] = self.last_modified
        return out


@dataclass(frozen=True)
class Answer:
    status: int  # 200, 304 (not modified) or 404 (the upstream has no such document)
    body: bytes = b""
    validators: Validators = Validators()


def new_client(
    timeout: float, trusted: HostRule | None = None, resolve: Resolver = system_resolver
) -> httpx.AsyncClient:
    """The upstream connection pool, every connection checked by the address guard
    (`trusted`: the hosts the operator configured, which may be private)."""
    backend = GuardedBackend(trusted or HostRule.of(()), resolve)
    return outbound.new_client(timeout, backend, MAX_CONNECTIONS)


class UpstreamClient:
    def __init__(
        self,
        client: httpx.AsyncClient | Outbound,
        retries: int,
        backoff: float = 0.2,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        max_document: int = MAX_DOCUMENT,
        max_dist: int = MAX_DIST,
    ) -> None:
        self.outbound = client if isinstance(client, Outbound) else Outbound(client, UpstreamAuth())
        self.retries = retries
        self.backoff = backoff
        self.max_document = max_document
        self.max_dist = max_dist
        self._sleep = sleep
        self._clock = clock
        self._down_until: dict[str, float] = {}  # host -> end of its pause

    async def fetch(
        self,
        url: str,
        validators: Validators | None = None,
        *,
        method: str = "GET",
        data: dict[str, str] | list[tuple[str, str]] | None = None,
        hosts: HostRule | None = None,
    ) -> Answer:
        """One document (at most `max_document` bytes), conditionally when `validators`
        are given; `method`/`data` for a form POST (the advisories API); every hop's host
        and port in `hosts` (None: any)."""
        headers = validators.headers() if validators else {}

        async def once() -> Answer:
            async with self.outbound.stream(
                url,
                method=method,
                headers={**headers, "Accept-Encoding": "gzip"},
                data=data,
                hosts=hosts,
            ) as response:
                if response.status_code >= 500:
                    raise _ServerError(response.status_code)
                self._down_until.pop(_host(url), None)
                body = b""
                if response.status_code == 200:
                    body = await read_bounded(
                        response, self.max_document, "SATCHEL_MAX_METADATA_SIZE"
                    )
                    metrics.UPSTREAM_BYTES.labels(kind).inc(len(body))
                return _answer(url, response, body)

        kind = "document" if method == "GET" else "api"
        return await self._attempts(url, once, kind)

    async def download(
        self, url: str, sink: BinaryIO, shasum: str | None, hosts: HostRule | None = None
    ) -> bool:
        """Stream a dist into `sink` (at most `max_dist` bytes, every hop's host in
        `hosts`), checking its SHA-1 when the upstream gave one. False when the upstream
        has no such file; ChecksumMismatch when the bytes are not the ones announced."""

        async def once() -> bool:
            sink.seek(0)
            sink.truncate()
            digest = hashlib.sha1(usedforsecurity=False)
            async with self.outbound.stream(
                url, headers={"Accept-Encoding": "identity"}, hosts=hosts
            ) as response:
                if response.status_code >= 500:
                    raise _ServerError(response.status_code)
                self._down_until.pop(_host(url), None)
                if response.status_code in (404, 410):
                    return False
                if response.status_code != 200:
                    raise UpstreamError(f"{safe_url(url)} answered HTTP {response.status_code}")
                # Identity was asked for; a gzip/deflate encoding sent anyway is decoded
                # a bounded piece at a time, any other refused (outbound.iter_bounded).
                chunks = iter_bounded(response, self.max_dist, "SATCHEL_MAX_DIST_SIZE", CHUNK)
                async for chunk in chunks:
                    digest.update(chunk)
                    metrics.UPSTREAM_BYTES.labels("dist").inc(len(chunk))
                    # Off the event loop: a spool in the cache dir reserves its bytes under
                    # the cache's lock, which an eviction elsewhere may hold for a while.
                    await to_thread.run_sync(sink.write, chunk)
            if shasum and digest.hexdigest() != shasum.lower():
                raise ChecksumMismatch(
                    f"{safe_url(url)}: SHA-1 {digest.hexdigest()} is not the shasum {shasum}"
                )
            sink.seek(0)
            return True

        return await self._attempts(url, once, "dist")

    async def _attempts(self, url: str, once: Callable[[], Awaitable[T]], kind: str) -> T:
        """`once()` under the retry rules below, counted in the metrics by `kind`."""
        try:
            return await self._retried(url, once, kind)
        except UpstreamError:
            metrics.UPSTREAM_ERRORS.labels(kind).inc()
            raise

    async def _retried(self, url: str, once: Callable[[], Awaitable[T]], kind: str) -> T:
        """`once()`, retried with backoff while the host fails. Every failure ends as an
        UpstreamError with a message free of credentials:
        - connection errors, timeouts and 5xx answers are the host's: retried, then the
          host is paused;
        - no free connection in our own pool (PoolTimeout) is ours: not retried, and the
          host is not paused;
        - a refusal of the outbound policy (scheme, host, address, size, redirects) is
          final: OutboundRefused, not retried, the host not paused;
        - anything else httpx raises (an undecodable body, an invalid URL) belongs to the
          document: not retried, the host not paused."""
        self._check_host(url)
        for attempt in range(self.retries + 1):
            metrics.UPSTREAM_REQUESTS.labels(kind).inc()
            try:
                return await once()
            except Refused as exc:
                raise OutboundRefused(exc.reason, exc.public) from None
            except httpx.PoolTimeout:
                raise UpstreamError(
                    f"{safe_url(url)}: no free connection in the mirror's own upstream pool"
                    f" ({MAX_CONNECTIONS} connections busy); the host was not asked"
                ) from None
            except httpx.TransportError as exc:
                reason = _describe(exc)
            except _ServerError as exc:
                reason = f"HTTP {exc.status}"
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                raise UpstreamError(f"{safe_url(url)}: {_describe(exc)}") from None
            await self._retry_or_raise(attempt, url, reason)
        raise AssertionError("unreachable")

    def _check_host(self, url: str) -> None:
        until = self._down_until.get(_host(url))
        if until is not None and self._clock() < until:
            raise UpstreamError(f"{safe_url(url)}: its host failed less than {HOST_PAUSE:g} s ago")

    async def _retry_or_raise(self, attempt: int, url: str, reason: str) -> None:
        if attempt >= self.retries:
            self._down_until[_host(url)] = self._clock() + HOST_PAUSE
            raise UpstreamError(f"{safe_url(url)}: {reason}")
        delay = self.backoff * 2**attempt
        log.info(
            "upstream %s failed (%s); retry %d in %.2fs", safe_url(url), reason, attempt + 1, delay
        )
        await self._sleep(delay)


class _ServerError(Exception):
    """A 5xx answer: the host's failure, retried like a connection error."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _describe(exc: Exception) -> str:
    """The exception's type and message (URLs never carry credentials here: they are
    refused in upstream URLs and in the URLs fetched)."""
    text = str(exc)
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


def _host(url: str) -> str:
    """The host[:port] a URL is for: the key of its pause."""
    try:
        return urlsplit(url).netloc.rpartition("@")[2]
    except ValueError:  # an invalid URL: the outbound check will say why
        return "<an invalid URL>"


def _answer(url: str, response: httpx.Response, body: bytes) -> Answer:
    validators = Validators(
        etag=response.headers.get("ETag"), last_modified=response.headers.get("Last-Modified")
    )
    if response.status_code == 304:
        return Answer(304, validators=validators)
    if response.status_code in (404, 410):
        return Answer(404)
    if response.status_code != 200:
        raise UpstreamError(f"{safe_url(url)} answered HTTP {response.status_code}")
    return Answer(200, body, validators)
