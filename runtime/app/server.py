"""Running the app under uvicorn: one process, or a supervisor with N workers.

With N > 1 uvicorn binds the listening socket itself without marking it as TCP, so the
event loop never sets TCP_NODELAY on accepted connections and every keep-alive response
waits ~40 ms for a delayed ACK (uvicorn #3149; uvloop happens to set it, asyncio does not).
Linux copies TCP_NODELAY from the listening socket to the sockets `accept()` returns, so
it is set once on the listener here.

httptools buffers an unfinished request line or header without limit (two connections each
sending an unfinished 150 MiB header took a worker from 59 to 430 MiB), so the protocol is
uvicorn's own with a byte count until the headers complete: past `MAX_HEAD_BYTES` the client
gets 431 and the connection is closed. Connections beyond `SATCHEL_MAX_CONNECTIONS` (per
worker; uvicorn's `limit_concurrency`) get 503 at once, so memory stays bounded by about
connections x (MAX_HEAD_BYTES + one socket read).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.supervisors import Multiprocess

from runtime import metrics
from runtime.app.config import ServeConfig
from runtime.app.logs import logging_config

APP = "runtime.app.main:app_from_env"
GRACEFUL_SHUTDOWN_SECONDS = 25  # inside Kubernetes' default 30 s termination grace period
STARTUP_FAILURE = 3  # uvicorn's own exit code for it
MAX_HEAD_BYTES = 64 * 1024  # request line and headers; nginx's large_client_header_buffers


def _refusal(status: bytes, message: str) -> bytes:
    body = b'{"error":"' + message.encode() + b'"}'
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
    )


TOO_LARGE = _refusal(
    b"431 Request Header Fields Too Large",
    f"the request line and headers are larger than {MAX_HEAD_BYTES} bytes",
)
TOO_MANY = _refusal(b"503 Service Unavailable", "too many connections; retry later")


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bound on the bytes of an unfinished head and an
    immediate 503 for connections beyond `limit_concurrency`. Its only per-request cost is
    a counter."""

    _head_pending = True  # between requests or inside a head: count what comes
    _head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.limit_concurrency is not None and len(self.connections) >= self.limit_concurrency:
            transport.write(TOO_MANY)
            transport.close()

    def data_received(self, data: bytes) -> None:
        if not self._head_pending:
            super().data_received(data)
            return
        if self.transport.is_closing():
            return
        self._head_bytes += len(data)
        super().data_received(data)
        # Still inside a head after this read: the parser holds at most this many bytes.
        if self._head_pending and self._head_bytes > MAX_HEAD_BYTES:
            self._refuse_head()

    def on_headers_complete(self) -> None:
        self._head_pending = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._head_pending, self._head_bytes = True, 0

    def _refuse_head(self) -> None:
        if self.transport.is_closing():
            return
        self.logger.warning("Request head larger than %d bytes: refused.", MAX_HEAD_BYTES)
        if self.cycle is None or self.cycle.response_complete:  # never inside a response
            self.transport.write(TOO_LARGE)
        self.transport.close()


def uvicorn_config(config: ServeConfig, **overrides: object) -> uvicorn.Config:
    options: dict[str, object] = {
        "factory": True,
        "host": config.host,
        "port": config.port,
        "workers": config.workers,
        "log_config": logging_config(),
        "access_log": False,  # ours is structured (runtime.app.logs)
        "server_header": False,
        "lifespan": "on",
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
        "http": f"{__name__}:BoundedHttpToolsProtocol",
        "limit_concurrency": config.max_connections,
    }
    options.update(overrides)
    return uvicorn.Config(APP, **options)  # type: ignore[arg-type]


def bind_listener(config: uvicorn.Config) -> socket.socket:
    sock = config.bind_socket()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by accepted sockets
    return sock


def run(config: ServeConfig, **uvicorn_options: object) -> None:
    """Serve until SIGINT/SIGTERM; uvicorn drains open requests before exiting."""
    settings = uvicorn_config(config, **uvicorn_options)
    if config.workers == 1:
        server = uvicorn.Server(settings)
        server.run()
        if not server.started:
            sys.exit(STARTUP_FAILURE)
        return
    logging.getLogger("satchel").info("starting %d workers", config.workers)
    # Each worker writes its metrics into this directory; /metrics merges them.
    if metrics.MULTIPROC_VAR not in os.environ:
        metrics.prepare_multiprocess()
    Multiprocess(settings, sockets=[bind_listener(settings)]).run()
