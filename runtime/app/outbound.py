"""Safe outbound fetching: the one way the app talks to upstreams (metadata, dists,
advisories).

- Only `http` and `https`; no credentials inside URLs (they belong in COMPOSER_AUTH).
- Redirects are followed here, hop by hop (httpx's own following is off), at most
  `MAX_REDIRECTS`; every hop is checked again: its scheme, its host against the fetch's
  `HostRule` (dists), and its address when it connects.
- Addresses: the network backend resolves the host itself and connects to the address it
  checked (so a DNS answer that changes between a check and the connection, DNS
  rebinding, cannot get around it), then checks the socket's peer address again. Loopback,
  link-local (169.254.169.254, the EKS Pod Identity agent's 169.254.170.23), private,
  shared (100.64/10), unique-local, multicast, reserved and unspecified addresses are
  refused before any connection is attempted, except for hosts the operator configured
  (the upstreams' hosts, SATCHEL_DIST_HOSTS).
- Credentials (`UpstreamAuth`) go to the first hop's host only, never after a redirect to
  another host, and only over https, except to an http upstream the operator configured
  (`plain_http`: its host and port, from SATCHEL_UPSTREAMS).
- `read_bounded` / `iter_bounded` read a body up to a bound, never buffering past it: the
  raw bytes, gzip/deflate decompressed here a bounded piece at a time.

Every refusal raises `Refused` (its `reason` names the host or address for the log, and
the variable that would allow it); nothing here logs.

Use: `Outbound(client, auth)` with `client = new_client(timeout, guard)`, then
`async with outbound.stream(url, hosts=rule) as response: await read_bounded(response, n)`.
"""

from __future__ import annotations

import ipaddress
import socket
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import anyio
import httpcore
import httpx

from runtime.app.upstream_auth import UpstreamAuth

MAX_REDIRECTS = 5
USER_AGENT = "satchel-mirror/0.1 (Composer repository mirror)"
# Where packagist.org's dists live: GitHub's, GitLab's and Bitbucket's download hosts.
DEFAULT_DIST_HOSTS = (
    "github.com",
    "api.github.com",
    "codeload.github.com",
    "objects.githubusercontent.com",
    "gitlab.com",
    "bitbucket.org",
    "api.bitbucket.org",
    "bbuseruploads.s3.amazonaws.com",
)
_REDIRECTS = (301, 302, 303, 307, 308)

Resolver = Callable[[str, int], Awaitable[list[str]]]


class Refused(Exception):
    """A fetch the outbound policy does not allow. `reason` is for the log (host, address,
    what to configure); it never holds a credential."""

    public = "refused by the mirror's outbound policy"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AddressRefused(Refused):
    """A connection to a non-public address, refused before connecting."""


class TooLarge(Refused):
    public = "larger than the mirror accepts"


@dataclass(frozen=True)
class HostRule:
    """The hosts a fetch may reach (each redirect hop included): exact names, or
    `*.example.com` for any subdomain, on any port; and `endpoints`, a host on one port
    only (the upstreams the operator configured)."""

    names: frozenset[str]
    endpoints: frozenset[tuple[str, int]] = frozenset()
    hint: str = field(default="", compare=False)  # why a host is refused, when not a dist

    @classmethod
    def of(cls, names: Iterable[str]) -> HostRule:
        return cls(frozenset(n.strip().lower().strip("[]") for n in names if n.strip()))

    @classmethod
    def at(cls, endpoints: Iterable[tuple[str, int]]) -> HostRule:
        """Hosts on their port only: (host, port)."""
        return cls(frozenset(), frozenset((h.lower().strip("[]"), p) for h, p in endpoints))

    def allows(self, host: str, port: int | None = None) -> bool:
        host = host.lower().strip("[]")
        if port is not None and (host, port) in self.endpoints:
            return True
        if host in self.names:
            return True
        return any(n.startswith("*.") and host.endswith(n[1:]) for n in self.names)

    def __or__(self, other: HostRule) -> HostRule:
        return HostRule(
            self.names | other.names, self.endpoints | other.endpoints, self.hint or other.hint
        )


def endpoint(url: str | httpx.URL) -> tuple[str, int]:
    """(host, port) a URL connects to, the scheme's port when it names none."""
    parsed = httpx.URL(url) if isinstance(url, str) else url
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return parsed.host.lower().strip("[]"), port


