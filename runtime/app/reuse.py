"""Reusing a warm answer for the same request for up to a second (microcaching).

A warm `/p2/...` request costs ~100 µs of Python in the endpoint stack (routing, the Host
and token gate, the private-name check, the freshness check, the rendering lookup, the
response object), several times what the server itself costs. The endpoints decide, with
their one set of rules, that an answer may be reused and for how long (`allow_reuse`):
only a 200 served hot (fresh in this worker, nothing asked of the bucket or an upstream), to
a request without a token. This middleware keeps such an answer's two ASGI messages and
sends them again to the same request (method, path and query, Host, Accept-Encoding) until
the earliest of: the endpoint's deadline, `HORIZON` seconds, or a publish or unpublish in
this worker. So a change a rule would see reaches clients at most `HORIZON` late, inside the
TTLs those rules already allow (upstream TTL, changes-feed interval, private-index TTL), and
a local publish at once.

What stays per request: the access log line and the metrics (this middleware runs inside
`AccessLog`; the RSGI front writes the same), with the cache outcome the original answer
had. Under `satchel serve` the RSGI front (runtime.app.rsgi) answers from `Answers` before
any ASGI work; this middleware keeps what the endpoints allow, and answers in-process
clients (tests) the same way.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runtime.app.logs import LOG_SCOPE_KEY, note_cache

HORIZON = 1.0  # seconds an answer is reused at most
# What is remembered at most (clients inventing paths or hosts clear it): entries, and the
# bytes of their bodies and keys. Expired entries go as new ones come (oldest first).
MAX_ENTRIES = 4096
MAX_BYTES = 32 * 1024 * 1024
MAX_KEY_BYTES = 1024  # a longer path or Host is answered, never kept
_REUSE_KEY = "satchel.reuse"  # scope: seconds the endpoint allows its answer to be reused
# Request headers that change an answer or its status: such requests always reach the
# endpoint (a token, a conditional request), and Host/Accept-Encoding are part of the key.
_PERSONAL = frozenset({"authorization", "if-none-match", "if-modified-since", "cookie"})


def allow_reuse(scope: Scope, seconds: float) -> None:
    """Called by an endpoint whose answer to this request may be sent again to the same
    request for `seconds` (capped at HORIZON)."""
    scope[_REUSE_KEY] = seconds


Key = tuple[str, str, str, str]  # method, path, Host, Accept-Encoding


def request_key(
    method: str, path: str, query: bytes | str, headers: Iterable[tuple[str, str]]
) -> Key | None:
    """What the answer depends on, or None: a request that is never reused (not a GET or
    HEAD, a query, a token or validators, a Host or Accept-Encoding given twice: the
    endpoint could read another value than this key's). Header names in lower case."""
    if method not in ("GET", "HEAD") or query:
        return None
    host = accept = None
    for name, value in headers:
        if name == "host":
            if host is not None:
                return None
            host = value
        elif name == "accept-encoding":
            if accept is not None:
                return None
            accept = value
        elif name in _PERSONAL:
            return None
    host, accept = host or "", accept or ""
    if len(path) + len(host) + len(accept) > MAX_KEY_BYTES:
        return None
    return method, path, host, accept


@dataclass(slots=True)
class Answer:
    start: Message  # the ASGI messages, sent again as they are
    body: Message
    until: float  # monotonic
    epoch: int
    endpoint: Any  # for the metrics' route label
    cache: str  # the cache outcome the original request logged
    size: int  # bytes counted against MAX_BYTES
    # The same answer for granian's RSGI interface (runtime.app.rsgi)
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    payload: bytes = b""

    @property
    def route(self) -> str:
        return getattr(self.endpoint, "__name__", "unmatched")


class Answers:
    """The answers kept, oldest first: looked up by the ASGI middleware below and by the
    RSGI front (runtime.app.rsgi), kept only by the middleware."""

    def __init__(self, epoch: Callable[[], int], clock: Callable[[], float] = time.monotonic):
        self.epoch = epoch  # changes with every local publish or unpublish
        self.clock = clock
        self.answers: dict[Key, Answer] = {}
        self.bytes = 0  # of the entries in `answers`

    def fresh(self, key: Key) -> Answer | None:
        answer = self.answers.get(key)
        if answer is None:
            return None
        if answer.until > self.clock() and answer.epoch == self.epoch():
            return answer
        self._drop(key)
        return None

    def keep(
        self,
        key: Key,
        start: Message,
        body: Message,
        scope: Scope,
        began: float,
        seconds: float,
        epoch: int,
    ) -> None:
        if start.get("status") != 200 or key in self.answers:
            return  # not an answer to keep; or a concurrent request kept it already
        payload = body.get("body", b"")
        size = len(payload) + sum(map(len, key[1:]))
        if size > MAX_BYTES // 16:
            return
        self._expire(began)
        if len(self.answers) >= MAX_ENTRIES or self.bytes + size > MAX_BYTES:
            self.answers.clear()
            self.bytes = 0
        fields = scope.get(LOG_SCOPE_KEY) or {}
        headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in start["headers"]]
        self.answers[key] = Answer(
            start,
            body,
            began + seconds,
            epoch,
            scope.get("endpoint"),
            fields.get("cache", "-"),
            size,
            start["status"],
            headers,
            payload,
        )
        self.bytes += size

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


class ReuseAnswers:
    """ASGI middleware: answers the endpoints allowed to be reused, kept in `answers` and
    sent again verbatim."""

    def __init__(self, app: ASGIApp, answers: Answers) -> None:
        self.app = app
        self.answers = answers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = None
        if scope["type"] == "http":
            headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in scope["headers"]]
            key = request_key(scope["method"], scope["path"], scope["query_string"], headers)
        if key is None:
            await self.app(scope, receive, send)
            return
        answer = self.answers.fresh(key)
        if answer is not None:
            scope["endpoint"] = answer.endpoint
            note_cache(scope, answer.cache)
            await send(answer.start)
            await send(answer.body)
            return
        await self._answer_and_keep(key, scope, receive, send)

    async def _answer_and_keep(self, key: Key, scope: Scope, receive: Receive, send: Send) -> None:
        epoch, began = self.answers.epoch(), self.answers.clock()
        messages: list[Message] | None = []

        async def keeping_send(message: Message) -> None:
            nonlocal messages
            if messages is not None:
                # Kept only when the endpoint allowed it by the time it answers, and only
                # a one-piece body: a streamed one (a dist) is never held.
                unasked = message["type"] == "http.response.start" and _REUSE_KEY not in scope
                if unasked or message.get("more_body", False):
                    messages = None
                else:
                    messages.append(message)
            await send(message)

        await self.app(scope, receive, keeping_send)
        seconds = min(scope.get(_REUSE_KEY, 0.0), HORIZON)
        if seconds > 0 and messages is not None and len(messages) == 2:
            self.answers.keep(key, messages[0], messages[1], scope, began, seconds, epoch)
