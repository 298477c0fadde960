"""The upstream client on its own, against the test repository."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import httpx
import pytest

from infra.local.composer_repo import ComposerRepo
from runtime.app.outbound import HostRule
from runtime.app.upstream import HOST_PAUSE, UpstreamClient, UpstreamError, Validators, new_client
from tests.app.conftest import Clock

T = TypeVar("T")


def run(make: Callable[[UpstreamClient], Awaitable[T]], clock: Clock, retries: int = 2) -> T:
    async def sleep(seconds: float) -> None:  # the backoff, without the wait
        pass

    async def main() -> T:
        async with new_client(5, HostRule.of(["127.0.0.1"])) as http:
            return await make(UpstreamClient(http, retries, sleep=sleep, clock=clock))

    # A loop of our own, never made current: asyncio.run() would leave the main thread
    # without one, and the Pulumi tests later in the session need theirs.
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


def test_a_conditional_fetch_of_an_unchanged_document_is_a_304(repo: ComposerRepo) -> None:
    clock = Clock()

    async def twice(client: UpstreamClient) -> tuple[int, int]:
        first = await client.fetch(f"{repo.url}/p2/acme/log.json")
        second = await client.fetch(f"{repo.url}/p2/acme/log.json", first.validators)
        return first.status, second.status

    assert run(twice, clock) == (200, 304)
    assert run(lambda c: c.fetch(f"{repo.url}/p2/acme/none.json"), clock).status == 404


def test_5xx_answers_are_retried_and_then_the_host_rests(repo: ComposerRepo) -> None:
    repo.fail_with = 503
    clock = Clock()
    url = f"{repo.url}/p2/acme/log.json"

    async def three_calls(client: UpstreamClient) -> list[str]:
        errors = []
        for advance in (0, 1, HOST_PAUSE):
            clock.advance(advance)
            try:
                await client.fetch(url, Validators())
            except UpstreamError as exc:
                errors.append(str(exc))
        return errors

    errors = run(three_calls, clock)
    assert "HTTP 503" in errors[0] and "failed less than" in errors[1] and "HTTP 503" in errors[2]
    assert repo.requests["/p2/acme/log.json"] == 2 * 3  # two rounds of 1 + 2 retries


def test_a_download_is_checked_against_its_shasum(repo: ComposerRepo) -> None:
    release = repo.release("acme/log", "1.0.0")
    url = f"{repo.url}/dists/acme/log/1.0.0.zip"
    sink = io.BytesIO()
    assert run(lambda c: c.download(url, sink, release.shasum), Clock()) is True
    assert sink.getvalue() == release.archive
    with pytest.raises(UpstreamError, match="SHA-1"):
        run(lambda c: c.download(url, io.BytesIO(), "0" * 40), Clock())
    assert run(lambda c: c.download(f"{url}.gone", io.BytesIO(), None), Clock()) is False


@pytest.fixture
def slow_server() -> Iterator[str]:
    """An upstream whose /slow answers after half a second, and anything else at once."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/slow":
                time.sleep(0.5)
            body = b"{}"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_an_exhausted_local_pool_fails_fast_and_does_not_pause_the_host(slow_server: str) -> None:
    async def sleep(seconds: float) -> None:
        pass

    async def main() -> tuple[str, int]:
        one_connection = httpx.AsyncClient(
            timeout=httpx.Timeout(5, pool=0.1), limits=httpx.Limits(max_connections=1)
        )
        async with one_connection as http:
            client = UpstreamClient(http, retries=2, sleep=sleep, clock=Clock())
            slow = asyncio.ensure_future(client.fetch(f"{slow_server}/slow"))
            await asyncio.sleep(0.05)  # the slow request holds the only connection
            with pytest.raises(UpstreamError, match="pool") as busy:
                await client.fetch(f"{slow_server}/fast")
            await slow
            # The pool is ours: the host was never at fault and is asked again at once.
            return str(busy.value), (await client.fetch(f"{slow_server}/fast")).status

    loop = asyncio.new_event_loop()
    try:
        message, status = loop.run_until_complete(main())
    finally:
        loop.close()
    assert "the host was not asked" in message and status == 200
