"""The app behind granian's RSGI interface: a reused warm answer (runtime.app.reuse) goes
out in one call, everything else through the ASGI app by a small adapter.

Why: with 2 workers granian answers a small body at ~0.6-0.7x nginx over ASGI and ~0.75-0.85x
over RSGI (one Rust call per response instead of an ASGI scope, two message dicts and two
awaited sends). The warm answers are what a fleet of Composer clients asks for most, so they
take the short way: the same kept answer, the same access-log line and metrics as the ASGI
path writes, and no rule of their own (only the endpoints decide what may be reused).

The adapter gives the ASGI app what an ASGI server would: the scope (path decoded, headers
as sent, lower case), the request body as it streams in, `http.disconnect` once the client
leaves, one-piece responses in one call and streamed ones (dists) through a stream whose
close short of Content-Length the client sees as a truncation; the lifespan runs in the
worker's `__rsgi_init__` and `__rsgi_del__`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from granian._granian import RSGIHTTPProtocol as HTTPProtocol
from granian._granian import RSGIProtocolClosed as ProtocolClosed
from granian.rsgi import Scope
from starlette.applications import Starlette
from starlette.types import Message

from runtime import metrics
from runtime.app.logs import batched_lines, request_record
from runtime.app.reuse import Answers, request_key

log = logging.getLogger("satchel.server")
_ASGI = {"version": "3.0", "spec_version": "2.3"}
_HTTP_VERSIONS = {"1": "1.0", "1.0": "1.0", "1.1": "1.1", "2": "2"}


class RsgiFront:
    def __init__(self, app: Starlette, access_log_fd: int = 1) -> None:
        self.app = app
        self.answers: Answers = app.state.answers
        self.emit = batched_lines(access_log_fd)
        self.lifespan = _Lifespan(app)

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self.lifespan.startup())

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self.lifespan.shutdown())

    async def __rsgi__(self, scope: Scope, protocol: HTTPProtocol) -> None:
        key = request_key(scope.method, scope.path, scope.query_string, scope.headers.items())
        answer = self.answers.fresh(key) if key is not None else None
        if answer is None:
            await serve_asgi(self.app, scope, protocol)
            return
        began = time.perf_counter()
        protocol.response_bytes(answer.status, answer.headers, answer.payload)
        seconds = time.perf_counter() - began
        sent = len(answer.payload)
        self.emit(
            request_record(scope.method, scope.path, answer.status, sent, seconds, answer.cache)
        )
        metrics.observe_request(answer.route, answer.status, seconds, answer.cache)


async def serve_asgi(app: Starlette, scope: Scope, protocol: HTTPProtocol) -> None:
    """One request through the ASGI app."""
    asgi_scope: dict[str, Any] = {
        "type": "http",
        "asgi": _ASGI,
        "http_version": _HTTP_VERSIONS.get(scope.http_version, scope.http_version),
        "method": scope.method,
        "scheme": scope.scheme,
        "path": scope.path,
        "raw_path": scope.path.encode(),
        "query_string": scope.query_string.encode("latin-1"),
        "root_path": "",
        "headers": [(n.encode("latin-1"), v.encode("latin-1")) for n, v in scope.headers.items()],
        "client": _address(scope.client),
        "server": _address(scope.server),
        "state": {},
    }
    body: AsyncIterator[bytes] = protocol.__aiter__()
    body_done = False
    status, headers = 500, []  # what the client gets if the app never answers
    stream: Any = None
    answered = False

    async def receive() -> Message:
        nonlocal body_done
        if not body_done:
            try:
                chunk = await body.__anext__()
            except StopAsyncIteration:
                body_done = True
                return {"type": "http.request", "body": b"", "more_body": False}
            return {"type": "http.request", "body": chunk, "more_body": True}
        await protocol.client_disconnect()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status, headers, stream, answered
        if message["type"] == "http.response.start":
            status = message["status"]
            headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in message["headers"]]
            return
        if message["type"] != "http.response.body" or answered:
            return
        chunk, more = message.get("body", b""), message.get("more_body", False)
        if stream is None and not more:
            protocol.response_bytes(status, headers, chunk)
            answered = True
            return
        if stream is None:
            stream = protocol.response_stream(status, headers)
        if chunk:
            await stream.send_bytes(chunk)  # ProtocolClosed once the client is gone
        answered = not more

    try:
        await app(asgi_scope, receive, send)
    except ProtocolClosed:
        pass  # the client left mid-response
    except Exception:
        # Starlette answered 500 already when it could; a stream cut short stays cut short.
        log.exception("the app failed on %s %s", scope.method, scope.path)
    if stream is None and not answered:
        protocol.response_bytes(500, [("content-type", "text/plain")], b"Internal Server Error")


def _address(value: str) -> tuple[str, int] | None:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


class _Lifespan:
    """The ASGI lifespan protocol, driven from the worker's init and del hooks."""

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self.task: asyncio.Future[None] | None = None

    async def startup(self) -> None:
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.outbox: asyncio.Queue[Message] = asyncio.Queue()
        scope = {"type": "lifespan", "asgi": _ASGI, "state": {}}
        self.task = asyncio.ensure_future(self.app(scope, self.inbox.get, self.outbox.put))
        await self.inbox.put({"type": "lifespan.startup"})
        await self._expect("lifespan.startup.complete")

    async def shutdown(self) -> None:
        if self.task is None or self.task.done():
            return
        await self.inbox.put({"type": "lifespan.shutdown"})
        await self._expect("lifespan.shutdown.complete")

    async def _expect(self, wanted: str) -> None:
        assert self.task is not None
        getter = asyncio.ensure_future(self.outbox.get())
        either: set[asyncio.Future[Any]] = {getter, self.task}
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if not getter.done():
            getter.cancel()
            self.task.result()  # the app's own exception
            raise RuntimeError(f"the app's lifespan ended before {wanted}")
        message = getter.result()
        if message["type"] != wanted:
            raise RuntimeError(f"lifespan: {message.get('message') or message['type']}")
