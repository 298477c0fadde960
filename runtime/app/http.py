"""HTTP details shared by the routes: the Host policy, validators, conditional requests,
gzip-encoded metadata, streamed bodies."""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import re
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import anyio
from starlette.datastructures import Headers
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

CHUNK = 256 * 1024
GZIP_LEVEL = 6  # zlib's default: ~5-10x on p2 JSON; 9 costs far more for a few percent
GZIP_OFF_LOOP = 64 * 1024  # bodies larger than this are compressed in a worker thread
METADATA_CACHE_CONTROL = "no-cache"  # clients and proxies may keep it, but must revalidate
DIST_CACHE_CONTROL = "public, max-age=31536000, immutable"


@functools.lru_cache(maxsize=4096)  # the same few validators on every warm response
def http_date(moment: datetime) -> str:
    if moment.tzinfo is None:  # the stores give aware datetimes; be safe with naive ones
        moment = moment.replace(tzinfo=UTC)
    return format_datetime(moment.astimezone(UTC), usegmt=True)


# A host name, IPv4 address or bracketed IPv6 address, and an optional port: nothing that
# could change the meaning of a URL built on it ('/', '@', '"', spaces, ...).
_HOST = re.compile(
    r"(?:[A-Za-z0-9][A-Za-z0-9._-]{0,252}|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?\Z"
)
_DEFAULT_PORTS = {"http": 80, "https": 443}


class HostPolicy:
    """Which Host headers a request may carry. With a public URL, only its host[:port]
    (refused otherwise: its dist and metadata URLs would be wrong, or an attacker's). Without
    one, any syntactically valid Host: the responses then vary on it."""

    def __init__(self, public_url: str | None) -> None:
        self.allowed: frozenset[str] | None = None
        if public_url is not None:
            parts = urlsplit(public_url)
            name = parts.netloc.rpartition("@")[2].lower()
            default = _DEFAULT_PORTS[parts.scheme]
            if parts.port is None:
                self.allowed = frozenset({name, f"{name}:{default}"})
            elif parts.port == default:
                self.allowed = frozenset({name, name.rsplit(":", 1)[0]})
            else:
                self.allowed = frozenset({name})

    def refusal(self, host: str | None) -> JSONResponse | None:
        """None when `host` (the request's Host header) is acceptable, else the answer."""
        host = host or None  # granian passes a missing Host as an empty one
        if self.allowed is not None:
            if host is not None and host.lower() in self.allowed:
                return None
            if host is None:
                return error(400, "the request has no Host header")
            expected = " or ".join(sorted(self.allowed))
            return error(
                421,
                f"this mirror answers for Host {expected} (SATCHEL_PUBLIC_URL), not {host[:100]!r}",
            )
        if host is not None and not _HOST.match(host):
            return error(400, f"invalid Host header {host[:100]!r}")
        return None


@functools.lru_cache(maxsize=256)  # bounded: clients may invent Host names
def base_tag(base: str) -> str:
    """A short digest of the base URL a document was rendered with, for its ETag."""
    return hashlib.sha1(base.encode(), usedforsecurity=False).hexdigest()[:12]


def validator_headers(etag: str, last_modified: datetime | None) -> dict[str, str]:
    headers = {"ETag": f'"{etag}"'}
    if last_modified is not None:
        headers["Last-Modified"] = http_date(last_modified)
    return headers


VALIDATORS = frozenset({b"if-none-match", b"if-modified-since"})  # these make a request conditional


def without_validators(request: Headers) -> Headers:
    """The request's headers as an unconditional request's."""
    return Headers(raw=[(k, v) for k, v in request.raw if k not in VALIDATORS])


def is_not_modified(request: Headers, etag: str, last_modified: datetime | None) -> bool:
    """RFC 9110: If-None-Match when present, else If-Modified-Since (what Composer sends)."""
    if_none_match = request.get("if-none-match")
    if if_none_match is not None:
        tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return "*" in tags or f'"{etag}"' in tags
    since = request.get("if-modified-since")
    if since is None or last_modified is None:
        return False
    client = parse_http_date(since)
    if client is None:
        return False
    if last_modified.tzinfo is None:
        last_modified = last_modified.replace(tzinfo=UTC)
    return last_modified.replace(microsecond=0) <= client  # HTTP dates have whole seconds


@functools.lru_cache(maxsize=256)  # a fleet revalidating one file sends one date
def parse_http_date(value: str) -> datetime | None:
    """An HTTP date (If-Modified-Since, Last-Modified), or None when it is none."""
    try:
        client = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return client if client.tzinfo is not None else client.replace(tzinfo=UTC)


