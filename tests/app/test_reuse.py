"""Warm answers sent again (runtime.app.reuse): only to the same anonymous request, a
conditional one getting the endpoint's 304 or 200; never past the horizon or a rule's
freshness, never after a publish here; each one still logged and counted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from runtime.app.reuse import HORIZON, ReuseAnswers
from tests.app.conftest import BASE, Mirror
from tests.app.test_private import basic, published, tokens  # noqa: F401 (a fixture)

MakeMirror = Callable[..., Mirror]
P2 = "/p2/acme/log.json"


def lookups(mirror: Mirror) -> list[str]:
    """The p2 documents the endpoint looked up from now on (a reused answer: none)."""
    documents = mirror.client.app.state.services.documents  # type: ignore[attr-defined]
    seen: list[str] = []
    original = documents.get

    async def counted(alias: str, path: str) -> Any:
        if path.startswith("p2/"):
            seen.append(path)
        return await original(alias, path)

    documents.get = counted
    return seen


def p2_answers(mirror: Mirror) -> float:
    """The 2xx answers of the p2 route in /metrics (the registry outlives one app)."""
    line = 'satchel_http_requests_total{route="p2",status="2xx"} '
    found = [row for row in mirror.get("/metrics").text.splitlines() if row.startswith(line)]
    return float(found[0].removeprefix(line)) if found else 0.0


def warm(mirror: Mirror, path: str = P2, **headers: str) -> Any:
    first = mirror.get(path, **headers)  # from the upstream
    assert first.status_code == 200
    second = mirror.get(path, **headers)  # hot: this answer may be reused
    assert mirror.last_cache() == "hot"
    return second


def test_a_warm_answer_is_sent_again_until_the_horizon_and_each_is_logged(
    make_mirror: MakeMirror, mirror_env: dict[str, str]
) -> None:
    mirror = make_mirror(mirror_env)
    answer = warm(mirror)
    seen = lookups(mirror)
    counted = p2_answers(mirror)
    again = [mirror.get(P2) for _ in range(5)]
    assert seen == []  # the endpoint never ran
    for reused in again:
        assert reused.status_code == 200 and reused.content == answer.content
        assert reused.headers == answer.headers
    lines = mirror.logs()[-5:]
    assert [(line["path"], line["status"], line["cache"]) for line in lines] == [
        (P2, 200, "hot")
    ] * 5
    assert p2_answers(mirror) == counted + 5  # in the metrics too
    mirror.clock.now += HORIZON
    assert mirror.get(P2).content == answer.content
    assert seen == ["p2/acme/log.json"]  # past the horizon: the endpoint's rules again


def test_requests_that_differ_or_carry_a_token_reach_the_endpoint(
    make_mirror: MakeMirror, mirror_env: dict[str, str]
) -> None:
    mirror = make_mirror(mirror_env)
    plain = warm(mirror)
    seen = lookups(mirror)
    gzipped = mirror.client.get(P2, headers={"Accept-Encoding": "gzip"})
    assert gzipped.headers["content-encoding"] == "gzip"
    assert gzipped.content == plain.content  # decoded by the client: the same document
    other = mirror.get(P2, Host="other.example")
    assert b"http://other.example/" in other.content and b"other" not in plain.content
    assert mirror.get(P2, Authorization="Bearer not-a-token").status_code == 200  # open mirror
    assert mirror.get(P2, Cookie="session=1").status_code == 200
    assert mirror.get(P2 + "?x=1").status_code == 200
    assert len(seen) == 5


@pytest.mark.parametrize("encoding", ["identity", "gzip"])
def test_a_conditional_request_gets_the_answer_the_endpoint_would_send(
    make_mirror: MakeMirror, mirror_env: dict[str, str], encoding: str
) -> None:
    """The same 304 (or 200) from a kept answer as from the endpoint's own rules, for every
    kind of validator Composer and caches send, matching or not."""
    mirror = make_mirror(mirror_env)
    accept = {"Accept-Encoding": encoding}
    kept = warm(mirror, **accept)
    etag, modified = kept.headers["etag"], kept.headers["last-modified"]
    assert etag.endswith('-gzip"') is (encoding == "gzip")  # each encoding its own ETag
    cases: list[dict[str, str]] = [
        {"If-None-Match": etag},
        {"If-None-Match": f'"other", W/{etag}'},
        {"If-None-Match": "*"},
        {"If-None-Match": '"other"'},
        {"If-None-Match": '"other"', "If-Modified-Since": modified},  # the ETag decides
        {"If-Modified-Since": modified},
        {"If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"},
        {"If-Modified-Since": "not a date"},
    ]
    seen = lookups(mirror)
    reused = [mirror.get(P2, **accept, **case) for case in cases]
    assert seen == []  # every one answered from the kept answer
    assert [r.status_code for r in reused] == [304, 304, 304, 200, 200, 304, 200, 200]
    assert [line["status"] for line in mirror.logs()[-len(cases) :]] == [
        r.status_code for r in reused
    ]
    assert {line["cache"] for line in mirror.logs()[-len(cases) :]} == {"hot"}
    own = []
    for case in cases:  # each one answered by the endpoint: nothing kept before it
        reuse_of(mirror).forget()
        own.append(mirror.get(P2, **accept, **case))
    assert len(seen) == len(cases)
    for ours, theirs in zip(reused, own, strict=True):
        assert (ours.status_code, ours.content) == (theirs.status_code, theirs.content)
        assert ours.headers == theirs.headers
    not_modified = reused[0]
    assert not_modified.content == b""
    assert not {"content-length", "content-type", "content-encoding"} & set(not_modified.headers)
    assert not_modified.headers["etag"] == etag


@pytest.mark.parametrize("encoding", ["identity", "gzip"])
def test_clients_that_only_revalidate_are_answered_from_the_200_behind_the_first_304(
    make_mirror: MakeMirror, mirror_env: dict[str, str], encoding: str
) -> None:
    mirror = make_mirror(mirror_env)
    accept = {"Accept-Encoding": encoding}
    full = warm(mirror, **accept)
    reuse_of(mirror).forget()
    seen = lookups(mirror)
    revalidating = {"If-Modified-Since": full.headers["last-modified"], **accept}
    answers = [mirror.get(P2, **revalidating) for _ in range(5)]
    assert [a.status_code for a in answers] == [304] * 5
    assert seen == ["p2/acme/log.json"]  # the first one reached the endpoint, no other
    for reused in answers[1:]:
        assert reused.headers == answers[0].headers and reused.content == b""
    plain = mirror.get(P2, **accept)  # a client without the file: the 200 kept behind the 304
    assert seen == ["p2/acme/log.json"]
    assert (plain.status_code, plain.content, plain.headers) == (200, full.content, full.headers)


def test_a_head_request_is_kept_apart_and_revalidated_alike(
    make_mirror: MakeMirror, mirror_env: dict[str, str]
) -> None:
    mirror = make_mirror(mirror_env)
    full = warm(mirror)
    head = mirror.client.head(P2)
    assert head.status_code == 200
    assert head.headers["etag"] == full.headers["etag"]
    kept = [a for key, a in reuse_of(mirror).answers.items() if key[0] == "HEAD"]
    assert len(kept) == 1 and kept[0].body["body"] == b""  # no body held for a HEAD
    assert kept[0].size < len(full.content)  # counted as its key only
    seen = lookups(mirror)
    again = mirror.client.head(P2)
    assert again.headers == head.headers
    revalidated = mirror.client.head(P2, headers={"If-None-Match": full.headers["etag"]})
    assert revalidated.status_code == 304 and seen == []
    assert mirror.get(P2).content == full.content  # the GET's kept answer is its own


def test_with_auth_all_a_token_holders_answer_never_reaches_an_anonymous_client(
    make_mirror: MakeMirror,
    mirror_env: dict[str, str],
    tokens: dict[str, str],  # noqa: F811
) -> None:
    mirror = make_mirror(mirror_env, SATCHEL_AUTH="all")
    for _ in range(3):
        assert mirror.get(P2, **basic(tokens["read"])).status_code == 200
    for _ in range(3):
        assert mirror.get(P2).status_code == 401


def test_a_publish_here_ends_the_reuse_at_once(
    make_mirror: MakeMirror,
    mirror_env: dict[str, str],
    tokens: dict[str, str],  # noqa: F811
) -> None:
    mirror = make_mirror(mirror_env)
    warm(mirror)
    with published(mirror, mirror_env, tokens, "acme/log", "0.1.0"):
        refused = mirror.get(P2)  # now a private name: a token is needed
        assert refused.status_code == 401


def test_no_reuse_when_the_private_index_is_read_on_every_request(
    make_mirror: MakeMirror, mirror_env: dict[str, str]
) -> None:
    mirror = make_mirror(mirror_env, SATCHEL_PRIVATE_TTL="0")
    warm(mirror)
    seen = lookups(mirror)
    mirror.get(P2)
    assert seen == ["p2/acme/log.json"]


def reuse_of(mirror: Mirror) -> ReuseAnswers:
    layer: Any = mirror.client.app.middleware_stack  # type: ignore[attr-defined]
    while not isinstance(layer, ReuseAnswers):
        layer = layer.app
    return layer


@pytest.mark.parametrize(
    ("first", "second", "header"),
    [("evil.example", "mirror.example", "Host"), ("gzip", "identity", "Accept-Encoding")],
)
def test_a_header_given_twice_is_never_kept_for_either_value(
    make_mirror: MakeMirror, mirror_env: dict[str, str], first: str, second: str, header: str
) -> None:
    mirror = make_mirror(mirror_env)
    twice = [(header, first), (header, second)]
    for _ in range(3):  # hot from the second on: would be kept if it were keyed
        assert mirror.client.get(P2, headers=twice).status_code == 200
    assert reuse_of(mirror).answers == {}
    plain = mirror.client.get(P2, headers={header: second})
    if header == "Host":
        assert b"evil" not in plain.content
    else:
        assert "content-encoding" not in plain.headers


def test_what_is_kept_stays_bounded_and_expires(
    make_mirror: MakeMirror, mirror_env: dict[str, str]
) -> None:
    mirror = make_mirror(mirror_env)
    reuse = reuse_of(mirror)
    warm(mirror)
    assert len(reuse.answers) == 1 and reuse.bytes > 0
    long = "identity, " + "x-custom, " * 110  # a key over MAX_KEY_BYTES: answered, not kept
    for _ in range(2):
        assert mirror.get(P2, **{"Accept-Encoding": long}).status_code == 200
    assert len(reuse.answers) == 1
    dist = mirror.get(P2).json()["packages"]["acme/log"][0]["dist"]["url"]
    for _ in range(2):  # a streamed dist is never kept (nor held while it streams)
        assert mirror.get(dist.removeprefix(BASE)).status_code == 200
    assert len(reuse.answers) == 1
    mirror.clock.now += HORIZON
    warm(mirror, "/p2/acme/util.json")  # kept; the expired one goes
    assert [key[1] for key in reuse.answers] == ["/p2/acme/util.json"]
    assert reuse.bytes == reuse.answers[next(iter(reuse.answers))].size
