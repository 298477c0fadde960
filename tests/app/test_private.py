"""The private repository over HTTP on the real S3 target: uploads (raw and multipart, as
`composer push` sends them), every refusal, 401/403, SATCHEL_AUTH=all, dependency
confusion, revocation seen by another instance, and the bucket requests of private dists."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

import runtime
from infra.local.composer_repo import ComposerRepo
from runtime.app import create_app
from runtime.app.config import load_serve_config
from runtime.repository import Repository
from runtime.repository.store import p2_key
from runtime.storage.s3 import S3Adapter
from runtime.tokens import TokenStore
from tests.app.conftest import BASE, Mirror
from tests.repository_helpers import package_zip

MakeMirror = Callable[..., Mirror]


@pytest.fixture
def vendor() -> str:
    return f"v{secrets.token_hex(4)}"  # a vendor of this test's own: names never collide


@pytest.fixture
def tokens(pod_env: dict[str, str]) -> dict[str, str]:
    store = TokenStore(runtime.open_storages(runtime.load_settings(pod_env)).packages)
    suffix = secrets.token_hex(4)
    return {scope: store.create(f"{scope}-{suffix}", scope) for scope in ("read", "publish")}


def basic(token: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"token:{token}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def put(mirror: Mirror, path: str, token: str | None, **kwargs: Any) -> Any:
    headers = bearer(token) if token else {}
    return mirror.client.put(path, headers=headers, **kwargs)


@contextmanager
def published(
    mirror: Mirror, env: dict[str, str], tokens: dict[str, str], name: str, version: str
) -> Iterator[None]:
    """`name` published privately for the `with` block (names shared with the upstream
    fixture: the bucket is shared by the tests, so it is unpublished after)."""
    upload = f"/packages/upload/{name}/{version}"
    answer = put(mirror, upload, tokens["publish"], content=package_zip(name))
    assert answer.status_code in (200, 201), answer.text
    try:
        yield
    finally:
        storages = runtime.open_storages(runtime.load_settings(env))
        Repository(storages.packages, storages.artifacts).unpublish(name, version)


def versions(mirror: Mirror, name: str, token: str) -> dict[str, dict[str, Any]]:
    answer = mirror.client.get(f"/p2/{name}.json", headers=basic(token))
    assert answer.status_code == 200, answer.text
    return {v["version"]: v for v in answer.json()["packages"][name]}


def _bucket_keys(env: dict[str, str], name: str) -> list[str]:
    storages = runtime.open_storages(runtime.load_settings(env))
    found = [i.key for i in storages.artifacts.list(name)]
    found += [i.key for i in storages.packages.list(f"versions/{name}")]
    return found + ([p2_key(name)] if storages.packages.exists(p2_key(name)) else [])


def test_a_raw_upload_is_served_as_p2_and_dist_behind_a_read_token(
    make_mirror: MakeMirror, mirror_env: dict[str, str], tokens: dict[str, str], vendor: str
) -> None:
    mirror = make_mirror(mirror_env)
    name = f"{vendor}/lib"
    data = package_zip(name)
    created = put(mirror, f"/packages/upload/{name}/1.0.0", tokens["publish"], content=data)
    assert created.status_code == 201, created.text
    assert created.json() == {
        "name": name,
        "version": "1.0.0",
        "shasum": hashlib.sha1(data).hexdigest(),
        "created": True,
    }
    version = versions(mirror, name, tokens["read"])["1.0.0"]
    assert version["dist"]["url"].startswith(f"{BASE}/private/dists/{name}/1.0.0-")
    path = version["dist"]["url"].removeprefix(BASE)
    dist = mirror.client.get(path, headers=basic(tokens["read"]))
    assert dist.status_code == 200 and dist.content == data
    assert hashlib.sha1(dist.content).hexdigest() == version["dist"]["shasum"]
    assert "private" in dist.headers["cache-control"]
    again = mirror.client.get(
        path,
        headers={**basic(tokens["read"]), "If-None-Match": dist.headers["etag"]},
    )
    assert again.status_code == 304


def test_a_multipart_upload_records_its_source_and_takes_the_archives_version(
    make_mirror: MakeMirror, mirror_env: dict[str, str], tokens: dict[str, str], vendor: str
) -> None:
    mirror = make_mirror(mirror_env)
    name = f"{vendor}/pushed"
    fields = {
        "src-type": "git",
        "src-url": "https://git.example/acme/pushed.git",
        "src-ref": "abc1",
    }
    answer = put(
        mirror,
        f"/packages/upload/{name}",
        tokens["publish"],
        files={"package": ("pushed.zip", package_zip(name, "2.1.0"), "application/zip")},
        data=fields,
    )
    assert answer.status_code == 201, answer.text
    version = versions(mirror, name, tokens["read"])["2.1.0"]
    assert version["source"] == {
        "type": "git",
        "url": "https://git.example/acme/pushed.git",
        "reference": "abc1",
    }


def test_republishing_is_idempotent_and_other_bytes_conflict(
    make_mirror: MakeMirror, mirror_env: dict[str, str], tokens: dict[str, str], vendor: str
) -> None:
    mirror = make_mirror(mirror_env)
    name = f"{vendor}/lib"
    data = package_zip(name)
    path = f"/packages/upload/{name}/1.0.0"
    assert put(mirror, path, tokens["publish"], content=data).status_code == 201
    assert put(mirror, path, tokens["publish"], content=data).status_code == 200
    other = package_zip(name, files={"CHANGED": b"yes"})
    conflict = put(mirror, path, tokens["publish"], content=other)
    assert conflict.status_code == 409 and "immutable" in conflict.json()["error"]
    assert len(_bucket_keys(mirror_env, name)) == 3


@pytest.mark.parametrize(
    ("case", "status", "reason"),
    [
        ("not a zip", 400, "not a zip"),
        ("name mismatch", 400, "publish it under its own name"),
        ("bad version", 400, "not a tagged version"),
        ("bad package name", 400, "not a Composer package name"),
        ("too large", 413, "SATCHEL_MAX_ARCHIVE_SIZE"),
        ("multipart without package", 400, "field 'package'"),
    ],
)
def test_a_refused_upload_says_why_and_stores_nothing(
    make_mirror: MakeMirror,
    mirror_env: dict[str, str],
    tokens: dict[str, str],
    vendor: str,
    case: str,
    status: int,
    reason: str,
) -> None:
    mirror = make_mirror(mirror_env, SATCHEL_MAX_ARCHIVE_SIZE="20K")
    name = f"{vendor}/lib"
    path, kwargs = f"/packages/upload/{name}/1.0.0", {"content": package_zip(name)}
    if case == "not a zip":
        kwargs = {"content": b"this is not a zip"}
    elif case == "name mismatch":
        kwargs = {"content": package_zip(f"{vendor}/other")}
    elif case == "bad version":
        path = f"/packages/upload/{name}/latest"
    elif case == "bad package name":
        path = f"/packages/upload/{vendor}/Not..Valid/1.0.0"
    elif case == "too large":
        kwargs = {"content": package_zip(name, files={"big.bin": secrets.token_bytes(40_000)})}
    elif case == "multipart without package":
        kwargs = {"files": {"archive": ("x.zip", package_zip(name), "application/zip")}}
    answer = put(mirror, path, tokens["publish"], **kwargs)
    assert answer.status_code == status and reason in answer.json()["error"], answer.text
    assert _bucket_keys(mirror_env, name) == []


def test_uploads_need_a_publish_token(
    make_mirror: MakeMirror, mirror_env: dict[str, str], tokens: dict[str, str], vendor: str
) -> None:
    mirror = make_mirror(mirror_env)
    path, data = f"/packages/upload/{vendor}/lib/1.0.0", package_zip(f"{vendor}/lib")
    anonymous = put(mirror, path, None, content=data)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith('Basic realm="satchel"')
    unknown = put(mirror, path, "sat_" + "A" * 43, content=data)
    assert unknown.status_code == 401 and unknown.json() == {"error": "unknown or revoked token"}
    read_only = put(mirror, path, tokens["read"], content=data)
    assert read_only.status_code == 403 and "'publish'" in read_only.json()["error"]
    assert _bucket_keys(mirror_env, f"{vendor}/lib") == []
    logged = mirror.log_file.read_text()
    assert all(token not in logged for token in tokens.values())


def test_private_metadata_and_dists_need_a_read_token_while_the_mirror_stays_open(
    make_mirror: MakeMirror, mirror_env: dict[str, str], tokens: dict[str, str], vendor: str
) -> None:
    mirror = make_mirror(mirror_env)
    name = f"{vendor}/lib"
    put(mirror, f"/packages/upload/{name}/1.0.0", tokens["publish"], content=package_zip(name))
    url = versions(mirror, name, tokens["read"])["1.0.0"]["dist"]["url"].removeprefix(BASE)
    for path in (f"/p2/{name}.json", url):
        assert mirror.get(path).status_code == 401
    assert mirror.get("/p2/acme/util.json").status_code == 200  # the public mirror
    assert mirror.get("/healthz").status_code == 200


def test_with_auth_all_every_endpoint_but_the_probes_needs_a_read_token(
    make_mirror: MakeMirror, mirror_env: dict[str, str], tokens: dict[str, str]
) -> None:
    mirror = make_mirror(mirror_env, SATCHEL_AUTH="all")
    for path in ("/packages.json", "/p2/acme/util.json"):
        assert mirror.get(path).status_code == 401
        assert mirror.client.get(path, headers=basic(tokens["read"])).status_code == 200
    assert mirror.get("/healthz").status_code == 200
    assert mirror.get("/readyz").status_code == 200


def test_a_private_name_is_never_looked_up_upstream(
    make_mirror: MakeMirror,
    mirror_env: dict[str, str],
    tokens: dict[str, str],
    repo: ComposerRepo,
) -> None:
    """Dependency confusion: the upstream offers acme/util 1.0.0 and acme/log; acme is a
    private vendor here, and the team published acme/util 0.5.0."""
    repo.add("acme/util", "9.9.9")
    mirror = make_mirror(mirror_env, SATCHEL_PRIVATE_VENDORS="acme")
    before = Counter(repo.requests)
    with published(mirror, mirror_env, tokens, "acme/util", "0.5.0"):
        assert list(versions(mirror, "acme/util", tokens["read"])) == ["0.5.0"]
        assert (
            mirror.client.get("/p2/acme/log.json", headers=basic(tokens["read"])).status_code == 404
        )
        assert mirror.get("/p2/acme/log.json").status_code == 401  # not even a 404 to strangers
        asked = {path for path in Counter(repo.requests) - before if "/p2/" in path}
        assert asked == set()


def test_another_instance_sees_a_new_version_and_a_revocation_within_the_ttl(
    make_mirror: MakeMirror, mirror_env: dict[str, str], pod_env: dict[str, str], vendor: str
) -> None:
    store = TokenStore(runtime.open_storages(runtime.load_settings(pod_env)).packages)
    suffix = secrets.token_hex(4)
    publish, read = store.create(f"p-{suffix}", "publish"), store.create(f"r-{suffix}", "read")
    first, second = make_mirror(mirror_env), make_mirror(mirror_env)
    name = f"{vendor}/lib"
    put(first, f"/packages/upload/{name}/1.0.0", publish, content=package_zip(name))
    assert list(versions(second, name, read)) == ["1.0.0"]
    put(first, f"/packages/upload/{name}/1.1.0", publish, content=package_zip(name))
    assert sorted(versions(first, name, read)) == ["1.0.0", "1.1.0"]  # at once where published
    assert list(versions(second, name, read)) == ["1.0.0"]  # the other keeps it for the TTL
    second.clock.advance(10.1)
    assert sorted(versions(second, name, read)) == ["1.0.0", "1.1.0"]
    store.revoke(f"r-{suffix}")
    assert second.client.get(f"/p2/{name}.json", headers=basic(read)).status_code == 200
    second.clock.advance(10.1)
    assert second.client.get(f"/p2/{name}.json", headers=basic(read)).status_code == 401


class _ArchiveGets:
    """GETs of the artifacts storage the app's S3 client sends (botocore event hook)."""

    def __init__(self, storages: runtime.Storages) -> None:
        self.prefix = f"/{storages.artifacts.prefix}/"
        self.count = 0
        adapter = storages.artifacts.adapter
        assert isinstance(adapter, S3Adapter)
        adapter.client.meta.events.register("before-send.s3.GetObject", self)

    def __call__(self, request: Any, **_: Any) -> None:
        if self.prefix in request.url:
            self.count += 1


