"""uvicorn as `satchel serve` runs it: several workers without Nagle stalls, clean exits."""

from __future__ import annotations

import http.client
import signal
import socket
import statistics
import sys
import time
from pathlib import Path

from runtime.app.config import load_serve_config
from runtime.app.server import bind_listener, uvicorn_config
from tests.app.processes import ServeProcess


def accepted_nodelay(listener: socket.socket) -> int:
    listener.listen()
    with socket.create_connection(listener.getsockname()) as client:
        accepted, _ = listener.accept()
        with accepted:
            client.sendall(b"x")
            return accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_accepted_connections_inherit_tcp_nodelay_from_the_listener() -> None:
    config = uvicorn_config(load_serve_config({}), port=0, workers=2)
    with bind_listener(config) as ours:
        assert accepted_nodelay(ours) != 0
    with config.bind_socket() as uvicorns:  # what uvicorn binds for --workers N on its own
        assert uvicorns.proto == 0  # not marked TCP: asyncio leaves Nagle on (uvicorn #3149)
        assert accepted_nodelay(uvicorns) == 0


def test_two_asyncio_workers_answer_keep_alive_requests_without_a_delayed_ack_stall(
    pod_env: dict[str, str], tmp_path: Path
) -> None:
    # uvloop sets TCP_NODELAY itself; the plain asyncio loop shows whether we do.
    script = (
        "from runtime.app.config import load_serve_config\n"
        "from runtime.app.server import run\n"
        "run(load_serve_config(), loop='asyncio')\n"
    )
    server = ServeProcess(pod_env, tmp_path, "asyncio", workers=2)
    server.env = {**pod_env, "SATCHEL_PORT": str(server.port), "SATCHEL_WORKERS": "2"}
    server.command = [sys.executable, "-c", script]
    with server:
        connection = http.client.HTTPConnection("127.0.0.1", server.port)
        timings = []
        for _ in range(30):
            start = time.perf_counter()
            connection.request("GET", "/healthz")
            assert connection.getresponse().read() == b'{"ok":true}'
            timings.append(time.perf_counter() - start)
        connection.close()
        # Nagle with delayed ACKs costs ~40 ms per request; without it this is ~0.5 ms.
        assert statistics.median(timings) < 0.010
    assert server.process is None


def test_sigterm_stops_serve_cleanly(pod_env: dict[str, str], tmp_path: Path) -> None:
    server = ServeProcess({**pod_env, "SATCHEL_UPSTREAMS": "x=http://127.0.0.1:9"}, tmp_path)
    server.start()
    # uvicorn shuts down gracefully, then re-raises the signal it caught, as it should.
    assert server.stop() == -signal.SIGTERM
    log = (tmp_path / "serve.err").read_text()
    assert "Application shutdown complete" in log
