"""The drain on SIGTERM, on a real `satchel serve` with two workers: a dist stream a client
is reading finishes byte for byte, new connections are refused meanwhile, and the process
exits 0 once the stream is done (Kubernetes sends SIGTERM after the preStop sleep)."""

from __future__ import annotations

import hashlib
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.local.composer_repo import ComposerRepo
from runtime.app.server import GRACEFUL_SHUTDOWN_SECONDS
from tests.app.conftest import dist_in_bucket
from tests.app.processes import ServeProcess

MiB = 1024 * 1024
DIST_BYTES = 48 * MiB
READ_RATE = 16 * MiB  # bytes per second the client takes: the stream lasts ~3 s


@pytest.fixture
def stored_dist(pod_env: dict[str, str], alias: str) -> Iterator[tuple[str, bytes]]:
    with dist_in_bucket(pod_env, alias, DIST_BYTES) as stored:
        yield stored


def _read_head(client: socket.socket) -> tuple[bytes, bytes]:
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = client.recv(65536)
        assert chunk, "closed before the head"
        received += chunk
    head, _, rest = received.partition(b"\r\n\r\n")
    return head, rest


def test_sigterm_lets_an_open_dist_stream_finish_and_refuses_new_connections(
    pod_env: dict[str, str],
    repo: ComposerRepo,
    alias: str,
    stored_dist: tuple[str, bytes],
    tmp_path: Path,
) -> None:
    path, payload = stored_dist
    env = {**pod_env, "SATCHEL_UPSTREAMS": f"{alias}={repo.url}"}
    server = ServeProcess(env, tmp_path / "logs", workers=2).start()
    assert server.process is not None
    try:
        client = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)  # slow means slow
        client.sendall(f"GET {path} HTTP/1.1\r\nHost: mirror.test\r\n\r\n".encode())
        head, body = _read_head(client)
        assert head.startswith(b"HTTP/1.1 200 ")
        server.process.send_signal(signal.SIGTERM)  # mid-stream: almost all still to come
        terminated = time.monotonic()
        refused_new = False
        while len(body) < DIST_BYTES:
            chunk = client.recv(256 * 1024)
            assert chunk, f"cut off after {len(body)} of {DIST_BYTES} bytes"
            body += chunk
            time.sleep(len(chunk) / READ_RATE)
            if not refused_new and time.monotonic() - terminated > 0.5:
                with pytest.raises(ConnectionRefusedError):  # the listener is closed
                    socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
                refused_new = True
        client.close()
        streamed = time.monotonic() - terminated
        assert refused_new and streamed > 1  # the stream really outlived the SIGTERM
        assert hashlib.sha1(body).digest() == hashlib.sha1(payload).digest()
        code = server.process.wait(GRACEFUL_SHUTDOWN_SECONDS + 10)
        assert code == 0
        assert time.monotonic() - terminated < streamed + 5  # exits once the stream is done
    finally:
        server.stop()