@pytest.mark.parametrize("archive_cache", [True, False])
def test_a_private_dist_served_twice_costs_one_get_with_the_archive_cache(
    mirror_env: dict[str, str],
    tokens: dict[str, str],
    vendor: str,
    tmp_path: Path,
    archive_cache: bool,
) -> None:
    env = {**mirror_env}
    if archive_cache:
        env["SATCHEL_ARCHIVE_CACHE_DIR"] = str(tmp_path / "archives")
    settings = runtime.load_settings(env)
    storages = runtime.open_storages(settings)
    name, data = f"{vendor}/lib", package_zip(f"{vendor}/lib")
    reader = basic(tokens["read"])
    with TestClient(create_app(settings, load_serve_config(env), storages=storages), BASE) as c:
        gets = _ArchiveGets(storages)
        path = f"/packages/upload/{name}/1.0.0"
        assert c.put(path, content=data, headers=bearer(tokens["publish"])).status_code == 201
        assert gets.count == 0  # reading composer.json on publish cost no GET
        document = c.get(f"/p2/{name}.json", headers=reader).json()
        path = document["packages"][name][0]["dist"]["url"].removeprefix(BASE)
        for _ in range(2):
            assert c.get(path, headers=reader).content == data
    assert gets.count == (1 if archive_cache else 2)


