"""Structured logs: one JSON line per request on stdout, JSON app logs on stderr.

Each line is written with a single `os.write`: with several workers sharing one pipe, lines
under PIPE_BUF (4 KiB) then never interleave, which buffered `print` does not promise.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Handlers record their cache outcome here (see `note_cache`).
LOG_SCOPE_KEY = "satchel.log"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def write_line(fd: int, record: dict[str, Any]) -> None:
    os.write(fd, json.dumps(record, separators=(",", ":"), default=str).encode() + b"\n")


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
    """A dictConfig for uvicorn (applied in every worker) and for our own loggers."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "runtime.app.logs.JsonFormatter"}},
        "handlers": {"stderr": handler},
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            # Our access log replaces uvicorn's text one.
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            "satchel": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
        },
    }


def note_cache(scope: Scope, outcome: str) -> None:
    """Record how a request was served (hot, stored, miss, revalidated, stale, ...)."""
    fields = scope.get(LOG_SCOPE_KEY)
    if fields is not None:
        fields["cache"] = outcome


class AccessLog:
    """ASGI middleware: method, path, status, bytes, duration and cache outcome per request."""

    def __init__(
        self,
        app: ASGIApp,
        fd: int = 1,
        emit: Callable[[int, dict[str, Any]], None] = write_line,
    ) -> None:
        self.app = app
        self.fd = fd
        self.emit = emit

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
            self.emit(
                self.fd,
                {
                    "time": _now(),
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "bytes": sent,
                    "duration_ms": round((time.perf_counter() - start) * 1000, 2),
                    "cache": fields["cache"],
                },
            )
