"""Limits `satchel serve` enforces, on a real process: the size of a request's head (an
unbounded buffer would take any amount of memory) and the open connections per worker."""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
from collections.abc import Iterator

import psutil
import pytest

from runtime.app.server import MAX_HEAD_BYTES
from tests.app.processes import ServeProcess

MAX_CONNECTIONS = 8
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    root = tmp_path_factory.mktemp("limits")
    env = {
        "STORAGE_SOURCE": "local",
        "SATCHEL_LOCAL_ROOT": str(root / "storage"),
        "SATCHEL_UPSTREAMS": "up=http://127.0.0.1:9",
        "SATCHEL_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
    }
    with ServeProcess(env, root / "logs") as process:
        yield process


def healthz(server: ServeProcess) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status
    finally:
        connection.close()


def answer_to(server: ServeProcess, head: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as client:
        client.sendall(head)
        received = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := client.recv(65536):
                received += chunk
                if b"\r\n\r\n" in received and received.endswith(b"}"):
                    break
        return received


def endless_header(server: ServeProcess, total: int, sent: list[int]) -> None:
    """An unfinished header of up to `total` bytes, sent as fast as the server takes it."""
    chunk = b"a" * MiB
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as client:
        client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        count = 0
        with contextlib.suppress(OSError):  # reset by the server
            while count < total:
                client.sendall(chunk)
                count += len(chunk)
        sent.append(count)


def test_an_endless_header_is_cut_off_and_the_server_memory_stays_bounded(
    server: ServeProcess,
) -> None:
    assert server.process is not None
    worker = psutil.Process(server.process.pid)
    before = worker.memory_info().rss
    sent: list[int] = []
    senders = [
        threading.Thread(target=endless_header, args=(server, 1024 * MiB, sent)) for _ in range(2)
    ]
    for sender in senders:
        sender.start()
    peak = before
    while any(sender.is_alive() for sender in senders):
        peak = max(peak, worker.memory_info().rss)
        time.sleep(0.01)
    # Cut off after the limit plus what the sockets' buffers took (1 GiB unbounded before).
    assert len(sent) == 2 and max(sent) < 64 * MiB
    assert peak - before < 16 * MiB  # was +370 MiB for two 150 MiB heads
    assert healthz(server) == 200


def test_a_head_over_the_limit_is_answered_431_and_the_connection_closed(
    server: ServeProcess,
) -> None:
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (MAX_HEAD_BYTES + 1)
    answer = answer_to(server, head)
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert b"connection: close" in answer  # the status says it all; the body is empty


def test_heads_under_the_limit_and_pipelined_requests_still_work(server: ServeProcess) -> None:
    big = (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (MAX_HEAD_BYTES // 2) + b"\r\n\r\n"
    )
    assert answer_to(server, big).startswith(b"HTTP/1.1 200 ")
    # Many requests in one stream: the count starts again with each request.
    one = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"b" * 1000 + b"\r\n\r\n"
    last = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as client:
        client.sendall(one * 100 + last)
        received = b""
        while chunk := client.recv(65536):
            received += chunk
    assert received.count(b"HTTP/1.1 200 ") == 101


def test_connections_beyond_the_limit_wait_until_one_closes(server: ServeProcess) -> None:
    held = []
    for _ in range(MAX_CONNECTIONS):  # each with a request answered: all being served
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        connection.request("GET", "/healthz")
        assert connection.getresponse().read() == b'{"ok":true}'
        held.append(connection)
    extra = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    try:
        extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        extra.settimeout(0.5)
        with pytest.raises(TimeoutError):  # not served while the limit is reached
            extra.recv(65536)
        held.pop().close()
        extra.settimeout(5)
        assert extra.recv(65536).startswith(b"HTTP/1.1 200 ")  # served once one closed
    finally:
        extra.close()
        for connection in held:
            connection.close()
    assert healthz(server) == 200


def test_a_request_without_a_host_header_is_served(server: ServeProcess) -> None:
    answer = answer_to(server, b"GET /packages.json HTTP/1.0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.0 200 "), answer[:200]
    assert b'"http://127.0.0.1:' in answer  # the base URL is the server's own address
