"""Running the app under uvicorn: one process, or a supervisor with N workers.

With N > 1 uvicorn binds the listening socket itself without marking it as TCP, so the
event loop never sets TCP_NODELAY on accepted connections and every keep-alive response
waits ~40 ms for a delayed ACK (uvicorn #3149; uvloop happens to set it, asyncio does not).
Linux copies TCP_NODELAY from the listening socket to the sockets `accept()` returns, so
it is set once on the listener here.
"""

from __future__ import annotations

import logging
import socket
import sys

import uvicorn
from uvicorn.supervisors import Multiprocess

from runtime.app.config import ServeConfig
from runtime.app.logs import logging_config

APP = "runtime.app.main:app_from_env"
GRACEFUL_SHUTDOWN_SECONDS = 25  # inside Kubernetes' default 30 s termination grace period
STARTUP_FAILURE = 3  # uvicorn's own exit code for it


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
    Multiprocess(settings, sockets=[bind_listener(settings)]).run()
