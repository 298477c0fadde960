"""Stale-if-error for every way an upstream can fail, against a real HTTP server playing a
bad upstream: once a copy is stored, whatever the upstream then does, clients get that copy."""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from runtime.app.upstream import safe_url
from tests.app.conftest import Mirror

MakeMirror = Callable[..., Mirror]
SECRET = "s3cr3t-t0ken"

P2 = {
    "packages": {
        "acme/log": [
            {
                "name": "acme/log",
                "version": "1.0.0",
                "dist": {"type": "zip", "url": "http://127.0.0.1:9/log.zip", "shasum": ""},
            }
        ]
    },
    "minified": "composer/2.0",
}


@dataclass
class BadUpstream:
    """A Composer repository that serves well until told how to misbehave."""

    metadata_url: str = "/p2/%package%.json"
    misbehave: str | None = None  # applies to p2 documents only
    requests: Counter[str] = field(default_factory=Counter)
    authorizations: set[str | None] = field(default_factory=set)
    server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.server_address[1]

    def url(self, userinfo: str = "") -> str:
        return f"http://{userinfo}127.0.0.1:{self.port}"

    def start(self) -> BadUpstream:
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                upstream._serve(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        path = handler.path
        self.requests[path] += 1
        self.authorizations.add(handler.headers.get("Authorization"))
        if path == "/packages.json":
            body = json.dumps({"packages": [], "metadata-url": self.metadata_url}).encode()
            _send(handler, 200, {}, body)
        elif path == "/p2/acme/log.json" and self.misbehave is not None:
            _send(handler, *MISBEHAVIOURS[self.misbehave](path))
        elif path == "/p2/acme/log.json":
            _send(handler, 200, {}, json.dumps(P2).encode())
        else:
            _send(handler, 404, {}, b"")


def _send(
    handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: bytes
) -> None:
    handler.send_response(status)
    for name, value in {"Content-Length": str(len(body)), **headers}.items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)


MISBEHAVIOURS: dict[str, Callable[[str], tuple[int, dict[str, str], bytes]]] = {
    "redirect-loop": lambda path: (302, {"Location": path}, b""),
    "corrupt-gzip": lambda path: (200, {"Content-Encoding": "gzip"}, b"\x1f\x8bnot gzip at all"),
    "bad-location": lambda path: (302, {"Location": "http://[::1/x"}, b""),
    "not-json": lambda path: (200, {}, b"<html>maintenance</html>"),
    "nested-json": lambda path: (200, {}, b"[" * 200_000),
    "not-utf8": lambda path: (200, {}, b'{"packages": {"\xff\xfe": []}}'),
}


@pytest.fixture
def upstream() -> Iterator[BadUpstream]:
    server = BadUpstream().start()
    yield server
    server.stop()


@pytest.fixture
def env(local_env: dict[str, str], upstream: BadUpstream) -> dict[str, str]:
    return {
        **local_env,
        "SATCHEL_UPSTREAMS": f"up={upstream.url()}",
        "COMPOSER_AUTH": json.dumps(
            {"http-basic": {"127.0.0.1": {"username": "mirror", "password": SECRET}}}
        ),
        "SATCHEL_UPSTREAM_RETRIES": "1",
        "SATCHEL_UPSTREAM_TTL": "60",
    }


@pytest.mark.parametrize("misbehaviour", sorted(MISBEHAVIOURS))
def test_a_stored_copy_is_served_whatever_the_upstream_then_does(
    make_mirror: MakeMirror,
    env: dict[str, str],
    upstream: BadUpstream,
    misbehaviour: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    mirror = make_mirror(env)
    stored = mirror.get("/p2/acme/log.json")
    assert stored.status_code == 200
    basic = base64.b64encode(f"mirror:{SECRET}".encode()).decode()
    assert upstream.authorizations == {f"Basic {basic}"}  # COMPOSER_AUTH's, by host

    upstream.misbehave = misbehaviour
    mirror.clock.advance(61)  # past the TTL: the next request asks the upstream
    with caplog.at_level(logging.INFO):
        stale = mirror.get("/p2/acme/log.json")
    assert (stale.status_code, stale.content) == (200, stored.content)
    assert mirror.last_cache() == "stale"
    assert SECRET not in caplog.text

    asked = upstream.requests["/p2/acme/log.json"]
    assert mirror.get("/p2/acme/log.json").status_code == 200  # not asked again at once
    assert upstream.requests["/p2/acme/log.json"] == asked


def test_an_invalid_metadata_url_from_the_upstream_keeps_the_stored_copies(
    make_mirror: MakeMirror, env: dict[str, str], upstream: BadUpstream
) -> None:
    mirror = make_mirror(env)
    stored = mirror.get("/p2/acme/log.json")
    assert stored.status_code == 200

    upstream.metadata_url = "/p2/\x01%package%.json"  # httpx: InvalidURL
    mirror.clock.advance(61)
    stale = mirror.get("/p2/acme/log.json")
    assert (stale.status_code, stale.content) == (200, stored.content)
    assert mirror.last_cache() == "stale"


@pytest.mark.parametrize("misbehaviour", ["redirect-loop", "corrupt-gzip", "bad-location"])
def test_without_a_stored_copy_the_failure_is_a_502_that_names_no_credential(
    make_mirror: MakeMirror,
    env: dict[str, str],
    upstream: BadUpstream,
    misbehaviour: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    upstream.misbehave = misbehaviour
    with caplog.at_level(logging.INFO):
        failed = make_mirror(env).get("/p2/acme/log.json")
    assert failed.status_code == 502
    assert "upstream unavailable" in failed.json()["error"]
    assert SECRET not in failed.text and SECRET not in caplog.text


def test_safe_url_drops_the_userinfo_and_queries_that_may_carry_a_token() -> None:
    assert (
        safe_url("https://u:p%40ss@repo.example/p2/a/b.json") == "https://repo.example/p2/a/b.json"
    )
    assert safe_url("https://repo.example/a@b") == "https://repo.example/a@b"
    assert (
        safe_url("https://codeload.example/z?token=abc") == "https://codeload.example/z?<redacted>"
    )
    assert safe_url("https://repo.example/p?page=2") == "https://repo.example/p?page=2"
