"""The outbound guard on its own: which addresses are refused, that the refusal comes before
any connection, that the address actually connected to is what is checked, and redirects
followed hop by hop with credentials kept to their host."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import httpcore
import httpx
import pytest

from runtime.app.outbound import (
    AddressRefused,
    GuardedBackend,
    HostRule,
    Outbound,
    Refused,
    TooLarge,
    blocked,
    new_client,
    read_bounded,
)
from runtime.app.upstream_auth import UpstreamAuth, parse_auth_json

T = TypeVar("T")
SECRET = "gh0-s3cr3t-t0k3n"


def run(main: Callable[[], Awaitable[T]]) -> T:
    loop = asyncio.new_event_loop()  # our own, never made current (the Pulumi tests need theirs)
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.2", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),  # the EC2 / EKS instance metadata service
        ("169.254.170.23", "link-local"),  # the EKS Pod Identity agent
        ("fe80::1", "link-local"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "unique-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("100.64.0.1", "not a global address"),  # shared address space (EKS custom networking)
        ("::ffff:10.0.0.1", "private"),  # an IPv4-mapped private address
        ("2002:a9fe:a9fe::1", "link-local"),  # 6to4 of 169.254.169.254
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "private"),  # Teredo, client 10.0.0.1
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", "loopback"),  # Teredo, client 127.0.0.1
        ("240.0.0.1", "reserved"),
    ],
)
def test_non_public_addresses_are_refused(address: str, reason: str) -> None:
    assert blocked(address) == reason


@pytest.mark.parametrize("address", ["93.184.216.34", "140.82.112.3", "2606:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert blocked(address) is None


class RecordingBackend(httpcore.AsyncNetworkBackend):
    """Stands in for the real network: records every connection asked for, makes none."""

    def __init__(self) -> None:
        self.connects: list[tuple[str, int]] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.connects.append((host, port))
        raise httpcore.ConnectError("the recording backend connects nowhere")


def resolver(table: dict[str, list[str]]) -> Callable[[str, int], Awaitable[list[str]]]:
    async def resolve(host: str, port: int) -> list[str]:
        return table[host]

    return resolve


@pytest.mark.parametrize(
    "host", ["169.254.169.254", "169.254.170.23", "10.0.0.7", "[fd00::1]", "127.0.0.2", "evil.test"]
)
def test_a_refused_address_is_refused_before_any_connection(host: str) -> None:
    inner = RecordingBackend()
    guard = GuardedBackend(
        HostRule.of(["127.0.0.1"]), resolver({"evil.test": ["10.9.8.7"]}), inner=inner
    )
    with pytest.raises(AddressRefused, match="not connecting"):
        run(lambda: guard.connect_tcp(host, 80, timeout=1))
    assert inner.connects == []


def test_a_name_is_resolved_once_and_the_checked_address_is_connected_to() -> None:
    inner = RecordingBackend()
    answers = iter([["93.184.216.34"], ["10.0.0.1"]])  # a second lookup would rebind

    async def rebinding(host: str, port: int) -> list[str]:
        return next(answers)

    guard = GuardedBackend(HostRule.of(()), rebinding, inner=inner)
    with pytest.raises(httpcore.ConnectError):
        run(lambda: guard.connect_tcp("rebind.test", 443, timeout=1))
    assert inner.connects == [("93.184.216.34", 443)]  # by address, never by name again


def test_a_name_with_one_private_address_connects_only_to_the_public_ones() -> None:
    inner = RecordingBackend()
    guard = GuardedBackend(
        HostRule.of(()), resolver({"mixed.test": ["10.0.0.1", "93.184.216.34"]}), inner=inner
    )
    with pytest.raises(httpcore.ConnectError):
        run(lambda: guard.connect_tcp("mixed.test", 80, timeout=1))
    assert inner.connects == [("93.184.216.34", 80)]


def test_the_peer_address_of_the_socket_is_checked_after_connecting() -> None:
    """Whatever resolved the name, the address the socket is connected to decides: a
    backend that ends up on a loopback address (as DNS rebinding would) is refused."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    port = server.server_address[1]

    class Elsewhere(httpcore.AnyIOBackend):
        async def connect_tcp(
            self,
            host: str,
            port: int,
            timeout: float | None = None,
            local_address: str | None = None,
            socket_options: Iterable[Any] | None = None,
        ) -> httpcore.AsyncNetworkStream:
            return await super().connect_tcp("127.0.0.1", port, timeout)

    guard = GuardedBackend(
        HostRule.of(()), resolver({"public.test": ["93.184.216.34"]}), Elsewhere()
    )
    try:
        with pytest.raises(AddressRefused, match=r"connected to 127\.0\.0\.1 \(loopback\)"):
            run(lambda: guard.connect_tcp("public.test", port, timeout=2))
    finally:
        server.shutdown()
        server.server_close()