class Encoded:
    """One rendering of a metadata document, and its gzip encoding made once, on the first
    request that accepts it, then kept beside it for every later one."""

    __slots__ = ("_gzip", "plain")

    def __init__(self, plain: bytes) -> None:
        self.plain = plain
        self._gzip: bytes | None = None

    async def gzipped(self) -> bytes:
        if self._gzip is None:
            if len(self.plain) > GZIP_OFF_LOOP:  # a big p2 file would stall the event loop
                self._gzip = await anyio.to_thread.run_sync(_compress, self.plain)
            else:
                self._gzip = _compress(self.plain)
        return self._gzip

    def cost(self) -> int:
        return len(self.plain) + len(self._gzip or b"") + 64


def _compress(body: bytes) -> bytes:
    return gzip.compress(body, GZIP_LEVEL, mtime=0)  # mtime 0: the same bytes every time


@functools.lru_cache(maxsize=64)  # the few Accept-Encoding values clients send
def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an Accept-Encoding header allows gzip (RFC 9110: `q=0` refuses it)."""
    if not accept_encoding:
        return False
    allowed: bool | None = None
    for item in accept_encoding.lower().split(","):
        coding, _, params = item.strip().partition(";")
        coding = coding.strip()
        if coding in ("gzip", "x-gzip", "*"):
            refused = params.replace(" ", "") in ("q=0", "q=0.0", "q=0.00", "q=0.000")
            if coding != "*" or allowed is None:
                allowed = not refused
    return bool(allowed)


async def metadata_response(
    request_headers: Headers,
    rendering: Encoded,
    etag: str,
    last_modified: datetime | None,
    headers: dict[str, str],
    media_type: str = "application/json",
) -> Response:
    """A metadata document, gzip-encoded when the client accepts it: each encoding has its
    own ETag (`-gzip` suffix), so no 304 and no cache mixes the two. `headers` carries
    Cache-Control and Vary (Accept-Encoding is added)."""
    gzipped = accepts_gzip(request_headers.get("accept-encoding"))
    tag = f"{etag}-gzip" if gzipped else etag
    out = {**headers, **validator_headers(tag, last_modified)}
    vary = out.get("Vary")
    out["Vary"] = f"{vary}, Accept-Encoding" if vary else "Accept-Encoding"
    if is_not_modified(request_headers, tag, last_modified):
        return not_modified(out)
    if gzipped:
        out["Content-Encoding"] = "gzip"
        return Response(await rendering.gzipped(), headers=out, media_type=media_type)
    return Response(rendering.plain, headers=out, media_type=media_type)


def not_modified(headers: dict[str, str]) -> Response:
    return Response(status_code=304, headers=headers)


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class StreamResponse(Response):
    """A body read from a stream of known size, closed when done or when the client leaves.

    A seekable stream is a local file (a cache hit): its reads are page-cache fast, so they
    run on the event loop. Anything else (a bucket body) is read in a worker thread. The
    stream is read to its end even when `size` bytes came: a longer body is an error.
    """

    def __init__(
        self, stream: BinaryIO, size: int, headers: dict[str, str], media_type: str
    ) -> None:
        super().__init__(headers=headers, media_type=media_type)
        self.stream = stream
        self.size = size
        self.headers["content-length"] = str(size)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            if scope["method"] == "HEAD":
                await send({"type": "http.response.body", "body": b""})
                return
            async with anyio.create_task_group() as group:

                async def watch() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    group.cancel_scope.cancel()  # stop reading what nobody will get

                group.start_soon(watch)
                await self._pump(send)
                group.cancel_scope.cancel()
        finally:
            with contextlib.suppress(Exception):
                self.stream.close()

    async def _pump(self, send: Send) -> None:
        local = _seekable(self.stream)
        sent = 0
        while True:
            if local:
                chunk = self.stream.read(CHUNK)
            else:
                chunk = await anyio.to_thread.run_sync(self.stream.read, CHUNK)
            if not chunk:
                break
            sent += len(chunk)
            if sent > self.size:
                raise RuntimeError(f"the stored dist is larger than its {self.size} bytes")
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        if sent != self.size:
            # The connection is closed short of Content-Length: the client sees the truncation.
            raise RuntimeError(f"the stored dist ended after {sent} of {self.size} bytes")
        await send({"type": "http.response.body", "body": b""})


def _seekable(stream: Any) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, ValueError):
        return False
