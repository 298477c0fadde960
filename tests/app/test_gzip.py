"""gzip-encoded metadata: once per rendering, its own validators, `Vary: Accept-Encoding`."""

from __future__ import annotations

import gzip
from collections.abc import Callable

import pytest

from runtime.app import http
from runtime.app.http import accepts_gzip
from tests.app.conftest import Mirror

MakeMirror = Callable[..., Mirror]
PLAIN = {"Accept-Encoding": "identity"}
GZIP = {"Accept-Encoding": "gzip"}


def raw(mirror: Mirror, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    """The response as sent: no decoding by the test client."""
    with mirror.client.stream("GET", path, headers=headers) as response:
        return response.status_code, dict(response.headers), b"".join(response.iter_raw())


@pytest.mark.parametrize("path", ["/packages.json", "/p2/acme/log.json"])
def test_metadata_is_gzip_encoded_for_clients_that_accept_it_with_its_own_etag(
    make_mirror: MakeMirror, mirror_env: dict[str, str], path: str
) -> None:
    mirror = make_mirror(mirror_env)
    status, plain_headers, plain = raw(mirror, path, PLAIN)
    assert status == 200 and "content-encoding" not in plain_headers
    status, gzip_headers, encoded = raw(mirror, path, GZIP)
    assert status == 200 and gzip_headers["content-encoding"] == "gzip"
    assert gzip.decompress(encoded) == plain
    for headers in (plain_headers, gzip_headers):
        assert headers["vary"] == "Host, Accept-Encoding"
    assert gzip_headers["etag"] == plain_headers["etag"][:-1] + '-gzip"'
    # 304s per encoding; the other encoding's ETag does not match.
    for headers, own, other in (
        (GZIP, gzip_headers, plain_headers),
        (PLAIN, plain_headers, gzip_headers),
    ):
        assert raw(mirror, path, {**headers, "If-None-Match": own["etag"]})[0] == 304
        assert raw(mirror, path, {**headers, "If-None-Match": other["etag"]})[0] == 200
        since = {"If-Modified-Since": own["last-modified"]}
        assert raw(mirror, path, {**headers, **since})[0] == 304


def test_a_rendering_is_compressed_once_not_per_request(
    make_mirror: MakeMirror, mirror_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror = make_mirror(mirror_env)
    calls: list[int] = []
    compress = http._compress
    monkeypatch.setattr(http, "_compress", lambda body: calls.append(len(body)) or compress(body))
    for _ in range(5):
        for path in ("/packages.json", "/p2/acme/log.json", "/p2/acme/util.json"):
            assert raw(mirror, path, GZIP)[0] == 200
    assert len(calls) == 3


def test_accept_encoding_is_parsed_with_q_values() -> None:
    assert accepts_gzip("gzip, deflate, br")
    assert accepts_gzip("deflate, gzip;q=0.5")
    assert accepts_gzip("*")
    assert not accepts_gzip(None) and not accepts_gzip("") and not accepts_gzip("identity")
    assert not accepts_gzip("gzip;q=0") and not accepts_gzip("br, gzip; q=0.0")
    assert not accepts_gzip("*;q=0") and accepts_gzip("gzip, *;q=0")
