"""Reusing a warm answer for the same request for up to a second (microcaching).

A warm `/p2/...` request costs ~100 µs of Python in the endpoint stack (routing, the Host
and token gate, the private-name check, the freshness check, the rendering lookup, the
response object), several times what the server itself costs; a reused answer costs ~15 µs,
access log and metrics included. The endpoints decide, with their one set of rules, that
an answer may be reused and for how long (`allow_reuse`): only a 200 served hot (fresh in
this worker, nothing asked of the bucket or an upstream), to a request without a token.
This middleware keeps such an answer's two ASGI messages and sends them again to the same
request (method, path, Host, Accept-Encoding; a request with a query is never kept) until
the earliest of: the endpoint's deadline, `HORIZON` seconds, or a publish or unpublish in
this worker. So a change a rule would see reaches clients at most `HORIZON` late, inside the
TTLs those rules already allow (upstream TTL, changes-feed interval, private-index TTL), and
a local publish at once.

A conditional request (Composer sends If-Modified-Since for the p2 files it holds) is
answered from a kept answer too: its validators are compared by `is_not_modified`, the
function the endpoints use, and a match gets the 304 the endpoint would send (the kept
headers without the body's own: Content-Length, Content-Type, Content-Encoding). An endpoint
that answers a conditional request with a 304 hands over the 200 it would have sent
(`keep_instead`), so a fleet that only revalidates still finds an answer kept.

What stays per request: the access log line and the metrics (this middleware runs inside
`AccessLog`), with the cache outcome the original answer had.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runtime.app.http import VALIDATORS, is_not_modified, parse_http_date
from runtime.app.logs import LOG_SCOPE_KEY, note_cache

HORIZON = 1.0  # seconds an answer is reused at most
# What is remembered at most (clients inventing paths or hosts clear it): entries, and the
# bytes of their bodies and keys. Expired entries go as new ones come (oldest first).
MAX_ENTRIES = 4096
MAX_BYTES = 32 * 1024 * 1024
MAX_KEY_BYTES = 1024  # a longer path or Host is answered, never kept
_REUSE_KEY = "satchel.reuse"  # scope: seconds the endpoint allows its answer to be reused
_FULL_KEY = "satchel.reuse.full"  # scope: the 200 behind a 304 (its two messages)
_KEEPABLE_KEY = "satchel.reuse.keepable"  # scope: this request's answer may be kept
# Request headers that may change an answer: such requests always reach the endpoint (a
# token, a cookie); Host and Accept-Encoding are part of the key; validators pick 200 or 304.
_PERSONAL = frozenset({b"authorization", b"cookie"})
_KEYED = (b"host", b"accept-encoding")
# A body's own headers, which a 304 leaves out (RFC 9110 15.4.5): the 304 is the kept 200's
# headers without these, as `http.metadata_response` builds it (test_reuse compares the two).
_BODY_HEADERS = frozenset({b"content-length", b"content-type", b"content-encoding"})
_EMPTY_BODY: Message = {"type": "http.response.body", "body": b"", "more_body": False}


Key = tuple[str, str, bytes, bytes]  # method, path, Host, Accept-Encoding


def allow_reuse(scope: Scope, seconds: float) -> None:
    """Called by an endpoint whose answer to this request may be sent again to the same
    request for `seconds` (capped at HORIZON)."""
    scope[_REUSE_KEY] = seconds


def wants_the_200(scope: Scope) -> bool:
    """Whether an endpoint answering this request with a 304 should hand over its 200
    (`keep_instead`): only when it allowed reuse and the request's answer can be kept."""
    return _KEEPABLE_KEY in scope and scope.get(_REUSE_KEY, 0.0) > 0


def keep_instead(scope: Scope, full: Response) -> None:
    """Called by an endpoint that allowed reuse and answers a conditional request with a
    304: `full` is its 200 to the same request without validators, kept in the 304's place."""
    start = {"type": "http.response.start", "status": full.status_code, "headers": full.raw_headers}
    scope[_FULL_KEY] = (start, {"type": "http.response.body", "body": full.body})


@dataclass(slots=True)
class _Answer:
    start: Message
    body: Message
    until: float  # monotonic
    epoch: int
    endpoint: Any  # for the metrics' route label
    cache: str  # the cache outcome the original request logged
    size: int  # bytes counted against MAX_BYTES
    etag: str | None  # the validators, unquoted, for conditional requests
    last_modified: datetime | None
    not_modified: Message  # the 304's start

    @classmethod
    def of(cls, start: Message, body: Message, **kept: Any) -> _Answer:
        headers: list[tuple[bytes, bytes]] = start.get("headers", [])
        found = dict(headers)
        etag = found.get(b"etag", b"").decode("latin-1").strip('"') or None
        modified = found.get(b"last-modified")
        last_modified = parse_http_date(modified.decode("latin-1")) if modified else None
        not_modified = {
            "type": "http.response.start",
            "status": 304,
            "headers": [(name, value) for name, value in headers if name not in _BODY_HEADERS],
        }
        return cls(start, body, **kept, etag=etag, last_modified=last_modified,
                   not_modified=not_modified)  # fmt: skip

    def for_request(self, scope: Scope, conditional: bool) -> tuple[Message, Message]:
        """The 200 kept, or the 304 the endpoint would send to the request's validators."""
        if (
            conditional
            and self.etag is not None
            and is_not_modified(Headers(scope=scope), self.etag, self.last_modified)
        ):
            return self.not_modified, _EMPTY_BODY
        return self.start, self.body


