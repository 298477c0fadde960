"""Structured logs: one JSON line per request on stdout, JSON app logs on stderr.

Each line is written with a single `os.write`: with several workers sharing one pipe, lines
under PIPE_BUF (4 KiB) then never interleave, which buffered `print` does not promise.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import select
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runtime import metrics

# Handlers record their cache outcome here (see `note_cache`).
LOG_SCOPE_KEY = "satchel.log"


_second: tuple[int, str] = (-1, "")


def _now() -> str:
    """ISO time with milliseconds; the part up to the second is formatted once per second."""
    global _second
    now = time.time()
    whole = int(now)
    if whole != _second[0]:
        stamp = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second = (whole, stamp)
    return f"{_second[1]}.{int((now - whole) * 1000):03d}Z"


def _write_now(fd: int, record: dict[str, Any]) -> None:
    _write_all(fd, _encode(record))


def _encode(record: dict[str, Any]) -> bytes:
    """One JSON line: the same as json.dumps (compact), built by hand for the access log's
    plain values (json.dumps costs ~15 µs a line, a noticeable part of a warm request)."""
    fields = ",".join([f'"{key}":{_json_value(value)}' for key, value in record.items()])
    return ("{" + fields + "}\n").encode()


def _json_value(value: Any) -> str:
    kind = type(value)
    if kind is str:
        if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
            return f'"{value}"'
        return json.dumps(value)
    if kind is int or kind is float:
        return repr(value)
    return json.dumps(value, default=str)  # bool, None, subclasses (an IntEnum: its number)


class _BatchedLines:
    """Access-log lines written together once per event-loop turn: under load, one write(2)
    for many requests. Each write stays within PIPE_BUF, so workers sharing a pipe never
    interleave inside a line."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._pending: list[bytes] = []

    def add(self, line: bytes) -> None:
        self._pending.append(line)
        if len(self._pending) == 1:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no loop (a synchronous caller): write now
                self.flush()

    def flush(self) -> None:
        lines, self._pending = self._pending, []
        chunk = b""
        for line in lines:
            if chunk and len(chunk) + len(line) > select.PIPE_BUF:
                _write_all(self.fd, chunk)
                chunk = b""
            chunk += line
        if chunk:
            _write_all(self.fd, chunk)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _now(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def logging_config(level: str = "info") -> dict[str, Any]:
    """A dictConfig for granian (applied in every worker) and for our own loggers."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "runtime.app.logs.JsonFormatter"}},
        "handlers": {"stderr": handler},
        "loggers": {
            "_granian": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            # Our access log replaces granian's text one.
            "granian.access": {"handlers": [], "level": "WARNING", "propagate": False},
            "satchel": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            # httpx logs every request's URL at INFO, signed redirect URLs (tokens in their
            # query) included: never. Our own lines name URLs without credentials.
            "httpx": {"handlers": [], "level": "WARNING", "propagate": False},
            "httpcore": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }


def note_cache(scope: Scope, outcome: str) -> None:
    """Record how a request was served (hot, stored, miss, revalidated, stale, ...)."""
    fields = scope.get(LOG_SCOPE_KEY)
    if fields is not None:
        fields["cache"] = outcome


def _count(scope: Scope, status: int, seconds: float, cache: str) -> None:
    """The request in the metrics: its route (the endpoint's name, a fixed set), never its
    path."""
    endpoint = scope.get("endpoint")
    route = getattr(endpoint, "__name__", "unmatched") if endpoint is not None else "unmatched"
    metrics.observe_request(route, status, seconds, cache)


def note_request_id(scope: Scope, request_id: str) -> None:
    """Record the id an error body gave the client (its details are on the app log line)."""
    fields = scope.get(LOG_SCOPE_KEY)
    if fields is not None:
        fields["request_id"] = request_id


class AccessLog:
    """ASGI middleware: method, path, status, bytes, duration and cache outcome per request."""

    def __init__(
        self,
        app: ASGIApp,
        fd: int = 1,
        emit: Callable[[int, dict[str, Any]], None] | None = None,
        *,
        batched: bool = False,
    ) -> None:
        self.app = app
        self.fd = fd
        # Batched: a line may reach the fd just after its response (same loop turn).
        lines = _BatchedLines(fd)
        default = (lambda _, record: lines.add(_encode(record))) if batched else _write_now
        self.emit = emit or default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        fields: dict[str, Any] = {"cache": "-"}
        scope[LOG_SCOPE_KEY] = fields
        status, sent = 500, 0  # what the client sees if the app raises before answering

        async def counting_send(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            seconds = time.perf_counter() - start
            record = {
                "time": _now(),
                "method": scope["method"],
                "path": scope["path"],
                "status": status,
                "bytes": sent,
                "duration_ms": round(seconds * 1000, 2),
                "cache": fields["cache"],
            }
            if "request_id" in fields:  # an error body gave the client this id
                record["request_id"] = fields["request_id"]
            self.emit(self.fd, record)
            _count(scope, status, seconds, fields["cache"])
