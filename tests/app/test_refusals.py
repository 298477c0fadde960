"""Every refusal of the outbound policy, through the app on real sockets.

An upstream on 127.0.0.1 (configured, so allowed) names dists and redirects to places the
mirror must not go: another loopback address (a real server on 127.0.0.2 that counts its
connections), the instance metadata service, the Pod Identity agent, private networks, a
name that resolves to one of those, and documents larger than the bound. For each: the
client gets a 502 in general terms with a request id, the app log line with that id names
the host and what to configure, no connection is made (a tripwire on socket.connect
refuses and records anything that is not loopback), and nothing lands in the bucket.
"""

from __future__ import annotations

import gzip
import ipaddress
import json
import logging
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

import runtime
from infra.local.composer_repo import make_zip
from runtime.app import create_app
from runtime.app.config import load_serve_config
from runtime.app.outbound import Resolver, system_resolver
from runtime.settings import load_settings
from tests.app.conftest import BASE

# What the injected resolver answers (no /etc/hosts, no DNS server involved).
NAMES = {
    "codeload.github.com": ["10.0.0.7"],
    "api.github.com": ["169.254.169.254"],
    "objects.githubusercontent.com": ["169.254.170.23"],
}


async def resolve(host: str, port: int) -> list[str]:
    if host in NAMES:
        return NAMES[host]
    return await system_resolver(host, port)  # `localhost` through the system's resolver


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every address a socket in this process connects to. Anything but loopback is
    refused here, so a test can never send traffic off the machine even if the guard
    failed; the list shows whether the guard let a connection be attempted at all."""
    seen: list[str] = []
    original, original_ex = socket.socket.connect, socket.socket.connect_ex

    def check(address: Any) -> None:
        if isinstance(address, tuple):
            seen.append(str(address[0]))
            if not ipaddress.ip_address(str(address[0]).split("%")[0]).is_loopback:
                raise ConnectionRefusedError(f"tripwire: the test refused {address[0]}")

    def connect(self: socket.socket, address: Any) -> None:
        check(address)
        original(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(address)
        return original_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    return seen


class CountingServer(ThreadingHTTPServer):
    """Serves `routes`; counts accepted connections (not only requests)."""

    daemon_threads = True

    def __init__(self, host: str) -> None:
        self.accepted = 0
        self.requests: Counter[str] = Counter()
        self.authorizations: list[str | None] = []
        self.routes: dict[str, Callable[[BaseHTTPRequestHandler], None]] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                server.requests[path] += 1
                server.authorizations.append(self.headers.get("Authorization"))
                server.routes.get(path, not_found)(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        super().__init__((host, 0), Handler)
        threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True).start()

    def get_request(self) -> tuple[socket.socket, Any]:
        accepted = super().get_request()
        self.accepted += 1
        return accepted

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def send(
    handler: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str] | None = None
) -> None:
    handler.send_response(status)
    for name, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)


def not_found(handler: BaseHTTPRequestHandler) -> None:
    send(handler, 404, b"{}")


def redirect(location: str) -> Callable[[BaseHTTPRequestHandler], None]:
    return lambda h: send(h, 302, b"", {"Location": location})


@dataclass
class Upstream:
    """A Composer repository on 127.0.0.1 whose p2 documents name the given dist URLs."""

    server: CountingServer
    dists: dict[str, str] = field(default_factory=dict)  # package -> dist URL

    def __post_init__(self) -> None:
        root = {"packages": [], "metadata-url": "/p2/%package%.json"}
        self.server.routes["/packages.json"] = lambda h: send(h, 200, json.dumps(root).encode())

    @property
    def url(self) -> str:
        return self.server.url

    def point(self, name: str, dist_url: str) -> None:
        version = {
            "name": name,
            "version": "1.0.0",
            "dist": {"type": "zip", "url": dist_url, "reference": "abc", "shasum": ""},
        }
        body = json.dumps({"packages": {name: [version]}, "minified": "composer/2.0"}).encode()
        self.server.routes[f"/p2/{name}.json"] = lambda h: send(h, 200, body)


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = CountingServer("127.0.0.1")
    yield Upstream(server)
    server.stop()


@pytest.fixture
def other() -> Iterator[CountingServer]:
    """A server on another loopback address: a stand-in for an internal service."""
    server = CountingServer("127.0.0.2")
    yield server
    server.stop()


@dataclass
class App:
    client: TestClient
    env: dict[str, str]
    alias: str
    log_file: Path

    def get(self, path: str) -> Any:
        return self.client.get(path)

    def dist_path(self, name: str) -> str:
        versions = self.get(f"/p2/{name}.json").json()["packages"][name]
        return str(versions[0]["dist"]["url"]).removeprefix(BASE)

    def stored(self) -> dict[str, list[str]]:
        storages = runtime.open_storages(runtime.load_settings(self.env))
        return {
            "dists": [i.key for i in storages.mirror_dist.list(self.alias)],
            "metadata": [i.key for i in storages.mirror_meta.list(self.alias)],
        }

    def access_log(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log_file.read_text().splitlines()]


@pytest.fixture
def make_app(
    pod_env: dict[str, str], upstream: Upstream, alias: str, tmp_path: Path
) -> Iterator[Callable[..., App]]:
    started: list[TestClient] = []
    fds: list[int] = []

    def make(resolver: Resolver = resolve, **overrides: str) -> App:
        env = {
            **pod_env,
            "SATCHEL_UPSTREAMS": f"{alias}={upstream.url}",
            "SATCHEL_UPSTREAM_RETRIES": "0",
            "MIRROR_METADATA_CACHE_DIR": "",
            "MIRROR_DIST_CACHE_DIR": "",
            **overrides,
        }
        log_file = tmp_path / f"access-{len(started)}.log"
        fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fds.append(fd)
        app = create_app(
            load_settings(env), load_serve_config(env), access_log_fd=fd, resolve=resolver
        )
        client = TestClient(app, base_url=BASE)
        client.__enter__()
        started.append(client)
        return App(client, env, alias, log_file)

    yield make
    for client in started:
        client.__exit__(None, None, None)
    for fd in fds:
        os.close(fd)


def refused(app: App, path: str, caplog: pytest.LogCaptureFixture) -> tuple[str, str]:
    """GET `path`, expect a refusal: (what the client read, the app log line for it)."""
    with caplog.at_level(logging.INFO, logger="satchel"):
        response = app.get(path)
    assert response.status_code == 502, response.text
    body = response.json()
    request_id = body["request_id"]
    assert body["error"].startswith("upstream unavailable: ") and request_id in body["error"]
    assert app.access_log()[-1]["request_id"] == request_id
    lines = [r.getMessage() for r in caplog.records if request_id in r.getMessage()]
    assert len(lines) == 1
    return body["error"], lines[0]


def no_private_details(text: str) -> None:
    for detail in ("127.0.0.", "169.254.", "10.0.0.", "github", "http://", "https://"):
        assert detail not in text, text


def test_a_dist_on_another_loopback_address_is_never_connected_to(
    make_app: Callable[..., App],
    upstream: Upstream,
    other: CountingServer,
    connects: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    upstream.point("acme/inside", f"{other.url}/secret.zip")
    app = make_app()
    client_saw, log_saw = refused(app, app.dist_path("acme/inside"), caplog)
    no_private_details(client_saw)
    assert "refused by the mirror's outbound policy" in client_saw
    assert "dist host 127.0.0.2 is not allowed" in log_saw
    assert "add 127.0.0.2 to SATCHEL_DIST_HOSTS" in log_saw
    assert other.accepted == 0 and "127.0.0.2" not in connects
    assert app.stored()["dists"] == []


def test_dists_on_another_private_host_are_mirrored_once_it_is_in_SATCHEL_DIST_HOSTS(
    make_app: Callable[..., App], upstream: Upstream, other: CountingServer
) -> None:
    archive = make_zip("acme/inside", "1.0.0", {})
    other.routes["/inside.zip"] = lambda h: send(h, 200, archive)
    upstream.point("acme/inside", f"{other.url}/inside.zip")
    app = make_app(SATCHEL_DIST_HOSTS="127.0.0.2")
    response = app.get(app.dist_path("acme/inside"))
    assert response.status_code == 200 and response.content == archive
    assert other.accepted == 1 and len(app.stored()["dists"]) == 1


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/role.zip",
        "http://169.254.170.23/v1/credentials.zip",
        "http://10.0.0.7/internal.zip",
        "http://[fd00::1]/internal.zip",
        "http://kubernetes.default.svc/api.zip",
        "file:///etc/passwd",
        "ftp://10.0.0.7/x.zip",
    ],
)
def test_dists_on_hosts_not_allowed_are_not_fetched(
    make_app: Callable[..., App],
    upstream: Upstream,
    connects: list[str],
    caplog: pytest.LogCaptureFixture,
    url: str,
) -> None:
    upstream.point("acme/bad", url)
    app = make_app()
    path = app.dist_path("acme/bad")
    before = list(connects)
    client_saw, log_saw = refused(app, path, caplog)
    no_private_details(client_saw)
    if url.startswith("http:"):
        assert "is not allowed" in log_saw and "SATCHEL_DIST_HOSTS" in log_saw
    else:
        assert "only http and https" in log_saw
    assert connects == before  # not even a connection attempt
    assert app.stored()["dists"] == []


@pytest.mark.parametrize(
    ("host", "address", "reason"),
    [
        ("codeload.github.com", "10.0.0.7", "private"),
        ("api.github.com", "169.254.169.254", "link-local"),
        ("objects.githubusercontent.com", "169.254.170.23", "link-local"),
    ],
)
def test_an_allowed_dist_host_resolving_to_a_private_address_is_refused_before_connecting(
    make_app: Callable[..., App],
    upstream: Upstream,
    connects: list[str],
    caplog: pytest.LogCaptureFixture,
    host: str,
    address: str,
    reason: str,
) -> None:
    upstream.point("acme/rebound", f"http://{host}/acme/rebound/zip/abc")
    app = make_app()
    path = app.dist_path("acme/rebound")
    before = list(connects)
    client_saw, log_saw = refused(app, path, caplog)
    no_private_details(client_saw)
    assert f"{host} resolves to {address} ({reason}); not connecting" in log_saw
    assert connects == before and address not in connects
    assert app.stored()["dists"] == []


def test_redirects_of_a_dist_are_checked_hop_by_hop(
    make_app: Callable[..., App],
    upstream: Upstream,
    other: CountingServer,
    connects: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    hops = {
        "/to-metadata": "http://169.254.169.254/latest/meta-data/",
        "/to-other": f"{other.url}/secret.zip",
        "/to-rebound": "https://objects.githubusercontent.com/x.zip",  # -> 169.254.170.23
    }
    expected = {
        "/to-metadata": "dist host 169.254.169.254 is not allowed",
        "/to-other": "dist host 127.0.0.2 is not allowed",
        "/to-rebound": "resolves to 169.254.170.23 (link-local); not connecting",
    }
    for hop, location in hops.items():
        upstream.server.routes[hop] = redirect(location)
        upstream.point(f"acme/r{hop[4:]}", f"{upstream.url}{hop}")
    app = make_app()
    for hop in hops:
        path = app.dist_path(f"acme/r{hop[4:]}")
        client_saw, log_saw = refused(app, path, caplog)
        no_private_details(client_saw)
        assert expected[hop] in log_saw
        assert upstream.server.requests[hop] == 1  # the first hop was asked, nothing after
    assert other.accepted == 0
    assert "127.0.0.1" in connects  # the tripwire sees the mirror's connections...
    assert not [a for a in connects if a != "127.0.0.1"]  # ...and only to the upstream
    assert app.stored()["dists"] == []


def test_metadata_redirected_to_a_name_that_resolves_to_loopback_is_refused(
    make_app: Callable[..., App],
    upstream: Upstream,
    connects: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`localhost` resolves (through the system resolver) to the upstream's own address,
    but it is not the name the operator configured: refused, the target never asked."""
    port = upstream.server.server_address[1]
    upstream.point("acme/real", f"{upstream.url}/x.zip")
    upstream.server.routes["/p2/acme/sneaky.json"] = redirect(
        f"http://localhost:{port}/p2/acme/real.json"
    )
    app = make_app()
    client_saw, log_saw = refused(app, "/p2/acme/sneaky.json", caplog)
    no_private_details(client_saw)
    assert "the package's metadata could not be fetched" in client_saw
    # Refused before any lookup: a p2 document (metadata-url) comes from the upstream's own
    # host and port only, and `localhost` is not the name the operator configured.
    assert "localhost:" in log_saw and "fetched from its own host and port only" in log_saw
    assert upstream.server.requests["/p2/acme/real.json"] == 0
    assert not any("sneaky" in key for key in app.stored()["metadata"])


