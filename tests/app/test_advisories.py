"""Security advisories through the mirror, from a packagist-shaped upstream."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from infra.local.composer_repo import ComposerRepo, packagist_repo
from tests.app.conftest import BASE, Mirror

MakeMirror = Callable[..., Mirror]
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def repo() -> Iterator[ComposerRepo]:
    upstream = packagist_repo().start()
    yield upstream
    upstream.stop()


@pytest.fixture
def mirror(make_mirror: MakeMirror, mirror_env: dict[str, str]) -> Mirror:
    return make_mirror(mirror_env)


def post(mirror: Mirror, *names: str) -> dict[str, list[dict[str, str]]]:
    body = "&".join(f"packages%5B%5D={name}" for name in names)
    response = mirror.client.post("/api/security-advisories/", content=body, headers=FORM)
    assert response.status_code == 200, response.text
    advisories: dict[str, list[dict[str, str]]] = response.json()["advisories"]
    return advisories


def test_packages_json_advertises_the_mirrors_advisories_api_and_passes_metadata_on(
    mirror: Mirror, repo: ComposerRepo
) -> None:
    root = mirror.get("/packages.json").json()
    assert root["security-advisories"] == {
        "metadata": True,
        "api-url": f"{BASE}/api/security-advisories/",
    }
    assert "metadata-changes-url" not in root  # the upstream's feed is the mirror's own business
    p2 = mirror.get("/p2/acme/log.json").json()
    assert p2["security-advisories"] == [
        {"advisoryId": "PKSA-test-0001", "affectedVersions": ">=1.1.0,<1.1.1"}
    ]
    repo.advisories_in_metadata = False
    mirror.clock.advance(301)
    assert mirror.get("/packages.json").json()["security-advisories"]["metadata"] is False


def test_without_an_upstream_api_nothing_is_advertised(
    make_mirror: MakeMirror, mirror_env: dict[str, str], repo: ComposerRepo
) -> None:
    repo.advisories_api = repo.advisories_in_metadata = False
    assert "security-advisories" not in make_mirror(mirror_env).get("/packages.json").json()


def test_post_and_get_answer_from_the_upstream_then_from_the_bucket_until_the_ttl(
    make_mirror: MakeMirror, mirror_env: dict[str, str], repo: ComposerRepo
) -> None:
    mirror = make_mirror(mirror_env)
    answer = post(mirror, "acme/log", "acme/util")
    assert [a["title"] for a in answer["acme/log"]] == ["Log injection in acme/log"]
    assert answer["acme/util"] == []
    assert repo.advisory_queries == [["acme/log", "acme/util"]]
    assert mirror.last_cache() == "miss"

    got = mirror.get("/api/security-advisories/?packages[]=acme/log&packages[]=acme/util")
    assert got.status_code == 200 and got.json()["advisories"] == answer
    assert got.headers["content-encoding"] == "gzip" and mirror.last_cache() == "hot"
    other = make_mirror(mirror_env)  # another replica: from the bucket
    assert post(other, "acme/util", "acme/log") == answer
    assert other.last_cache() == "stored" and len(repo.advisory_queries) == 1

    repo.add_advisory("acme/util", "<2.0")
    mirror.clock.advance(3599)
    assert post(mirror, "acme/util") == {"acme/util": []}
    mirror.clock.advance(2)
    assert len(post(mirror, "acme/util")["acme/util"]) == 1
    assert repo.advisory_queries[-1] == ["acme/util"]


def test_stored_advisories_are_served_stale_when_the_upstream_fails(
    mirror: Mirror, repo: ComposerRepo
) -> None:
    answer = post(mirror, "acme/log")
    repo.fail_with = 503
    mirror.clock.advance(7200)
    assert post(mirror, "acme/log") == answer
    assert mirror.last_cache() == "stale"
    asked = len(repo.advisory_queries)
    assert post(mirror, "acme/log") == answer  # the pause: not asked on every request
    assert len(repo.advisory_queries) == asked
    response = mirror.client.post(
        "/api/security-advisories/", content="packages[]=acme/never-asked", headers=FORM
    )
    assert response.status_code == 502  # never "no advisories" by mistake
    repo.fail_with = None


def test_private_packages_are_never_sent_upstream(
    make_mirror: MakeMirror, mirror_env: dict[str, str], repo: ComposerRepo
) -> None:
    mirror = make_mirror(mirror_env, SATCHEL_PRIVATE_VENDORS="internal")
    assert post(mirror, "internal/secret", "acme/util") == {"internal/secret": [], "acme/util": []}
    assert repo.advisory_queries == [["acme/util"]]
    assert (
        mirror.client.post("/api/security-advisories/", content="", headers=FORM).status_code == 400
    )


def test_metadata_advisories_and_the_feed_are_fetched_from_the_upstreams_own_host_only(
    make_mirror: MakeMirror,
    mirror_env: dict[str, str],
    repo: ComposerRepo,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An upstream whose packages.json points metadata-url, api-url and metadata-changes-url
    at another host:port (here one the address guard would let through): never asked, so
    credentials and the package names asked stay with the upstream; a clear log instead."""
    elsewhere = packagist_repo().start()
    original = repo.root_document

    def pointing() -> dict[str, Any]:
        root = original()
        root["metadata-url"] = f"{elsewhere.url}/p2/%package%.json"
        root["metadata-changes-url"] = f"{elsewhere.url}/metadata/changes.json"
        root["security-advisories"]["api-url"] = f"{elsewhere.url}/api/security-advisories/"
        return root

    monkeypatch.setattr(repo, "root_document", pointing)
    try:
        mirror = make_mirror(mirror_env, SATCHEL_DIST_HOSTS="127.0.0.1")
        assert mirror.get("/packages.json").status_code == 200
        assert mirror.get("/p2/acme/log.json").status_code == 502
        response = mirror.client.post(
            "/api/security-advisories/", content="packages[]=acme/log", headers=FORM
        )
        assert response.status_code == 502
        assert sum(elsewhere.requests.values()) == 0
        assert "fetched from its own host and port only" in caplog.text
    finally:
        elsewhere.stop()


def test_an_upstream_never_reached_makes_advisories_unknown_not_none(
    make_mirror: MakeMirror, mirror_env: dict[str, str], repo: ComposerRepo
) -> None:
    """Its packages.json cannot be fetched and none is stored: a 502 with a request id, never
    200 `[]`; packages.json keeps advertising the API (Composer would otherwise skip it)."""
    repo.fail_with = 503
    mirror = make_mirror(mirror_env)
    response = mirror.client.post(
        "/api/security-advisories/", content="packages[]=acme/log", headers=FORM
    )
    assert response.status_code == 502, response.text
    assert response.json()["request_id"] in response.json()["error"]
    root = mirror.get("/packages.json").json()
    assert root["security-advisories"] == {
        "metadata": False,
        "api-url": f"{BASE}/api/security-advisories/",
    }
    repo.fail_with = None
