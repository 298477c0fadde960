"""`satchel serve` on granian's RSGI interface (runtime.app.rsgi): reused answers sent in one
call are the endpoint's own, byte for byte, logged and counted; what is never reused (another
Host, a Host given twice, HEAD, a request body) goes through the ASGI app as before."""

from __future__ import annotations

import http.client
import socket
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from infra.local.composer_repo import ComposerRepo
from tests.app.processes import ServeProcess

P2 = "/p2/acme/log.json"


def _get(port: int, path: str, *headers: tuple[str, str]) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
    for name, value in headers:
        connection.putheader(name, value)
    connection.endheaders()
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, body


def _p2_answers(port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    line = 'satchel_http_requests_total{route="p2",status="2xx"} '
    return sum(float(row.removeprefix(line)) for row in text.splitlines() if row.startswith(line))


def test_reused_answers_are_the_endpoints_own_and_logged(
    pod_env: dict[str, str], repo: ComposerRepo, alias: str, tmp_path: Path
) -> None:
    env = {**pod_env, "SATCHEL_UPSTREAMS": f"{alias}={repo.url}"}
    with ServeProcess(env, tmp_path / "logs") as serve:
        host = ("Host", "mirror.test")
        first = _get(serve.port, P2, host)
        second = _get(serve.port, P2, host)  # hot: kept from here
        assert first[0] == second[0] == 200 and first[2] == second[2]
        before = _p2_answers(serve.port)
        reused = [_get(serve.port, P2, host) for _ in range(20)]
        for status, headers, body in reused:
            assert status == 200 and body == second[2]
            assert {k: v for k, v in headers.items() if k != "date"} == {
                k: v for k, v in second[1].items() if k != "date"
            }
        gzipped = _get(serve.port, P2, host, ("Accept-Encoding", "gzip"))
        assert gzipped[1]["content-encoding"] == "gzip"
        other = _get(serve.port, P2, ("Host", "other.test"))
        assert b"http://other.test/" in other[2] and b"other.test" not in second[2]
        twice = _get(serve.port, P2, ("Host", "evil.test"), host)
        assert b"evil.test" not in _get(serve.port, P2, host)[2] and twice[0] == 200
        head = http.client.HTTPConnection("127.0.0.1", serve.port, timeout=10)
        head.request("HEAD", P2, headers={"Host": "mirror.test"})
        answer = head.getresponse()
        assert answer.status == 200 and answer.read() == b""
        assert answer.getheader("content-length") == str(len(second[2]))
        head.close()
        assert _p2_answers(serve.port) - before >= 20  # counted, whichever way answered
        lines = [line for line in serve.access_lines() if line["path"] == P2]
    assert len(lines) >= 26  # one line per request
    assert [line["cache"] for line in lines[2:22]] == ["hot"] * 20
    assert all(line["status"] == 200 and line["bytes"] > 0 for line in lines[2:22])


def test_a_body_streams_in_and_a_client_that_leaves_mid_dist_costs_nothing(
    pod_env: dict[str, str], repo: ComposerRepo, alias: str, tmp_path: Path
) -> None:
    env = {**pod_env, "SATCHEL_UPSTREAMS": f"{alias}={repo.url}", "SATCHEL_MAX_ARCHIVE_SIZE": "1M"}
    with ServeProcess(env, tmp_path / "logs") as serve:
        # An upload over the bound: refused after at most the bound was read, body streamed.
        with socket.create_connection(("127.0.0.1", serve.port), timeout=10) as client:
            client.sendall(
                b"PUT /packages/upload/acme/big/1.0.0 HTTP/1.1\r\nHost: x\r\n"
                b"Content-Length: 104857600\r\n\r\n" + b"\0" * 65536
            )
            answer = client.recv(65536)
        assert answer.split(b" ", 2)[1] in (b"401", b"413")  # no token: refused up front
        dist = _get(serve.port, P2, ("Host", "x"))[2]
        path = urlsplit(dist.split(b'"url":"', 1)[1].split(b'"', 1)[0].decode()).path
        with socket.create_connection(("127.0.0.1", serve.port), timeout=10) as client:
            client.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert client.recv(100).startswith(b"HTTP/1.1 200 ")
        assert _get(serve.port, P2, ("Host", "x"))[0] == 200  # the worker is fine