def test_unpublishing_over_http_needs_an_admin_token(
    make_mirror: MakeMirror, mirror_env: dict[str, str], pod_env: dict[str, str], vendor: str
) -> None:
    store = TokenStore(runtime.open_storages(runtime.load_settings(pod_env)).packages)
    suffix = secrets.token_hex(4)
    publish, admin = store.create(f"p-{suffix}", "publish"), store.create(f"a-{suffix}", "admin")
    mirror = make_mirror(mirror_env)
    name = f"{vendor}/lib"
    put(mirror, f"/packages/upload/{name}/1.0.0", publish, content=package_zip(name))
    put(mirror, f"/packages/upload/{name}/1.1.0", publish, content=package_zip(name))
    path = f"/packages/{name}/1.0.0"
    assert mirror.client.delete(path).status_code == 401
    assert mirror.client.delete(path, headers=bearer(publish)).status_code == 403
    assert mirror.client.delete(path, headers=bearer(admin)).status_code == 204
    assert mirror.client.delete(path, headers=bearer(admin)).status_code == 404
    assert list(versions(mirror, name, admin)) == ["1.1.0"]  # at once on this instance
    assert len(_bucket_keys(mirror_env, name)) == 3  # 1.1.0's archive and record, and p2


@pytest.mark.parametrize("declared", [True, False])
def test_an_upload_over_the_bound_is_refused_before_it_is_read_whole(
    make_mirror: MakeMirror,
    mirror_env: dict[str, str],
    tokens: dict[str, str],
    vendor: str,
    declared: bool,
) -> None:
    mirror = make_mirror(mirror_env, SATCHEL_MAX_ARCHIVE_SIZE="20K")

    def chunks() -> Any:  # a chunked body of 2 MiB, far over 20 KiB + the multipart slack
        for _ in range(32):
            yield secrets.token_bytes(65536)

    path = f"/packages/upload/{vendor}/big/1.0.0"
    if declared:
        answer = put(mirror, path, tokens["publish"], content=b"\0" * (2 << 20))
    else:
        answer = put(mirror, path, tokens["publish"], content=chunks())
    assert answer.status_code == 413 and "SATCHEL_MAX_ARCHIVE_SIZE" in answer.json()["error"]
    assert _bucket_keys(mirror_env, f"{vendor}/big") == []


