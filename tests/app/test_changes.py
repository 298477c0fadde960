"""The changes feed of a packagist-shaped upstream: one request per interval instead of one
conditional request per stored document per TTL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from infra.local.composer_repo import ComposerRepo, packagist_repo
from runtime.app.documents import Documents
from tests.app.conftest import Clock, Mirror

MakeMirror = Callable[..., Mirror]
FEED = "/metadata/changes.json"


@pytest.fixture
def repo() -> Iterator[ComposerRepo]:
    upstream = packagist_repo().start()
    yield upstream
    upstream.stop()


def p2_requests(repo: ComposerRepo) -> int:
    return sum(n for path, n in repo.requests.items() if path.startswith("/p2/"))


def test_unchanged_documents_are_not_revalidated_and_a_named_one_is_refreshed_at_once(
    make_mirror: MakeMirror, mirror_env: dict[str, str], repo: ComposerRepo
) -> None:
    mirror = make_mirror(mirror_env)
    for name in ("acme/log", "acme/util"):
        assert mirror.get(f"/p2/{name}.json").status_code == 200
    assert repo.requests[FEED] == 1
    before = p2_requests(repo)
    for _ in range(12):  # an hour: no conditional requests, one feed read a minute
        mirror.clock.advance(300)
        for _ in range(5):
            mirror.get("/p2/acme/util.json")
    assert p2_requests(repo) == before and repo.conditional == []
    assert mirror.last_cache() == "hot"
    assert repo.requests[FEED] == 13  # reads happen only when a request comes and one is due

    repo.add("acme/log", "1.3.0")
    mirror.get("/p2/acme/log.json")
    assert mirror.last_cache() == "hot"  # within the interval: the feed was not read yet
    mirror.clock.advance(61)
    fresh = mirror.get("/p2/acme/log.json")
    assert mirror.last_cache() == "refreshed"
    assert fresh.json()["packages"]["acme/log"][0]["version"] == "1.3.0"
    assert [path for path, _ in repo.conditional] == ["/p2/acme/log.json"]
    mirror.get("/p2/acme/util.json")
    assert mirror.last_cache() == "hot"


def test_another_replica_takes_a_refreshed_document_from_the_bucket(
    make_mirror: MakeMirror, mirror_env: dict[str, str], repo: ComposerRepo
) -> None:
    clock = Clock()
    first, second = make_mirror(mirror_env, clock), make_mirror(mirror_env, clock)
    for mirror in (first, second):
        mirror.get("/p2/acme/log.json")
    repo.add("acme/log", "1.3.0")
    clock.advance(61)
    first.get("/p2/acme/log.json")
    asked = p2_requests(repo)
    second.get("/p2/acme/log.json")
    assert second.last_cache() == "stored" and p2_requests(repo) == asked


def test_a_resync_or_a_failing_feed_falls_back_on_revalidation(
    make_mirror: MakeMirror, mirror_env: dict[str, str], repo: ComposerRepo
) -> None:
    mirror = make_mirror(mirror_env)
    mirror.get("/p2/acme/util.json")
    repo.feed_horizon = 0  # every `since` is too old now: resync
    mirror.clock.advance(61)
    mirror.get("/p2/acme/util.json")
    assert mirror.last_cache() == "revalidated"
    repo.feed_horizon = 3600
    repo.changes_feed = False  # the feed answers 404 from now on
    for _ in range(3):
        mirror.clock.advance(61)
        mirror.get("/p2/acme/util.json")
    assert mirror.last_cache() == "hot"  # within its TTL since the revalidation
    mirror.clock.advance(120)
    mirror.get("/p2/acme/util.json")
    assert mirror.last_cache() == "revalidated"  # the TTL rules again


# Without the feed, the count is 12 per document and hour whatever their number (measured
# for 1,000: 12,012 in ~2 min); 100 keep the test fast.
@pytest.mark.parametrize(
    ("feed", "docs"), [(True, 1000), (False, 100)], ids=["with-feed", "without-feed"]
)
def test_upstream_requests_per_hour_for_1000_stored_documents(
    make_mirror: MakeMirror,
    local_env: dict[str, str],
    tmp_path: Path,
    alias: str,
    feed: bool,
    docs: int,
    record_property: pytest.RecordProperty,
) -> None:
    """Clients read each of `docs` documents once a minute for an hour; the upstream
    publishes a new version of one package every 6 minutes."""
    repo = ComposerRepo(keep_alive=True, changes_feed=feed)
    names = [f"bulk/p{i:04d}" for i in range(docs)]
    for name in names:
        repo.add(name, "1.0.0")
    repo.start()
    try:
        env = {**local_env, "SATCHEL_UPSTREAMS": f"{alias}={repo.url}"}
        mirror = make_mirror(env, SATCHEL_HOT_CACHE_SIZE="256M")
        documents: Documents = mirror.client.app.state.services.documents  # type: ignore[attr-defined]

        async def read_all() -> None:
            for name in names:
                assert (await documents.get(alias, f"p2/{name}.json")).doc is not None

        async def hour() -> None:
            await documents.root(alias)
            await read_all()  # cold: the documents get stored
            repo.requests.clear()
            for minute in range(1, 61):
                mirror.clock.advance(60)
                if minute % 6 == 0:
                    repo.add(names[minute], "1.1.0")
                await documents.root(alias)
                await read_all()

        mirror.client.portal.call(hour)  # type: ignore[union-attr]
    finally:
        repo.stop()
    total = sum(repo.requests.values())
    record_property(f"upstream requests per hour, {docs} documents, feed={feed}", total)
    print(f"upstream requests per hour, {docs} documents, feed={feed}: {total}")
    if feed:
        assert repo.requests[FEED] == 60
        assert total <= 60 + 10 + 12  # the feed, the changed documents, packages.json
    else:
        assert total == docs * 12 + 12  # one conditional request per document per TTL
