"""The private repository on the real S3 target, with the pod's own role (its policy holds
the packages and artifact prefixes): publishing, immutability, refusals that store nothing,
and publishers racing from separate processes."""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
import secrets
import time
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

import runtime
from runtime.repository import InvalidArchive, Repository, VersionConflict
from runtime.repository.archive import MAX_COMPOSER_JSON
from runtime.repository.store import INDEX_KEY, p2_key
from tests.cli_helpers import satchel
from tests.repository_helpers import package_zip, raw_zip


def _repository(env: dict[str, str]) -> Repository:
    storages = runtime.open_storages(runtime.load_settings(env))
    return Repository(storages.packages, storages.artifacts)


@pytest.fixture
def repo(pod_env: dict[str, str]) -> Repository:
    return _repository(pod_env)


@pytest.fixture
def name() -> str:
    return f"acme/lib-{secrets.token_hex(4)}"


def _stored(repo: Repository, name: str) -> list[str]:
    """Every key the repository holds for `name`, in both storages."""
    keys = [f"artifacts:{i.key}" for i in repo.artifacts.list(name)]
    keys += [f"packages:{i.key}" for i in repo.packages.list(f"versions/{name}")]
    keys += [f"packages:{p2_key(name)}"] if repo.packages.exists(p2_key(name)) else []
    return sorted(keys)


def _p2_versions(repo: Repository, name: str) -> list[str]:
    document = json.loads(repo.packages.read(p2_key(name)))
    return sorted(v["version"] for v in document["packages"][name])


def test_a_published_archive_is_stored_unchanged_and_served_in_p2(
    repo: Repository, name: str
) -> None:
    data = package_zip(name, "1.0.0", requires={"acme/util": "^1.0"})
    published = repo.publish(data)
    assert (published.name, published.version, published.created) == (name, "1.0.0", True)
    document = json.loads(repo.packages.read(p2_key(name)))
    (version,) = document["packages"][name]
    assert version["require"] == {"acme/util": "^1.0"}
    assert version["autoload"] == {"psr-4": {"Acme\\": "src/"}}
    dist = version["dist"]
    assert dist["shasum"] == dist["reference"] == published.sha1
    assert dist["url"] == f"satchel-mirror:/private/dists/{name}/1.0.0-{published.sha1}.zip"
    assert repo.artifacts.read(f"{name}/1.0.0-{published.sha1}.zip") == data  # unchanged
    assert name in json.loads(repo.packages.read(INDEX_KEY))["packages"]
    assert name in repo.names()


def test_the_version_flag_wins_and_a_nested_composer_json_is_found(
    repo: Repository, name: str
) -> None:
    published = repo.publish(package_zip(name, "0.1.0", top="lib-main/"), version="2.0.0-beta1")
    assert published.version == "2.0.0-beta1"
    assert _p2_versions(repo, name) == ["2.0.0-beta1"]


def test_republishing_identical_bytes_is_idempotent(repo: Repository, name: str) -> None:
    data = package_zip(name, "1.0.0")
    first = repo.publish(data)
    again = repo.publish(data)
    assert again.created is False and again.sha1 == first.sha1
    assert len(_stored(repo, name)) == 3  # archive, record, p2


def test_republishing_a_version_with_other_bytes_is_refused_and_keeps_the_first(
    repo: Repository, name: str
) -> None:
    first = repo.publish(package_zip(name, "1.0.0"))
    before = _stored(repo, name)
    with pytest.raises(VersionConflict, match="with other contents"):
        repo.publish(package_zip(name, "1.0.0", files={"README.md": b"changed"}))
    assert _stored(repo, name) == before  # nothing new, no orphan archive
    assert repo.record(name, "1.0.0")["sha1"] == first.sha1  # type: ignore[index]