def test_a_dist_published_elsewhere_moments_ago_is_served_here(
    make_mirror: MakeMirror, mirror_env: dict[str, str], tokens: dict[str, str], vendor: str
) -> None:
    first, second = make_mirror(mirror_env), make_mirror(mirror_env)
    name = f"{vendor}/lib"
    put(first, f"/packages/upload/{name}/1.0.0", tokens["publish"], content=package_zip(name))
    assert list(versions(second, name, tokens["read"])) == ["1.0.0"]  # second holds this p2
    answer = put(
        first, f"/packages/upload/{name}/1.1.0", tokens["publish"], content=package_zip(name)
    )
    assert answer.status_code == 201
    url = versions(first, name, tokens["read"])["1.1.0"]["dist"]["url"].removeprefix(BASE)
    assert second.client.get(url, headers=basic(tokens["read"])).status_code == 200


def test_a_name_published_privately_is_no_longer_served_from_the_mirror(
    make_mirror: MakeMirror,
    mirror_env: dict[str, str],
    tokens: dict[str, str],
    repo: ComposerRepo,
    alias: str,
) -> None:
    """acme/log was mirrored (p2 and dist) before the team published its own acme/log."""
    mirror = make_mirror(mirror_env)
    public = mirror.get("/p2/acme/log.json").json()["packages"]["acme/log"][0]["dist"]["url"]
    assert mirror.get(public.removeprefix(BASE)).status_code == 200
    with published(mirror, mirror_env, tokens, "acme/log", "0.1.0"):
        assert mirror.get(public.removeprefix(BASE)).status_code == 404
        assert list(versions(mirror, "acme/log", tokens["read"])) == ["0.1.0"]
