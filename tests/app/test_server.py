"""granian as `satchel serve` runs it: several workers without Nagle stalls, clean exits on
SIGTERM, a worker that dies started again, a port in use refused (the drain of a long
response: test_drain)."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import statistics
import subprocess
import time
from pathlib import Path

import psutil

from tests.app.processes import ServeProcess
from tests.cli_helpers import SATCHEL


def test_two_workers_answer_keep_alive_requests_without_a_delayed_ack_stall(
    pod_env: dict[str, str], tmp_path: Path
) -> None:
    with ServeProcess(pod_env, tmp_path, workers=2) as server:
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
    assert server.stop() == 0
    log = (tmp_path / "serve.err").read_text()
    assert "Granian shutdown completed" in log
    assert "Traceback" not in log


def _workers(main: psutil.Process) -> list[psutil.Process]:
    """The worker processes (spawned: multiprocessing's resource tracker is a child too)."""
    workers = []
    for child in main.children():
        try:
            if "resource_tracker" not in " ".join(child.cmdline()):
                workers.append(child)
        except psutil.Error:  # a worker that just died (a zombie until reaped)
            continue
    return workers


def test_a_worker_that_dies_is_started_again(pod_env: dict[str, str], tmp_path: Path) -> None:
    with ServeProcess(pod_env, tmp_path, workers=2) as server:
        assert server.process is not None
        main = psutil.Process(server.process.pid)
        workers = _workers(main)
        assert len(workers) == 2
        os.kill(workers[0].pid, signal.SIGKILL)
        deadline = time.monotonic() + 30  # granian waits 3.5 s, then a fresh interpreter
        while time.monotonic() < deadline:
            alive = [w for w in _workers(main) if w.status() != psutil.STATUS_ZOMBIE]
            if len(alive) == 2 and workers[0].pid not in {w.pid for w in alive}:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the killed worker was not replaced within 30 s")
        # Ten answers in a row once the new worker listens (while it binds, a connection
        # may be refused: seen once in CI).
        answered, deadline = 0, time.monotonic() + 15
        while answered < 10 and time.monotonic() < deadline:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
                connection.request("GET", "/healthz")
                assert connection.getresponse().status == 200
                connection.close()
                answered += 1
            except ConnectionRefusedError:
                answered = 0
                time.sleep(0.2)
        assert answered == 10


def test_a_port_in_use_is_refused_not_shared(pod_env: dict[str, str], tmp_path: Path) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        done = subprocess.run(
            [SATCHEL, "serve", "--port", str(port)],
            env={**os.environ, **pod_env},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and "--port" in done.stderr