def test_trusted_hosts_may_be_private() -> None:
    inner = RecordingBackend()
    guard = GuardedBackend(
        HostRule.of(["10.0.0.5", "*.corp.example"]),
        resolver({"repo.corp.example": ["10.0.0.6"]}),
        inner=inner,
    )
    for host in ("10.0.0.5", "repo.corp.example"):
        with pytest.raises(httpcore.ConnectError):
            run(lambda host=host: guard.connect_tcp(host, 80, timeout=1))  # type: ignore[misc]
    assert inner.connects == [("10.0.0.5", 80), ("10.0.0.6", 80)]


def test_host_rules_match_names_and_subdomain_patterns() -> None:
    rule = HostRule.of(["github.com", "*.example.com"])
    assert rule.allows("github.com") and rule.allows("GitHub.com")
    assert rule.allows("a.b.example.com") and not rule.allows("example.com")
    assert not rule.allows("api.github.com") and not rule.allows("evilgithub.com")


# -- redirects and credentials, on real sockets (127.0.0.1 and 127.0.0.2) --------------------


class Recorder(ThreadingHTTPServer):
    def __init__(self, address: str) -> None:
        self.seen: list[tuple[str, str | None]] = []  # (path, Authorization)
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                recorder.seen.append((self.path, self.headers.get("Authorization")))
                status, headers, body = recorder.routes.get(self.path, (404, {}, b""))
                self.send_response(status)
                for name, value in {"Content-Length": str(len(body)), **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        super().__init__((address, 0), Handler)
        self.daemon_threads = True

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


@pytest.fixture
def servers() -> Iterator[tuple[Recorder, Recorder]]:
    one, two = Recorder("127.0.0.1"), Recorder("127.0.0.2")
    for server in (one, two):
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield one, two
    for server in (one, two):
        server.shutdown()
        server.server_close()


def fetch(
    url: str,
    auth: UpstreamAuth,
    trusted: list[str],
    hosts: HostRule | None = None,
    plain_http: Iterable[tuple[str, int]] = (),
) -> tuple[int, bytes]:
    async def main() -> tuple[int, bytes]:
        guard = GuardedBackend(HostRule.of(trusted))
        async with (
            new_client(5, guard, 4) as client,
            Outbound(client, auth, plain_http=plain_http).stream(url, hosts=hosts) as response,
        ):
            return response.status_code, await read_bounded(response, 1000)

    return run(main)


def test_credentials_follow_a_redirect_on_their_host_but_never_to_another(
    servers: tuple[Recorder, Recorder],
) -> None:
    one, two = servers
    auth = UpstreamAuth(parse_auth_json(json.dumps({"bearer": {"127.0.0.1": SECRET}}), "test"))
    one.routes["/a"] = (302, {"Location": "/b"}, b"")
    one.routes["/b"] = (301, {"Location": f"{two.url}/c"}, b"")
    two.routes["/c"] = (200, {}, b"done")
    plain = [("127.0.0.1", one.server_address[1]), ("127.0.0.2", two.server_address[1])]
    assert fetch(f"{one.url}/a", auth, ["127.0.0.1", "127.0.0.2"], None, plain) == (200, b"done")
    assert one.seen == [("/a", f"Bearer {SECRET}"), ("/b", f"Bearer {SECRET}")]
    assert two.seen == [("/c", None)]


def test_credentials_go_over_plain_http_only_to_a_configured_http_upstream() -> None:
    """`http://api.github.com/...` (a dist URL, a redirect) never gets the token in clear;
    an http upstream the operator configured (its host and port) does."""
    seen: list[tuple[str, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((str(request.url), request.headers.get("Authorization")))
        return httpx.Response(200, content=b"ok")

    auth = UpstreamAuth(
        parse_auth_json(
            json.dumps(
                {"github-oauth": {"api.github.com": SECRET}, "bearer": {"repo.corp": SECRET}}
            ),
            "test",
        )
    )

    async def main() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            outbound = Outbound(client, auth, plain_http=[("repo.corp", 8080)])
            for url in (
                "http://api.github.com/repos/a/b/zipball/1",
                "https://api.github.com/repos/a/b/zipball/1",
                "http://repo.corp:8080/p2/a/b.json",
                "http://repo.corp:9090/p2/a/b.json",
                "http://repo.corp/p2/a/b.json",
            ):
                async with outbound.stream(url) as response:
                    await response.aread()

    run(main)
    assert [bool(header) for _, header in seen] == [False, True, True, False, False]


def test_credentials_are_not_sent_after_a_downgrade_to_http() -> None:
    from runtime.app.outbound import _keeps_credentials

    origin = ("repo.example", None, "https")
    assert _keeps_credentials(origin, httpx.URL("https://repo.example/next"))
    assert not _keeps_credentials(origin, httpx.URL("http://repo.example/next"))
    assert not _keeps_credentials(origin, httpx.URL("https://repo.example:8443/next"))
    assert not _keeps_credentials(origin, httpx.URL("https://other.example/next"))
    assert HostRule.of(["[fd00::1]"]).allows("fd00::1")


def test_each_hop_is_checked_again(servers: tuple[Recorder, Recorder]) -> None:
    one, two = servers
    one.routes["/to-two"] = (302, {"Location": f"{two.url}/c"}, b"")
    one.routes["/to-metadata"] = (307, {"Location": "http://169.254.169.254/latest/"}, b"")
    one.routes["/to-file"] = (302, {"Location": "file:///etc/passwd"}, b"")
    auth = UpstreamAuth()
    # 127.0.0.2 is not trusted: refused at its address, before connecting.
    with pytest.raises(AddressRefused, match=r"127\.0\.0\.2 \(loopback\)"):
        fetch(f"{one.url}/to-two", auth, ["127.0.0.1"])
    with pytest.raises(AddressRefused, match=r"169\.254\.169\.254 \(link-local\)"):
        fetch(f"{one.url}/to-metadata", auth, ["127.0.0.1"])
    with pytest.raises(Refused, match="only http and https"):
        fetch(f"{one.url}/to-file", auth, ["127.0.0.1"])
    # A host rule: the redirect target's host must be in it.
    with pytest.raises(Refused, match=r"add 127\.0\.0\.2 to SATCHEL_DIST_HOSTS"):
        fetch(f"{one.url}/to-two", auth, ["127.0.0.1", "127.0.0.2"], HostRule.of(["127.0.0.1"]))
    assert two.seen == []


def test_redirects_are_followed_at_most_five_times(servers: tuple[Recorder, Recorder]) -> None:
    one, _ = servers
    for hop in range(7):
        one.routes[f"/{hop}"] = (302, {"Location": f"/{hop + 1}"}, b"")
    with pytest.raises(Refused, match="more than 5 redirects"):
        fetch(f"{one.url}/0", UpstreamAuth(), ["127.0.0.1"])
    assert len(one.seen) == 6


def test_bodies_are_bounded_and_urls_with_credentials_are_not_fetched(
    servers: tuple[Recorder, Recorder],
) -> None:
    one, _ = servers
    one.routes["/big"] = (200, {}, b"x" * 1001)
    with pytest.raises(TooLarge, match="over the bound of 1000"):
        fetch(f"{one.url}/big", UpstreamAuth(), ["127.0.0.1"])
    with pytest.raises(Refused, match="credentials in the URL") as refused:
        fetch(f"http://user:{SECRET}@127.0.0.1:{one.server_address[1]}/x", UpstreamAuth(), [])
    assert SECRET not in str(refused.value)
    assert [path for path, _ in one.seen] == ["/big"]


def test_a_stream_whose_peer_closed_it_answers_none_not_a_crash() -> None:
    """anyio raises AttributeError for extra info of a socket the peer closed; httpcore asks
    for `ssl_object` right after connecting: that must become a connection error later,
    never a 500 (seen in the chaos test when the upstream stopped while we connected)."""
    from runtime.app.outbound import _ClosedSafeStream

    class Gone(httpcore.AsyncNetworkStream):
        def get_extra_info(self, info: str) -> Any:
            raise AttributeError("'NoneType' object has no attribute 'getpeername'")

    assert _ClosedSafeStream(Gone()).get_extra_info("ssl_object") is None


# -- encoded bodies: decompressed here, never past the bound -------------------------------


class _Chunks(httpx.AsyncByteStream):
    """A body streamed in 64 KiB chunks, as a socket would (not read at construction)."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.body), 65536):
            yield self.body[start : start + 65536]


def _encoded(body: bytes, encoding: str = "gzip") -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Encoding": encoding}, stream=_Chunks(body))

    return handler


def _peak(main: Callable[[], Awaitable[T]]) -> tuple[T | BaseException, int]:
    import tracemalloc

    tracemalloc.start()
    try:
        try:
            result: T | BaseException = run(main)
        except Exception as exc:
            result = exc
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_gzip_bomb_is_cut_off_at_the_bound_without_inflating_in_memory() -> None:
    """32 MiB of zeros, 32 KiB compressed, read with a bound of 100 kB: refused, and never
    more than a few times the bound held (httpx's own decoding inflated a whole chunk)."""
    import gzip
    import zlib

    bomb = gzip.compress(b"\0" * (32 << 20), 9)
    limit = 100_000

    async def read(handler: Callable[[httpx.Request], httpx.Response]) -> bytes:
        async with (
            httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client,
            Outbound(client, UpstreamAuth()).stream("https://repo.example/p2/a/b.json") as r,
        ):
            return await read_bounded(r, limit)

    result, peak = _peak(lambda: read(_encoded(bomb)))
    assert isinstance(result, TooLarge), result
    assert peak < 4 * limit + 4 * len(bomb), peak
    # An ordinary gzip (or zlib "deflate") document under the bound is decoded.
    document = b'{"packages": {}}' * 100
    assert run(lambda: read(_encoded(gzip.compress(document)))) == document
    assert run(lambda: read(_encoded(zlib.compress(document), "deflate"))) == document
    with pytest.raises(Refused, match="'br' is not decoded"):
        run(lambda: read(_encoded(b"x", "br")))
    with pytest.raises(httpx.DecodingError, match="cut short"):
        run(lambda: read(_encoded(gzip.compress(document)[:-20])))


def test_a_dist_sent_gzip_encoded_though_identity_was_asked_is_decoded_bounded() -> None:
    import gzip
    import hashlib
    import io

    from runtime.app.upstream import OutboundRefused, UpstreamClient

    archive = b"PK\x05\x06" + b"\0" * 18
    bomb = gzip.compress(b"\0" * (32 << 20), 9)

    async def download(body: bytes, encoding: str = "gzip") -> tuple[bool, bytes]:
        sink = io.BytesIO()
        transport = httpx.MockTransport(_encoded(body, encoding))
        async with httpx.AsyncClient(transport=transport) as client:
            upstream = UpstreamClient(Outbound(client, UpstreamAuth()), 0, max_dist=100_000)
            shasum = hashlib.sha1(archive).hexdigest()
            found = await upstream.download("https://codeload.example/x.zip", sink, shasum)
            return found, sink.getvalue()

    assert run(lambda: download(gzip.compress(archive))) == (True, archive)
    result, peak = _peak(lambda: download(bomb))
    assert isinstance(result, OutboundRefused) and "over the bound" in str(result), result
    assert peak < 4 * 100_000 + 4 * len(bomb) + (1 << 20), peak
    with pytest.raises(OutboundRefused, match="not decoded"):
        run(lambda: download(archive, "br"))


def test_an_upstream_is_trusted_on_its_own_port_only_and_dist_hosts_on_any() -> None:
    """A document from `http://10.0.0.5:8080` must not send the mirror to 10.0.0.5:10250
    (the kubelet); SATCHEL_DIST_HOSTS entries stay host names, any port."""
    from runtime.app.config import load_serve_config
    from runtime.app.egress import dist_hosts, trusted_hosts

    config = load_serve_config(
        {
            "SATCHEL_UPSTREAMS": "corp=http://10.0.0.5:8080,tls=https://10.0.0.6",
            "SATCHEL_DIST_HOSTS": "10.0.0.9",
        }
    )
    inner = RecordingBackend()
    guard = GuardedBackend(trusted_hosts(config), resolver({}), inner=inner)
    for host, port in (("10.0.0.5", 8080), ("10.0.0.6", 443), ("10.0.0.9", 10250)):
        with pytest.raises(httpcore.ConnectError):
            run(lambda: guard.connect_tcp(host, port, timeout=1))  # noqa: B023
    for host, port in (("10.0.0.5", 10250), ("10.0.0.6", 80)):
        with pytest.raises(AddressRefused, match="private"):
            run(lambda: guard.connect_tcp(host, port, timeout=1))  # noqa: B023
    assert inner.connects == [("10.0.0.5", 8080), ("10.0.0.6", 443), ("10.0.0.9", 10250)]
    rule = dist_hosts(config, "corp")
    assert rule.allows("10.0.0.5", 8080) and not rule.allows("10.0.0.5", 10250)
    assert rule.allows("10.0.0.9", 10250) and rule.allows("codeload.github.com", 443)
