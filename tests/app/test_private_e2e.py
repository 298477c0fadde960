"""The real Composer client (with php-curl: parallel downloads over keep-alive) installing a
private package and its mirrored public dependency through one repository URL, on the
local IRSA target; then again from a second instance with empty caches and the upstream
stopped; refused without credentials; and the dependency-confusion case."""

from __future__ import annotations

import json
import secrets
import shutil
import time
import urllib.request
from pathlib import Path

import pytest

from infra.local.composer_repo import ComposerRepo
from runtime import load_settings, open_storages
from runtime.tokens import TokenStore
from tests.app.processes import ServeProcess, composer, composer_project
from tests.repository_helpers import package_zip

pytestmark = pytest.mark.skipif(
    shutil.which("composer") is None, reason="composer is not installed (see .ci/run)"
)


def _upload(url: str, token: str, data: bytes) -> int:
    """A multipart PUT as `composer push --type=nexus` sends it."""
    boundary = secrets.token_hex(8)
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="package"; '
            f'filename="package.zip"\r\nContent-Type: application/zip\r\n\r\n'
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(url, data=body, method="PUT")
    request.add_header("Content-Type", f"multipart/form-data; boundary={boundary}")
    request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=30) as answer:
        return int(answer.status)


def _with_auth(project: Path, port: int, token: str) -> None:
    auth = {"http-basic": {f"127.0.0.1:{port}": {"username": "token", "password": token}}}
    (project / "auth.json").write_text(json.dumps(auth))


def _installed_version(project: Path, name: str) -> str:
    lock = json.loads((project / "composer.lock").read_text())
    return next(p["version"] for p in lock["packages"] if p["name"] == name)


def test_composer_installs_private_and_mirrored_packages_with_a_token(
    pod_env: dict[str, str], repo: ComposerRepo, alias: str, tmp_path: Path
) -> None:
    vendor = f"team{secrets.token_hex(3)}"
    private = f"{vendor}/private-lib"
    store = TokenStore(open_storages(load_settings(pod_env)).packages)
    suffix = secrets.token_hex(3)
    publish, read = store.create(f"ci-{suffix}", "publish"), store.create(f"dev-{suffix}", "read")

    def env(instance: str, **extra: str) -> dict[str, str]:
        caches = {
            "MIRROR_METADATA_CACHE_DIR": str(tmp_path / instance / "meta"),
            "MIRROR_DIST_CACHE_DIR": str(tmp_path / instance / "dist"),
            "SATCHEL_ARCHIVE_CACHE_DIR": str(tmp_path / instance / "archives"),
        }
        return {**pod_env, **caches, "SATCHEL_UPSTREAMS": f"{alias}={repo.url}", **extra}

    timings: dict[str, float] = {}
    first = ServeProcess(env("first"), tmp_path / "logs", "first", workers=2)
    project = composer_project(tmp_path / "project", first.url, {private: "^1.0"})
    with first:
        archive = package_zip(private, requires={"acme/util": "^1.0"})
        assert _upload(f"{first.url}/packages/upload/{private}/1.0.0", publish, archive) == 201

        refused = composer(project, tmp_path / "home-0", "install")
        assert refused.returncode != 0
        assert "401" in refused.stdout + refused.stderr

        _with_auth(project, first.port, read)
        began = time.perf_counter()
        result = composer(project, tmp_path / "home-1", "install")
        timings["cold install"] = round(time.perf_counter() - began, 2)
        assert result.returncode == 0, result.stdout + result.stderr
    assert _installed_version(project, private) == "1.0.0"
    assert _installed_version(project, "acme/util") == "1.0.0"
    assert (project / "vendor" / private / "src" / "Hello.php").exists()
    assert (project / "vendor" / "acme" / "log").is_dir()  # acme/util's own dependency
    logged = (tmp_path / "logs" / "first.out").read_text()
    assert publish not in logged and read not in logged

    # A second instance with empty caches, sharing only the bucket; the upstream is gone.
    repo.stop()
    second = ServeProcess(
        env("second", SATCHEL_UPSTREAM_TTL="0"), tmp_path / "logs", "second", first.port
    )
    with second:
        shutil.rmtree(project / "vendor")
        (project / "composer.lock").unlink()
        began = time.perf_counter()
        result = composer(project, tmp_path / "home-2", "install")
        timings["no lock, upstream down, empty caches"] = round(time.perf_counter() - began, 2)
        assert result.returncode == 0, result.stdout + result.stderr
    assert _installed_version(project, private) == "1.0.0"
    print(f"private composer timings: {timings}")


def test_composer_sees_only_the_private_version_of_a_name_an_upstream_also_offers(
    pod_env: dict[str, str], repo: ComposerRepo, alias: str, tmp_path: Path
) -> None:
    vendor = f"team{secrets.token_hex(3)}"
    name = f"{vendor}/lib"
    repo.add(name, "9.9.9")  # the attacker's public package under the team's name
    store = TokenStore(open_storages(load_settings(pod_env)).packages)
    suffix = secrets.token_hex(3)
    publish, read = store.create(f"ci-{suffix}", "publish"), store.create(f"dev-{suffix}", "read")
    env = {**pod_env, "SATCHEL_UPSTREAMS": f"{alias}={repo.url}"}
    with ServeProcess(env, tmp_path / "logs") as serve:
        assert (
            _upload(f"{serve.url}/packages/upload/{name}/1.0.0", publish, package_zip(name)) == 201
        )
        project = composer_project(tmp_path / "project", serve.url, {name: "*"})
        _with_auth(project, serve.port, read)
        result = composer(project, tmp_path / "home", "update")
        assert result.returncode == 0, result.stdout + result.stderr
    assert _installed_version(project, name) == "1.0.0"
    assert not [path for path in repo.requests if vendor in path]  # never asked upstream
