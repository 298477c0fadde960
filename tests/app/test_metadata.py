"""Mirrored metadata through the app, with storage on the local IRSA target."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from infra.local.composer_repo import ComposerRepo
from runtime.app.documents import ERROR_RETRY
from tests.app.conftest import BASE, Mirror

MakeMirror = Callable[..., Mirror]


@pytest.fixture
def mirror(make_mirror: MakeMirror, mirror_env: dict[str, str]) -> Mirror:
    return make_mirror(mirror_env)


def test_packages_json_is_v2_only_with_an_absolute_metadata_url(mirror: Mirror, alias: str) -> None:
    root = mirror.get("/packages.json")
    assert root.status_code == 200
    assert root.json() == {"packages": [], "metadata-url": f"{BASE}/p2/%package%.json"}
    assert root.headers["etag"].startswith('"') and root.headers["last-modified"].endswith("GMT")

    one = mirror.get(f"/{alias}/packages.json")
    assert one.json()["metadata-url"] == f"{BASE}/{alias}/p2/%package%.json"
    assert mirror.get("/nope/packages.json").status_code == 404


def test_a_public_url_puts_the_mirror_under_a_sub_path(
    make_mirror: MakeMirror, mirror_env: dict[str, str], alias: str
) -> None:
    mirror = make_mirror(mirror_env, SATCHEL_PUBLIC_URL="https://example.com/composer/")
    root = mirror.get("/packages.json", Host="example.com").json()
    assert root["metadata-url"] == "https://example.com/composer/p2/%package%.json"
    p2 = mirror.get("/p2/acme/log.json", Host="example.com").json()
    dist = p2["packages"]["acme/log"][0]["dist"]
    assert dist["url"].startswith(f"https://example.com/composer/dists/{alias}/acme/log/")


def test_available_packages_are_passed_on_and_others_are_404_without_asking_upstream(
    make_mirror: MakeMirror, mirror_env: dict[str, str], repo: ComposerRepo
) -> None:
    repo.available_packages = ["acme/log", "acme/util", "acme/app-lib"]
    mirror = make_mirror(mirror_env)
    assert mirror.get("/packages.json").json()["available-packages"] == [
        "acme/app-lib",
        "acme/log",
        "acme/util",
    ]
    assert mirror.get("/p2/other/thing.json").status_code == 404
    assert repo.requests["/p2/other/thing.json"] == 0
    assert mirror.get("/p2/acme/log.json").status_code == 200


def test_p2_dist_urls_point_at_the_mirror_and_keep_shasum_type_and_reference(
    mirror: Mirror, repo: ComposerRepo, alias: str
) -> None:
    response = mirror.get("/p2/acme/app-lib.json")
    assert response.status_code == 200
    document = response.json()
    assert document["minified"] == "composer/2.0"
    versions = document["packages"]["acme/app-lib"]
    assert [v["version"] for v in versions] == ["1.2.0", "1.0.0"]
    for version in versions:
        release = repo.release("acme/app-lib", version["version"])
        dist = version["dist"]
        assert dist["url"] == (
            f"{BASE}/dists/{alias}/acme/app-lib/{release.version}-{release.reference}.zip"
        )
        assert (dist["type"], dist["shasum"], dist["reference"]) == (
            "zip",
            release.shasum,
            release.reference,
        )
    # The same document through the upstream's own path.
    assert mirror.get(f"/{alias}/p2/acme/app-lib.json").json() == document


def test_metadata_answers_304_to_if_modified_since_and_if_none_match(mirror: Mirror) -> None:
    first = mirror.get("/p2/acme/log.json")
    etag, modified = first.headers["etag"], first.headers["last-modified"]

    assert mirror.get("/p2/acme/log.json", **{"If-Modified-Since": modified}).status_code == 304
    assert mirror.get("/p2/acme/log.json", **{"If-None-Match": etag}).status_code == 304
    again = mirror.get("/p2/acme/log.json", **{"If-None-Match": '"other"'})
    assert again.status_code == 200 and again.content == first.content
    older = "Mon, 01 Jan 2001 00:00:00 GMT"
    assert mirror.get("/p2/acme/log.json", **{"If-Modified-Since": older}).status_code == 200
    root = mirror.get("/packages.json")
    conditional = {"If-Modified-Since": root.headers["last-modified"]}
    assert mirror.get("/packages.json", **conditional).status_code == 304


def test_two_instances_sharing_the_bucket_send_the_same_validators(
    make_mirror: MakeMirror, mirror_env: dict[str, str], repo: ComposerRepo
) -> None:
    first = make_mirror(mirror_env).get("/p2/acme/util.json")
    asked = repo.requests["/p2/acme/util.json"]

    other = make_mirror(mirror_env)
    second = other.get("/p2/acme/util.json")
    assert other.last_cache() == "stored"
    assert repo.requests["/p2/acme/util.json"] == asked  # from the bucket, not the upstream
    assert second.content == first.content
    assert second.headers["etag"] == first.headers["etag"]
    assert second.headers["last-modified"] == first.headers["last-modified"]
    root_a, root_b = (m.get("/packages.json") for m in (make_mirror(mirror_env), other))
    assert root_a.headers["etag"] == root_b.headers["etag"]


def test_a_package_the_upstream_lacks_is_a_404_remembered_for_the_negative_ttl(
    mirror: Mirror, repo: ComposerRepo
) -> None:
    assert mirror.get("/p2/acme/missing.json").status_code == 404
    assert mirror.get("/p2/acme/missing.json").status_code == 404
    assert repo.requests["/p2/acme/missing.json"] == 1
    assert mirror.last_cache() == "negative"

    mirror.clock.advance(61)
    assert mirror.get("/p2/acme/missing.json").status_code == 404
    assert repo.requests["/p2/acme/missing.json"] == 2
    assert mirror.get("/p2/Not A Name/x.json").status_code == 404
    assert mirror.get("/p2/acme/log%0A.json").status_code == 404  # rejected before any I/O


def test_a_new_release_appears_after_the_ttl_through_a_conditional_request(
    mirror: Mirror, repo: ComposerRepo
) -> None:
    before = mirror.get("/p2/acme/log.json")
    repo.add("acme/log", "1.2.0")
    cached = mirror.get("/p2/acme/log.json")
    assert cached.content == before.content  # within the TTL: no upstream request
    assert repo.requests["/p2/acme/log.json"] == 1

    mirror.clock.advance(301)
    after = mirror.get("/p2/acme/log.json")
    assert mirror.last_cache() == "refreshed"
    assert after.json()["packages"]["acme/log"][0]["version"] == "1.2.0"
    assert after.headers["etag"] != before.headers["etag"]
    assert [path for path, since in repo.conditional if since] == ["/p2/acme/log.json"]


def test_an_unchanged_upstream_answers_304_and_nothing_is_rewritten(
    make_mirror: MakeMirror, mirror_env: dict[str, str], repo: ComposerRepo
) -> None:
    mirror = make_mirror(mirror_env)
    before = mirror.get("/p2/acme/util.json")
    mirror.clock.advance(301)
    after = mirror.get("/p2/acme/util.json")
    assert mirror.last_cache() == "revalidated"
    assert repo.conditional == [("/p2/acme/util.json", repo_last_modified(repo, "acme/util"))]
    assert after.headers["etag"] == before.headers["etag"]
    assert after.headers["last-modified"] == before.headers["last-modified"]
    # Nothing was written: a fresh instance reads the very same object.
    fresh = make_mirror(mirror_env).get("/p2/acme/util.json")
    assert fresh.headers["last-modified"] == before.headers["last-modified"]


def repo_last_modified(repo: ComposerRepo, name: str) -> str:
    from email.utils import formatdate

    return formatdate(repo._modified[name], usegmt=True)


@pytest.fixture
def failing(request: pytest.FixtureRequest, repo: ComposerRepo) -> Iterator[str]:
    """The upstream goes down in one of two ways: stopped, or answering 503."""
    yield request.param
    repo.fail_with = None


@pytest.mark.parametrize("failing", ["stopped", "503"], indirect=True)
def test_stale_if_error_serves_the_stored_copy_past_its_ttl(
    make_mirror: MakeMirror,
    mirror_env: dict[str, str],
    repo: ComposerRepo,
    failing: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    mirror = make_mirror(mirror_env)
    before = mirror.get("/p2/acme/util.json")
    mirror.get("/packages.json")
    if failing == "stopped":
        repo.stop()
    else:
        repo.fail_with = 503

    mirror.clock.advance(301)
    stale = mirror.get("/p2/acme/util.json")
    assert stale.status_code == 200 and stale.content == before.content
    assert stale.headers["etag"] == before.headers["etag"]
    assert mirror.last_cache() == "stale"
    assert "serving the stored copy" in caplog.text
    # An instance that never saw it, long after the TTL, serves the stored copy too.
    later = make_mirror(mirror_env)
    later.clock.advance(3600)
    assert later.get("/p2/acme/util.json").content == before.content
    assert later.get("/packages.json").status_code == 200
    # And asks again only after a pause, not on every request.
    asked = sum(repo.requests.values())
    mirror.clock.advance(ERROR_RETRY / 2)
    assert mirror.get("/p2/acme/util.json").status_code == 200
    assert sum(repo.requests.values()) == asked


def test_an_upstream_down_with_nothing_stored_is_a_502(mirror: Mirror, repo: ComposerRepo) -> None:
    repo.stop()
    response = mirror.get("/p2/acme/log.json")
    assert response.status_code == 502
    assert "upstream unavailable" in response.json()["error"]


def test_several_upstreams_are_searched_in_order(
    make_mirror: MakeMirror, pod_env: dict[str, str], repo: ComposerRepo, alias: str
) -> None:
    second = ComposerRepo()
    second.add("beta/only-here", "2.0.0")
    second.add("acme/log", "9.9.9")  # shadowed: the first upstream has acme/log
    second.start()
    try:
        env = {**pod_env, "SATCHEL_UPSTREAMS": f"{alias}={repo.url},{alias}-b={second.url}"}
        mirror = make_mirror(env)
        only = mirror.get("/p2/beta/only-here.json").json()["packages"]["beta/only-here"]
        assert only[0]["dist"]["url"].startswith(f"{BASE}/dists/{alias}-b/beta/only-here/")
        log = mirror.get("/p2/acme/log.json").json()["packages"]["acme/log"]
        assert [v["version"] for v in log] == ["1.1.0", "1.0.0"]
        assert second.requests["/p2/acme/log.json"] == 0
        direct = mirror.get(f"/{alias}-b/p2/acme/log.json").json()["packages"]["acme/log"]
        assert direct[0]["version"] == "9.9.9"
    finally:
        second.stop()


def test_the_access_log_has_one_json_line_per_request(mirror: Mirror) -> None:
    mirror.get("/p2/acme/log.json")
    mirror.get("/p2/acme/log.json")
    mirror.get("/healthz")
    lines = mirror.logs()
    assert [(line["path"], line["status"], line["cache"]) for line in lines] == [
        ("/p2/acme/log.json", 200, "miss"),
        ("/p2/acme/log.json", 200, "hot"),
        ("/healthz", 200, "-"),
    ]
    assert all(line["method"] == "GET" and line["duration_ms"] >= 0 for line in lines)
    assert lines[0]["bytes"] == lines[1]["bytes"] > 0