class ReuseAnswers:
    """ASGI middleware: answers the endpoints allowed to be reused, sent again verbatim."""

    def __init__(
        self,
        app: ASGIApp,
        epoch: Callable[[], int],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.epoch = epoch  # changes with every local publish or unpublish
        self.clock = clock
        self.answers: dict[Key, _Answer] = {}  # oldest first
        self.bytes = 0  # of the entries in `answers`

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key, conditional = self._key(scope)
        if key is None:
            await self.app(scope, receive, send)
            return
        answer = self.answers.get(key)
        if answer is not None:
            if answer.until > self.clock() and answer.epoch == self.epoch():
                scope["endpoint"] = answer.endpoint
                note_cache(scope, answer.cache)
                start, body = answer.for_request(scope, conditional)
                await send(start)
                await send(body)
                return
            self._drop(key)
        await self._answer_and_keep(key, scope, receive, send)

    def _key(self, scope: Scope) -> tuple[Key | None, bool]:
        """What the answer depends on, or None: a request that is never reused (not a
        GET/HEAD, a query, a token or a cookie, a header the endpoint could read otherwise
        than this key: Host or Accept-Encoding given twice); and whether it has validators."""
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            return None, False
        if scope["query_string"]:
            return None, False
        found: dict[bytes, bytes] = {}
        conditional = False
        for name, value in scope["headers"]:
            if name in _KEYED:
                if name in found:
                    return None, False
                found[name] = value
            elif name in _PERSONAL:
                return None, False
            elif name in VALIDATORS:
                conditional = True
        host, accept = found.get(b"host", b""), found.get(b"accept-encoding", b"")
        path: str = scope["path"]
        if len(path) + len(host) + len(accept) > MAX_KEY_BYTES:
            return None, False
        return (scope["method"], path, host, accept), conditional

    async def _answer_and_keep(self, key: Key, scope: Scope, receive: Receive, send: Send) -> None:
        epoch, began = self.epoch(), self.clock()
        scope[_KEEPABLE_KEY] = True
        messages: list[Message] | None = []

        async def keeping_send(message: Message) -> None:
            nonlocal messages
            if messages is not None:
                # Kept only when the endpoint allowed it by the time it answers, and only
                # a one-piece body: a streamed one (a dist) is never held.
                if (
                    message["type"] == "http.response.start" and _REUSE_KEY not in scope
                ) or message.get("more_body", False):
                    messages = None
                else:
                    messages.append(message)
            await send(message)

        await self.app(scope, receive, keeping_send)
        seconds = min(scope.get(_REUSE_KEY, 0.0), HORIZON)
        if seconds <= 0 or messages is None or len(messages) != 2:
            return
        if messages[0].get("status") == 304 and _FULL_KEY in scope:
            messages = list(scope[_FULL_KEY])
        start, body = messages
        if start.get("status") != 200 or key in self.answers:
            return  # not an answer to keep; or a concurrent request kept it already
        if scope["method"] == "HEAD":
            body = _EMPTY_BODY  # Starlette hands the server a body it never sends
        size = len(body.get("body", b"")) + sum(map(len, key[1:]))
        if size > MAX_BYTES // 16:
            return
        self._expire(began)
        if len(self.answers) >= MAX_ENTRIES or self.bytes + size > MAX_BYTES:
            self.forget()
        fields = scope.get(LOG_SCOPE_KEY) or {}
        cache = fields.get("cache", "-")
        endpoint = scope.get("endpoint")
        self.answers[key] = _Answer.of(
            start, body, until=began + seconds, epoch=epoch, endpoint=endpoint, cache=cache,
            size=size,
        )  # fmt: skip
        self.bytes += size

    def forget(self) -> None:
        """Drop every kept answer."""
        self.answers.clear()
        self.bytes = 0

    def _expire(self, now: float) -> None:
        """Drop the expired entries at the front (entries come in roughly `until` order)."""
        expired = []
        for key, answer in itertools.islice(self.answers.items(), 8):
            if answer.until > now:
                break
            expired.append(key)
        for key in expired:
            self._drop(key)

    def _drop(self, key: Key) -> None:
        answer = self.answers.pop(key)
        self.bytes -= answer.size