REFUSALS: dict[str, tuple[Callable[[str], bytes], str]] = {
    "not a zip": (lambda n: b"PK\x03\x04 but not really a zip", "not a zip archive"),
    "no composer.json": (lambda n: raw_zip({"src/A.php": b"<?php"}), "no composer.json"),
    "two top-level dirs": (
        lambda n: raw_zip({"a/composer.json": b"{}", "b/x.php": b""}),
        "no composer.json",
    ),
    "invalid JSON": (lambda n: raw_zip({"composer.json": b"{nope"}), "not valid JSON"),
    "not an object": (lambda n: raw_zip({"composer.json": b"[1]"}), "not a JSON object"),
    "no name": (lambda n: raw_zip({"composer.json": b'{"version": "1.0.0"}'}), "no valid"),
    "invalid name": (lambda n: package_zip("Acme Lib", "1.0.0"), "no valid package name"),
    "no version": (lambda n: package_zip(n), "no version"),
    "invalid version": (lambda n: package_zip(n, "latest"), "not a tagged version"),
    "dev branch": (lambda n: package_zip(n, "dev-main"), "not a tagged version"),
    "zip bomb": (
        lambda n: raw_zip({"composer.json": b"{" + b" " * (MAX_COMPOSER_JSON * 40) + b"}"}),
        "over 256 KiB",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_a_bad_archive_is_refused_with_its_reason_and_nothing_is_stored(
    repo: Repository, name: str, case: str
) -> None:
    build, reason = REFUSALS[case]
    with pytest.raises(InvalidArchive, match=reason):
        repo.publish(build(name))
    assert _stored(repo, name) == []


def test_a_name_other_than_the_urls_is_refused(repo: Repository, name: str) -> None:
    with pytest.raises(InvalidArchive, match="publish it under its own name"):
        repo.publish(package_zip(name, "1.0.0"), name="acme/other")
    assert _stored(repo, name) == []


def test_unpublishing_removes_the_version_then_the_package(repo: Repository, name: str) -> None:
    repo.publish(package_zip(name, "1.0.0"))
    repo.publish(package_zip(name, "1.1.0"))
    assert repo.unpublish(name, "1.0.0")
    assert _p2_versions(repo, name) == ["1.1.0"]
    assert repo.unpublish(name, "1.1.0")
    assert _stored(repo, name) == [] and name not in repo.names()
    assert not repo.unpublish(name, "1.1.0")
    repo.publish(package_zip(name, "1.0.0", files={"NEW": b"other bytes"}))  # allowed again


def _publish_at(env: dict[str, str], start: float, data: bytes, results: object) -> None:
    repository = _repository(env)
    time.sleep(max(0.0, start - time.time()))
    try:
        repository.publish(data)
        results.put("published")  # type: ignore[attr-defined]
    except VersionConflict:
        results.put("conflict")  # type: ignore[attr-defined]


def _race(env: dict[str, str], archives: list[bytes]) -> list[str]:
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    start = time.time() + 0.5  # both processes are up and connected by then
    workers = [
        context.Process(target=_publish_at, args=(env, start, data, results)) for data in archives
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    return sorted(results.get() for _ in workers)


@pytest.mark.parametrize("round_", range(3))
def test_two_processes_publishing_two_versions_at_once_lose_neither(
    pod_env: dict[str, str], repo: Repository, name: str, round_: int
) -> None:
    assert _race(pod_env, [package_zip(name, "1.0.0"), package_zip(name, "1.1.0")]) == [
        "published",
        "published",
    ]
    assert _p2_versions(repo, name) == ["1.0.0", "1.1.0"]


def test_two_processes_publishing_one_version_with_other_bytes_let_exactly_one_win(
    pod_env: dict[str, str], repo: Repository, name: str
) -> None:
    archives = [package_zip(name, "1.0.0", files={"WHO": w}) for w in (b"first", b"second")]
    assert _race(pod_env, archives) == ["conflict", "published"]
    record = repo.record(name, "1.0.0")
    assert record is not None
    winner = [a for a in archives if hashlib.sha1(a).hexdigest() == record["sha1"]]
    assert len(winner) == 1
    assert [i.key for i in repo.artifacts.list(name)] == [f"{name}/1.0.0-{record['sha1']}.zip"]


def test_one_version_cannot_be_published_again_under_another_spelling(
    repo: Repository, name: str
) -> None:
    """Composer takes 1.0.0, v1.0.0, 1.0 and 1.0.0.0 for one version (1.0.0.0)."""
    data = package_zip(name)
    repo.publish(data, version="1.0.0")
    for spelling in ("v1.0.0", "1.0", "1.0.0.0"):
        with pytest.raises(VersionConflict, match=r"exists \(as 1\.0\.0\)"):
            repo.publish(package_zip(name, files={"OTHER": spelling.encode()}), version=spelling)
        assert repo.publish(data, version=spelling).created is False  # the same bytes: fine
    document = json.loads(repo.packages.read(p2_key(name)))
    (only,) = document["packages"][name]
    assert (only["version"], only["version_normalized"]) == ("1.0.0", "1.0.0.0")


def _with_flag(data: bytes, flag: int) -> bytes:
    """The zip with a general-purpose flag set on its first entry (local + central)."""
    patched = bytearray(data)
    local = patched.index(b"PK\x03\x04")
    central = patched.index(b"PK\x01\x02")
    for at in (local + 6, central + 8):
        patched[at] |= flag
    return bytes(patched)


@pytest.mark.parametrize("case", ["encrypted", "corrupt", "duplicate entries"])
def test_a_damaged_archive_is_refused_not_a_crash(repo: Repository, name: str, case: str) -> None:
    if case == "encrypted":
        data = _with_flag(raw_zip({"composer.json": b'{"name": "a/b"}'}), 0x1)
    elif case == "corrupt":
        good = raw_zip({"composer.json": json.dumps({"name": name, "pad": "x" * 4000}).encode()})
        start = good.index(b"PK\x03\x04") + 30 + len("composer.json")
        data = good[:start] + bytes(b ^ 0x5A for b in good[start : start + 40]) + good[start + 40 :]
    else:
        out = io.BytesIO()
        with warnings.catch_warnings(), zipfile.ZipFile(out, "w") as archive:
            warnings.simplefilter("ignore")  # zipfile warns of the duplicate it writes
            archive.writestr("composer.json", json.dumps({"name": name, "version": "1.0.0"}))
            archive.writestr("composer.json", json.dumps({"name": "evil/other"}))
        data = out.getvalue()
    with pytest.raises(InvalidArchive):
        repo.publish(data, version="1.0.0")
    assert _stored(repo, name) == []


def test_the_cli_publishes_lists_and_unpublishes(
    pod_env: dict[str, str], repo: Repository, name: str, tmp_path: Path
) -> None:
    archive = tmp_path / "lib.zip"
    archive.write_bytes(package_zip(name, "0.9.0"))
    published = satchel(pod_env, "publish", str(archive), "--version", "1.0.0")
    assert published.exit_code == 0 and f"{name} 1.0.0 published" in published.stdout
    again = satchel(pod_env, "publish", str(archive), "--version", "1.0.0")
    assert again.exit_code == 0 and "already published (identical)" in again.stdout
    archive.write_bytes(package_zip(name, "0.9.0", files={"NEW": b"1"}))
    conflict = satchel(pod_env, "publish", str(archive), "--version", "1.0.0")
    assert conflict.exit_code == 1 and "versions are immutable" in conflict.stderr
    from_json = satchel(pod_env, "publish", str(archive))  # composer.json's own version
    assert from_json.exit_code == 0 and f"{name} 0.9.0 published" in from_json.stdout
    listed = json.loads(satchel(pod_env, "packages", "--json").stdout)
    assert sorted(listed[name]) == ["0.9.0", "1.0.0"]
    assert satchel(pod_env, "unpublish", name, "0.9.0").exit_code == 0
    missing = satchel(pod_env, "unpublish", name, "0.9.0")
    assert missing.exit_code == 1 and "is not published" in missing.stderr
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    bad = satchel(pod_env, "publish", str(tmp_path / "bad.zip"))
    assert bad.exit_code == 2 and "not a zip archive" in bad.stderr
    assert _p2_versions(repo, name) == ["1.0.0"]
