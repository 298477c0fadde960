"""Talking to an upstream Composer repository: conditional GETs and dist downloads, with
timeouts and a few retries (backoff) on connection errors and 5xx answers.

A host that still fails after the retries is left alone for a short pause: while it is
down, every other document it would serve is answered from the bucket at once (stale-if-
error) instead of each paying the retries, or the timeouts of a host that drops packets.
Every failure, whatever httpx raised, ends as one `UpstreamError` (so the documents fall
back on their stored copies); only the host's own failures pause it, not a busy local
connection pool nor a broken document. Messages never carry the userinfo of a URL.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import BinaryIO, TypeVar
from urllib.parse import unquote, urlsplit

import httpx
from anyio import to_thread

log = logging.getLogger("satchel.upstream")

USER_AGENT = "satchel-mirror/0.1 (Composer repository mirror)"
CHUNK = 256 * 1024
HOST_PAUSE = 10.0  # seconds a failing host is not asked again
MAX_CONNECTIONS = 64  # to all upstreams, per worker

T = TypeVar("T")


class UpstreamError(Exception):
    """The upstream could not be reached or failed (after retries). Never holds a secret."""


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


def new_client(timeout: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout, connect=min(5.0, timeout)),
        follow_redirects=True,  # GitHub's zipball URLs redirect to codeload
        headers={"User-Agent": USER_AGENT},
        limits=httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=16),
    )


class UpstreamClient:
    def __init__(
        self,
        client: httpx.AsyncClient,
        retries: int,
        backoff: float = 0.2,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.retries = retries
        self.backoff = backoff
        self._sleep = sleep
        self._clock = clock
        self._down_until: dict[str, float] = {}  # host -> end of its pause

    async def fetch(self, url: str, validators: Validators | None = None) -> Answer:
        """One document, conditionally when `validators` are given."""
        headers = validators.headers() if validators else {}
        target, auth = split_credentials(url)

        async def once() -> Answer:
            response = await self.client.get(target, headers=headers, auth=auth)
            if response.status_code >= 500:
                raise _ServerError(response.status_code)
            self._down_until.pop(_host(url), None)
            return _answer(url, response)

        return await self._attempts(url, once)

    async def download(self, url: str, sink: BinaryIO, shasum: str | None) -> bool:
        """Stream a dist into `sink`, checking its SHA-1 when the upstream gave one.
        False when the upstream has no such file."""
        target, auth = split_credentials(url)

        async def once() -> bool:
            sink.seek(0)
            sink.truncate()
            digest = hashlib.sha1(usedforsecurity=False)
            async with self.client.stream(
                "GET", target, headers={"Accept-Encoding": "identity"}, auth=auth
            ) as response:
                if response.status_code >= 500:
                    raise _ServerError(response.status_code)
                self._down_until.pop(_host(url), None)
                if response.status_code in (404, 410):
                    return False
                if response.status_code != 200:
                    raise UpstreamError(f"{safe_url(url)} answered HTTP {response.status_code}")
                async for chunk in response.aiter_bytes(CHUNK):
                    digest.update(chunk)
                    # Off the event loop: a spool in the cache dir reserves its bytes under
                    # the cache's lock, which an eviction elsewhere may hold for a while.
                    await to_thread.run_sync(sink.write, chunk)
            if shasum and digest.hexdigest() != shasum.lower():
                raise UpstreamError(
                    f"{safe_url(url)}: SHA-1 {digest.hexdigest()} is not the shasum {shasum}"
                )
            sink.seek(0)
            return True

        return await self._attempts(url, once)

    async def _attempts(self, url: str, once: Callable[[], Awaitable[T]]) -> T:
        """`once()`, retried with backoff while the host fails. Every failure ends as an
        UpstreamError with a message free of the URL's credentials:
        - connection errors, timeouts and 5xx answers are the host's: retried, then the
          host is paused;
        - no free connection in our own pool (PoolTimeout) is ours: not retried, and the
          host is not paused;
        - anything else httpx raises (a redirect loop, an undecodable body, an invalid
          URL) belongs to the document: not retried, the host not paused."""
        self._check_host(url)
        for attempt in range(self.retries + 1):
            try:
                return await once()
            except httpx.PoolTimeout:
                raise UpstreamError(
                    f"{safe_url(url)}: no free connection in the mirror's own upstream pool"
                    f" ({MAX_CONNECTIONS} connections busy); the host was not asked"
                ) from None
            except httpx.TransportError as exc:
                reason = _describe(exc, url)
            except _ServerError as exc:
                reason = f"HTTP {exc.status}"
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                raise UpstreamError(f"{safe_url(url)}: {_describe(exc, url)}") from None
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


_USERINFO = re.compile(r"(?<=//)[^/?#]*@")


def split_credentials(url: str) -> tuple[str, httpx.BasicAuth | None]:
    """`url` without its user:password, and that as Basic auth: httpx then never logs nor
    raises with the credential in a URL."""
    found = _USERINFO.search(url)
    if not found:
        return url, None
    user, _, password = found.group(0)[:-1].partition(":")
    return safe_url(url), httpx.BasicAuth(unquote(user), unquote(password))


def safe_url(url: str) -> str:
    """`url` without its user:password part, for messages and logs."""
    return _USERINFO.sub("", url, count=1)


def _describe(exc: Exception, url: str) -> str:
    """The exception's type and message, without any credential of `url`."""
    text = str(exc)
    found = _USERINFO.search(url)
    if found:
        userinfo = found.group(0)[:-1]
        password = userinfo.partition(":")[2]
        for secret in {userinfo, password, unquote(password), unquote(userinfo)}:
            if secret:
                text = text.replace(secret, "***")
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


def _host(url: str) -> str:
    """The host[:port] a URL is for: the key of its pause."""
    try:
        return urlsplit(url).netloc.rpartition("@")[2]
    except ValueError:  # an invalid URL: httpx will say why
        return safe_url(url)


def _answer(url: str, response: httpx.Response) -> Answer:
    validators = Validators(
        etag=response.headers.get("ETag"), last_modified=response.headers.get("Last-Modified")
    )
    if response.status_code == 304:
        return Answer(304, validators=validators)
    if response.status_code in (404, 410):
        return Answer(404)
    if response.status_code != 200:
        raise UpstreamError(f"{safe_url(url)} answered HTTP {response.status_code}")
    return Answer(200, response.content, validators)
