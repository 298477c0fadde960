"""Talking to an upstream Composer repository: conditional GETs and dist downloads, with
timeouts and a few retries (backoff) on connection errors and 5xx answers.

A host that still fails after the retries is left alone for a short pause: while it is
down, every other document it would serve is answered from the bucket at once (stale-if-
error) instead of each paying the retries, or the timeouts of a host that drops packets.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import urlsplit

import httpx

log = logging.getLogger("satchel.upstream")

USER_AGENT = "satchel-mirror/0.1 (Composer repository mirror)"
CHUNK = 256 * 1024
HOST_PAUSE = 10.0  # seconds a failing host is not asked again


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
        limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
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
        self._check_host(url)
        for attempt in range(self.retries + 1):
            try:
                response = await self.client.get(url, headers=headers)
            except httpx.TransportError as exc:
                await self._retry_or_raise(attempt, url, f"{type(exc).__name__}: {exc}")
                continue
            if response.status_code >= 500:
                await self._retry_or_raise(attempt, url, f"HTTP {response.status_code}")
                continue
            self._down_until.pop(_host(url), None)
            return _answer(url, response)
        raise AssertionError("unreachable")

    async def download(self, url: str, sink: BinaryIO, shasum: str | None) -> bool:
        """Stream a dist into `sink`, checking its SHA-1 when the upstream gave one.
        False when the upstream has no such file."""
        self._check_host(url)
        for attempt in range(self.retries + 1):
            sink.seek(0)
            sink.truncate()
            try:
                digest = hashlib.sha1(usedforsecurity=False)
                async with self.client.stream(
                    "GET", url, headers={"Accept-Encoding": "identity"}
                ) as response:
                    if response.status_code >= 500:
                        await self._retry_or_raise(attempt, url, f"HTTP {response.status_code}")
                        continue
                    self._down_until.pop(_host(url), None)
                    if response.status_code in (404, 410):
                        return False
                    if response.status_code != 200:
                        raise UpstreamError(f"{url} answered HTTP {response.status_code}")
                    async for chunk in response.aiter_bytes(CHUNK):
                        digest.update(chunk)
                        sink.write(chunk)
            except httpx.TransportError as exc:
                await self._retry_or_raise(attempt, url, f"{type(exc).__name__}: {exc}")
                continue
            if shasum and digest.hexdigest() != shasum.lower():
                raise UpstreamError(f"{url}: SHA-1 {digest.hexdigest()} is not the shasum {shasum}")
            sink.seek(0)
            return True
        raise AssertionError("unreachable")

    def _check_host(self, url: str) -> None:
        until = self._down_until.get(_host(url))
        if until is not None and self._clock() < until:
            raise UpstreamError(f"{url}: its host failed less than {HOST_PAUSE:g} s ago")

    async def _retry_or_raise(self, attempt: int, url: str, reason: str) -> None:
        if attempt >= self.retries:
            self._down_until[_host(url)] = self._clock() + HOST_PAUSE
            raise UpstreamError(f"{url}: {reason}")
        delay = self.backoff * 2**attempt
        log.info("upstream %s failed (%s); retry %d in %.2fs", url, reason, attempt + 1, delay)
        await self._sleep(delay)


def _host(url: str) -> str:
    return urlsplit(url).netloc


def _answer(url: str, response: httpx.Response) -> Answer:
    validators = Validators(
        etag=response.headers.get("ETag"), last_modified=response.headers.get("Last-Modified")
    )
    if response.status_code == 304:
        return Answer(304, validators=validators)
    if response.status_code in (404, 410):
        return Answer(404)
    if response.status_code != 200:
        raise UpstreamError(f"{url} answered HTTP {response.status_code}")
    return Answer(200, response.content, validators)