def blocked(address: str) -> str | None:
    """Why connecting to `address` is refused, or None for a public address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        # IPv4 inside IPv6: mapped (::ffff:a.b.c.d), 6to4 (2002:AABB:CCDD::) and Teredo
        # (2001:0::, the client's address): judged as the IPv4 address they reach.
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip.sixtofour is not None:
            ip = ip.sixtofour
        elif ip.teredo is not None:
            ip = ip.teredo[1]
    for reason, hit in (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("unique-local", isinstance(ip, ipaddress.IPv6Address) and ip in _UNIQUE_LOCAL),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
    ):
        if hit:
            return reason
    return None if ip.is_global else "not a global address"


_UNIQUE_LOCAL = ipaddress.IPv6Network("fc00::/7")


async def system_resolver(host: str, port: int) -> list[str]:
    """The host's addresses, from the system resolver (without the blocking call on the loop)."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, resolving and checking every address before connecting.
    The addresses of `trusted` hosts (configured by the operator) are not checked."""

    def __init__(
        self,
        trusted: HostRule,
        resolve: Resolver = system_resolver,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self.trusted = trusted
        self.resolve = resolve
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self._addresses(host, port, timeout)
        trusted = self.trusted.allows(host.strip("[]"), port)
        refused = [(a, None if trusted else blocked(a)) for a in addresses]
        allowed = [a for a, why in refused if why is None]
        if not allowed:
            address, why = refused[0]
            raise AddressRefused(
                f"{host} resolves to {address} ({why}); not connecting. If this host is yours,"
                " add it to SATCHEL_DIST_HOSTS (or configure it as an upstream)"
            )
        error: Exception | None = None
        for address in allowed:  # connect to the checked address, never re-resolve
            try:
                stream = await self.inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
                continue
            stream = _ClosedSafeStream(stream)
            if not trusted:
                await _check_peer(stream, host)
            return stream
        assert error is not None
        raise error

    async def _addresses(self, host: str, port: int, timeout: float | None) -> list[str]:
        literal = host.strip("[]")
        try:
            ipaddress.ip_address(literal.split("%", 1)[0])
            return [literal]
        except ValueError:
            pass
        try:
            with anyio.fail_after(timeout):
                addresses = await self.resolve(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from None
        if not addresses:
            raise httpcore.ConnectError(f"{host} has no address")
        return addresses

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise Refused("unix sockets are not used for upstreams")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class _ClosedSafeStream(httpcore.AsyncNetworkStream):
    """A stream whose `get_extra_info` answers None once the peer has closed it: anyio then
    raises AttributeError (its socket is gone), which httpcore does not expect and would
    let escape as a crash instead of the connection error it is (seen when an upstream
    shuts down while we connect). Reads and writes then fail the ordinary way."""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        tls = await self._inner.start_tls(ssl_context, server_hostname, timeout)
        return _ClosedSafeStream(tls)

    def get_extra_info(self, info: str) -> Any:
        try:
            return self._inner.get_extra_info(info)
        except (AttributeError, OSError):
            return None


async def _check_peer(stream: httpcore.AsyncNetworkStream, host: str) -> None:
    """The address the socket is connected to, checked again (whatever resolved it)."""
    sock = stream.get_extra_info("socket")
    if sock is None:
        return
    peer = str(sock.getpeername()[0])
    why = blocked(peer)
    if why is not None:
        await stream.aclose()
        raise AddressRefused(f"{host}: connected to {peer} ({why}); closing")


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a `GuardedBackend`. Proxies from the environment are not used
    (a proxy would connect on our behalf, past the address check)."""

    def __init__(self, backend: httpcore.AsyncNetworkBackend, limits: httpx.Limits) -> None:
        super().__init__(limits=limits, trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            network_backend=backend,
        )


def new_client(
    timeout: float, backend: httpcore.AsyncNetworkBackend, max_connections: int
) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=16)
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout, connect=min(5.0, timeout)),
        follow_redirects=False,  # hop by hop in Outbound.stream
        headers={"User-Agent": USER_AGENT},
        transport=GuardedTransport(backend, limits),
        trust_env=False,
    )