def test_an_oversized_metadata_document_is_cut_off_while_streaming_and_not_stored(
    make_app: Callable[..., App], upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    written = {"bytes": 0}

    def endless(handler: BaseHTTPRequestHandler) -> None:  # no Content-Length: until cut
        handler.send_response(200)
        handler.end_headers()
        chunk = b'{"packages": {"acme/huge": [' + b" " * 65536
        try:
            while written["bytes"] < 512 * 1024 * 1024:
                handler.wfile.write(chunk)
                written["bytes"] += len(chunk)
        except OSError:
            pass  # the mirror hung up

    upstream.server.routes["/p2/acme/huge.json"] = endless
    upstream.server.routes["/p2/acme/declared.json"] = lambda h: send(h, 200, b" " * 300_000)
    app = make_app(SATCHEL_MAX_METADATA_SIZE="256K")
    started = time.monotonic()
    client_saw, log_saw = refused(app, "/p2/acme/huge.json", caplog)
    assert time.monotonic() - started < 10
    assert "larger than the mirror accepts" in client_saw
    assert "over the bound of 262144 bytes (SATCHEL_MAX_METADATA_SIZE); cut off" in log_saw
    # Read no further than the bound (plus what the sockets' buffers held).
    time.sleep(0.2)
    assert written["bytes"] < 32 * 1024 * 1024
    client_saw, log_saw = refused(app, "/p2/acme/declared.json", caplog)
    assert "300000 bytes, over the bound of 262144" in log_saw
    assert not any("huge" in k or "declared" in k for k in app.stored()["metadata"])


def test_an_oversized_dist_is_not_stored(
    make_app: Callable[..., App], upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    big = os.urandom(64 * 1024)
    upstream.server.routes["/big.zip"] = lambda h: send(h, 200, big)
    upstream.point("acme/big", f"{upstream.url}/big.zip")
    app = make_app(SATCHEL_MAX_DIST_SIZE="16K")
    client_saw, log_saw = refused(app, app.dist_path("acme/big"), caplog)
    assert "larger than the mirror accepts" in client_saw
    assert "over the bound of 16384 (SATCHEL_MAX_DIST_SIZE)" in log_saw
    assert app.stored()["dists"] == []


def test_a_compressed_document_is_bounded_by_its_decoded_size(
    make_app: Callable[..., App], upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    """A gzip body of ~100 KiB that inflates to 100 MiB (a decompression bomb) is cut off
    at the bound of what it decodes to, not of what it weighs on the wire."""
    bomb = gzip.compress(b'{"packages": {"acme/bomb": [' + b" " * (100 * 1024 * 1024), 9)
    assert len(bomb) < 256 * 1024
    upstream.server.routes["/p2/acme/bomb.json"] = lambda h: send(
        h, 200, bomb, {"Content-Encoding": "gzip"}
    )
    app = make_app(SATCHEL_MAX_METADATA_SIZE="1M")
    client_saw, log_saw = refused(app, "/p2/acme/bomb.json", caplog)
    assert "larger than the mirror accepts" in client_saw
    assert "over the bound of 1048576 bytes (SATCHEL_MAX_METADATA_SIZE); cut off" in log_saw
    assert not any("bomb" in key for key in app.stored()["metadata"])
