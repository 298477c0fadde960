"""Running the app under granian (a Rust HTTP server; its ASGI interface, with lifespan).

Why granian and not uvicorn: with 2 workers a bare ASGI callable answers a small body at
~0.5x nginx on uvicorn and 0.6-0.7x on granian, whose HTTP parsing, keep-alive and socket
writes happen in Rust, outside the GIL. A reused warm answer (reuse.py) costs ~15 µs of
Python on top of that, which only the faster server leaves room for.

What the server bounds for us:
- A request's head: hyper's read buffer stops growing at `MAX_HEAD_BYTES`; a request line
  and headers still unfinished then get 431 and the connection is closed (an endless header
  costs nothing). A complete head that arrived in one read may be up to about twice that.
- Connections: `SATCHEL_MAX_CONNECTIONS` per worker are served at once (granian's
  backpressure); more wait in the listen backlog until one closes, and idle keep-alive
  connections are closed after `IDLE_SECONDS`, so waiting is short.
- TCP_NODELAY on every connection (tokio's listener), so keep-alive answers never wait for
  a delayed ACK.

SIGTERM: the listener closes at once, open requests (a long dist stream included) finish
within `GRACEFUL_SHUTDOWN_SECONDS`, then the lifespan shutdown runs and the process exits 0.
A worker that dies is started again (after 3.5 s); one that dies again within ~5 s of that
stops the whole server with exit code 1, so that the container restarts. With several
workers failing their startup in turn, granian's check does not trip and it keeps starting
them: the liveness probe (no answer) is what restarts such a container. The lifespan does
no I/O that can fail on a bad bucket (see main.py), so this takes a broken local disk.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import socket

from granian.constants import HTTPModes, Interfaces, Loops
from granian.http import HTTP1Settings
from granian.server import MPServer  # what `granian.Granian` is on a GIL build

from runtime import metrics
from runtime.app.config import ServeConfig
from runtime.app.logs import logging_config
from runtime.errors import ConfigError

APP = "runtime.app.main:app_from_env"
GRACEFUL_SHUTDOWN_SECONDS = 25  # inside Kubernetes' default 30 s termination grace period
MAX_HEAD_BYTES = 64 * 1024  # request line and headers; nginx's large_client_header_buffers
IDLE_SECONDS = 30  # a keep-alive connection's wait for its next request's head


def granian_server(config: ServeConfig) -> MPServer:
    return MPServer(
        APP,
        address=config.host,
        port=config.port,
        interface=Interfaces.ASGI,  # with lifespan
        factory=True,
        workers=config.workers,
        loop=Loops.uvloop,
        http=HTTPModes.http1,  # TLS and HTTP/2 end at the ingress
        websockets=False,
        backpressure=config.max_connections,
        http1_settings=HTTP1Settings(
            header_read_timeout=IDLE_SECONDS * 1000, max_buffer_size=MAX_HEAD_BYTES
        ),
        log_dictconfig=logging_config(),
        log_access=False,  # ours is structured (runtime.app.logs)
        workers_kill_timeout=GRACEFUL_SHUTDOWN_SECONDS,
        respawn_failed_workers=True,
    )


def refuse_a_port_in_use(host: str, port: int) -> None:
    """ConfigError when something listens on host:port already. granian's workers each bind
    with SO_REUSEPORT, so a second `satchel serve` on a busy port would start and silently
    share its connections with the first; a plain bind says so first."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not "in use"
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port}: {exc.strerror} (another process has it; "
                "set SATCHEL_PORT or --port)"
            ) from None


def run(config: ServeConfig) -> None:
    """Serve until SIGINT/SIGTERM; open requests finish before the workers exit."""
    logging.getLogger("satchel").info("starting %d workers", config.workers)
    # Each worker writes its metrics into this directory; /metrics merges them. Workers are
    # started fresh (spawn), not forked: prometheus-client picks its multiprocess value
    # store at import, and this process imported it before the directory was set.
    if metrics.MULTIPROC_VAR not in os.environ:
        metrics.prepare_multiprocess()
    multiprocessing.set_start_method("spawn", force=True)
    granian_server(config).serve()