def safe_url(url: str) -> str:
    """`url` for a log: no userinfo, and no query when it may carry a token."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc.rpartition("@")[2]
    except ValueError:
        return "<an invalid URL>"
    query = f"?{parts.query}" if parts.query else ""
    if query and any(w in parts.query.lower() for w in _SECRET_WORDS):
        query = "?<redacted>"
    return f"{parts.scheme}://{netloc}{parts.path}{query}"


_SECRET_WORDS = ("token", "key", "sig", "secret", "pass", "auth", "credential", "session")


def _check_url(url: str, hosts: HostRule | None) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        raise Refused(f"{safe_url(url)} is not a valid URL") from None
    if parsed.scheme not in ("http", "https"):
        raise Refused(f"{safe_url(url)}: only http and https URLs are fetched")
    if not parsed.host:
        raise Refused(f"{safe_url(url)} has no host")
    if parsed.userinfo:
        raise Refused(
            f"{safe_url(url)} carries credentials in the URL; they are not sent (put them in"
            " COMPOSER_AUTH or SATCHEL_UPSTREAM_AUTH_FILE)"
        )
    host, port = endpoint(parsed)
    if hosts is not None and not hosts.allows(host, port):
        if hosts.hint:
            raise Refused(f"{host}:{port} is not allowed ({safe_url(url)}): {hosts.hint}")
        raise Refused(
            f"dist host {parsed.host} is not allowed ({safe_url(url)}); to mirror dists from"
            f" it, add {parsed.host} to SATCHEL_DIST_HOSTS"
        )
    return parsed


class Outbound:
    """Requests with redirects followed hop by hop, each hop checked, credentials by host."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        auth: UpstreamAuth,
        max_redirects: int = MAX_REDIRECTS,
        plain_http: Iterable[tuple[str, int]] = (),
    ) -> None:
        self.client = client
        self.auth = auth
        self.max_redirects = max_redirects
        # (host, port) of the http upstreams the operator configured: the only plain-http
        # hops credentials may go to.
        self.plain_http = frozenset((h.lower().strip("[]"), p) for h, p in plain_http)

    @asynccontextmanager
    async def stream(
        self,
        url: str,
        *,
        method: str = "GET",
        headers: dict[str, str] | None = None,
        data: dict[str, str] | list[tuple[str, str]] | None = None,
        hosts: HostRule | None = None,
    ) -> AsyncIterator[httpx.Response]:
        """The final response (not a redirect), its body unread. `hosts`: every hop's host
        must be in it (None: any host; addresses are checked either way). Raises Refused
        and httpx errors."""
        target = _check_url(url, hosts)
        origin = (target.host, target.port, target.scheme)
        content = urlencode(data).encode() if data is not None else None
        for _ in range(self.max_redirects + 1):
            sent = dict(headers or {})
            if content is not None:
                sent["Content-Type"] = "application/x-www-form-urlencoded"
            if _keeps_credentials(origin, target) and self._secure(target):
                credential = self.auth.for_host(target.host, target.port)
                if credential is not None:
                    sent.update(credential.headers)
            request = self.client.build_request(method, target, headers=sent, content=content)
            response = await self.client.send(request, stream=True)
            location = response.headers.get("Location")
            if response.status_code not in _REDIRECTS or not location:
                try:
                    yield response
                finally:
                    await response.aclose()
                return
            await response.aclose()
            if response.status_code == 303 or (
                response.status_code in (301, 302) and method == "POST"
            ):
                method, content = "GET", None
            target = _check_url(urljoin(str(target), location), hosts)
        raise Refused(f"{safe_url(url)}: more than {self.max_redirects} redirects")

    def _secure(self, target: httpx.URL) -> bool:
        """Whether credentials may go over this hop: https, or an http upstream the
        operator configured (its host and port)."""
        return target.scheme == "https" or endpoint(target) in self.plain_http


def _keeps_credentials(origin: tuple[str, int | None, str], target: httpx.URL) -> bool:
    """Credentials go to the first request's host and port only (never after a redirect
    to another host), and never over http when the first request was https."""
    host, port, scheme = origin
    same = (target.host, target.port) == (host, port)
    return same and not (scheme == "https" and target.scheme == "http")


_DECODED_PIECE = 256 * 1024  # the most one decompression step makes at a time
_DEFLATED = ("gzip", "x-gzip", "deflate")


async def iter_bounded(
    response: httpx.Response, limit: int, setting: str = "", chunk_size: int | None = None
) -> AsyncIterator[bytes]:
    """The decoded body in pieces, refused with TooLarge as soon as it passes `limit` bytes
    (`setting`: the variable that sets the bound, for the message). The raw bytes are read
    and a gzip or deflate encoding is decompressed here, at most `_DECODED_PIECE` bytes per
    step, so a small compressed chunk never inflates past the bound in memory; any other
    encoding (br, zstd, several) is refused."""
    where = f" ({setting})" if setting else ""
    url = safe_url(str(response.url))
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"{url}: {declared} bytes, over the bound of {limit}{where}")
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity", *_DEFLATED):
        raise Refused(f"{url}: Content-Encoding {encoding!r} is not decoded by the mirror")
    inflate = zlib.decompressobj(wbits=47) if encoding in _DEFLATED else None  # gzip or zlib
    size = 0
    raw_seen = False

    def count(piece: bytes) -> bytes:
        nonlocal size
        size += len(piece)
        if size > limit:
            raise TooLarge(f"{url}: over the bound of {limit} bytes{where}; cut off")
        return piece

    async for raw in response.aiter_raw(chunk_size):
        if inflate is None:
            yield count(raw)
            continue
        raw_seen = raw_seen or bool(raw)
        pending = raw
        while pending and not inflate.eof:
            try:
                piece = inflate.decompress(pending, min(limit - size + 1, _DECODED_PIECE))
            except zlib.error as exc:
                raise httpx.DecodingError(f"{url}: undecodable {encoding} body: {exc}") from None
            pending = inflate.unconsumed_tail
            if piece:
                yield count(piece)
    if inflate is not None and raw_seen and not inflate.eof:
        raise httpx.DecodingError(f"{url}: the {encoding} body is cut short")


async def read_bounded(response: httpx.Response, limit: int, setting: str = "") -> bytes:
    """The (decoded) body, refused with TooLarge as soon as it passes `limit` bytes
    (`setting`: the variable that sets the bound, for the message): `iter_bounded`."""
    return b"".join([piece async for piece in iter_bounded(response, limit, setting)])


__all__ = [
    "DEFAULT_DIST_HOSTS",
    "AddressRefused",
    "GuardedBackend",
    "HostRule",
    "Outbound",
    "Refused",
    "TooLarge",
    "endpoint",
    "iter_bounded",
    "new_client",
    "read_bounded",
    "safe_url",
]
