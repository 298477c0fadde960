"""Mirrored dists through the app: fetched once from the upstream, then from the bucket."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

import runtime
from infra.local.composer_repo import ComposerRepo
from tests.app.conftest import BASE, Mirror
from tests.mirror_helpers import RequestCounter

MakeMirror = Callable[..., Mirror]


@pytest.fixture(params=["stateless", "cache-dirs"])
def env(
    request: pytest.FixtureRequest, mirror_env: dict[str, str], tmp_path: Path
) -> dict[str, str]:
    if request.param == "stateless":
        return mirror_env
    return {
        **mirror_env,
        "MIRROR_METADATA_CACHE_DIR": str(tmp_path / "meta-cache"),
        "MIRROR_DIST_CACHE_DIR": str(tmp_path / "dist-cache"),
    }


def dist_path(mirror: Mirror, name: str, version: str) -> str:
    versions = mirror.get(f"/p2/{name}.json").json()["packages"][name]
    url: str = next(v["dist"]["url"] for v in versions if v["version"] == version)
    assert url.startswith(BASE)
    return url.removeprefix(BASE)


def test_a_dist_is_fetched_once_stored_and_served_byte_for_byte(
    make_mirror: MakeMirror, env: dict[str, str], repo: ComposerRepo
) -> None:
    mirror = make_mirror(env)
    release = repo.release("acme/util", "1.0.0")
    path = dist_path(mirror, "acme/util", "1.0.0")

    first = mirror.get(path)
    assert first.status_code == 200 and mirror.last_cache() == "miss"
    assert first.content == release.archive
    assert hashlib.sha1(first.content).hexdigest() == release.shasum
    assert first.headers["content-type"] == "application/zip"
    assert first.headers["content-length"] == str(len(release.archive))
    assert "immutable" in first.headers["cache-control"]

    for _ in range(2):  # from the bucket (or the local cache) now
        again = mirror.get(path)
        assert again.content == release.archive and mirror.last_cache() == "stored"
        assert again.headers["etag"] == first.headers["etag"]
        assert again.headers["last-modified"] == first.headers["last-modified"]
    assert repo.requests["/dists/acme/util/1.0.0.zip"] == 1
    stats = mirror.client.app.state.mirror.stats.snapshot()
    # With a dist cache the first bucket read filled it: the repeats were local file reads.
    assert stats["dist_hits"] == (2 if env["MIRROR_DIST_CACHE_DIR"] else 0)


def test_dists_answer_304_to_if_none_match_and_if_modified_since(
    make_mirror: MakeMirror, env: dict[str, str]
) -> None:
    mirror = make_mirror(env)
    path = dist_path(mirror, "acme/log", "1.1.0")
    first = mirror.get(path)
    assert mirror.get(path, **{"If-None-Match": first.headers["etag"]}).status_code == 304
    since = {"If-Modified-Since": first.headers["last-modified"]}
    assert mirror.get(path, **since).status_code == 304
    # An instance that never served it checks against the stored object, not a local file.
    other = make_mirror(env)
    assert other.get(path, **{"If-None-Match": first.headers["etag"]}).status_code == 304


def test_a_second_instance_serves_stored_dists_with_the_upstream_stopped(
    make_mirror: MakeMirror, env: dict[str, str], repo: ComposerRepo, tmp_path: Path
) -> None:
    mirror = make_mirror(env)
    paths = {v: dist_path(mirror, "acme/app-lib", v) for v in ("1.0.0", "1.2.0")}
    originals = {v: mirror.get(p) for v, p in paths.items()}
    repo.stop()

    # Only the bucket is shared: fresh cache dirs when the first had some.
    fresh_dirs = {
        var: str(tmp_path / f"second-{var}")
        for var in env
        if var.startswith("MIRROR_") and env[var]
    }
    other = make_mirror({**env, **fresh_dirs})
    for version, path in paths.items():
        served = other.get(path)
        assert served.status_code == 200
        assert served.content == repo.release("acme/app-lib", version).archive
        assert served.headers["etag"] == originals[version].headers["etag"]
        assert served.headers["last-modified"] == originals[version].headers["last-modified"]


def test_a_dist_the_mirror_never_advertised_is_a_404(
    make_mirror: MakeMirror, env: dict[str, str], alias: str, repo: ComposerRepo
) -> None:
    mirror = make_mirror(env)
    dist_path(mirror, "acme/log", "1.0.0")
    made_up = f"/dists/{alias}/acme/log/6.6.6-{'0' * 40}.zip"
    assert mirror.get(made_up).status_code == 404
    assert mirror.get(made_up).status_code == 404 and mirror.last_cache() == "absent"
    assert mirror.get(f"/dists/nope/acme/log/1.0.0-{'0' * 40}.zip").status_code == 404
    assert mirror.get(f"/dists/{alias}/acme/log/1.0.0.exe").status_code == 404
    assert mirror.get(f"/dists/{alias}/acme/log/1.0.0%0A.zip").status_code == 404
    assert sum(n for p, n in repo.requests.items() if p.startswith("/dists/")) == 0


def test_a_dist_whose_bytes_do_not_match_the_shasum_is_refused_and_not_stored(
    make_mirror: MakeMirror, env: dict[str, str], repo: ComposerRepo
) -> None:
    mirror = make_mirror(env)
    path = dist_path(mirror, "acme/log", "1.0.0")
    repo.release("acme/log", "1.0.0").archive += b"tampered"

    shasum = repo.release("acme/log", "1.0.0").shasum
    for _ in range(3):
        response = mirror.get(path)
        assert response.status_code == 502
        body = response.json()
        assert "did not match its checksum" in body["error"] and body["request_id"]
        assert shasum not in response.text and "127.0.0.1" not in response.text
        # Remembered: downloaded once, not once per request (and nothing was stored).
        assert repo.requests["/dists/acme/log/1.0.0.zip"] == 1
        assert mirror.logs()[-1]["request_id"] == body["request_id"]
    storages = runtime.open_storages(runtime.load_settings(env))
    assert list(storages.mirror_dist.list(path.removeprefix("/dists/").rsplit("/", 1)[0])) == []


def test_a_dist_refused_as_too_large_is_remembered_not_downloaded_on_every_request(
    make_mirror: MakeMirror, env: dict[str, str], repo: ComposerRepo
) -> None:
    mirror = make_mirror(env, SATCHEL_MAX_DIST_SIZE="10")
    path = dist_path(mirror, "acme/log", "1.0.0")
    for _ in range(3):
        response = mirror.get(path)
        assert response.status_code == 502
        assert "larger than the mirror accepts" in response.json()["error"]
        assert repo.requests["/dists/acme/log/1.0.0.zip"] == 1  # asked once, then remembered


def test_a_head_request_sends_the_headers_without_the_body(
    make_mirror: MakeMirror, env: dict[str, str], repo: ComposerRepo
) -> None:
    mirror = make_mirror(env)
    path = dist_path(mirror, "acme/log", "1.1.0")
    head = mirror.client.head(path)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(repo.release("acme/log", "1.1.0").archive))


def test_a_stored_dist_is_served_with_one_get_and_no_head(
    make_mirror: MakeMirror, mirror_env: dict[str, str], repo: ComposerRepo
) -> None:
    """Stateless: the bucket's answer carries the validators; nobody HEADs the object."""
    first = make_mirror(mirror_env)
    path = dist_path(first, "acme/log", "1.0.0")
    assert first.get(path).status_code == 200  # mirrored into the bucket
    second = make_mirror(mirror_env)  # another replica, nothing in memory
    second.get("/p2/acme/nothing.json")  # (reads the private index, kept for the TTL)
    requests = RequestCounter(second.client.app.state.mirror)
    response = second.get(path)
    assert response.status_code == 200 and response.headers["etag"]
    assert response.content == repo.release("acme/log", "1.0.0").archive
    assert requests.take() == {"GetObject": 1}
