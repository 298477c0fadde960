"""The real Composer client (Debian's composer 2.5, php-cli) through `satchel serve` running
under granian, with IRSA credentials from the local target's token file and role."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from infra.local.composer_repo import ComposerRepo
from tests.app.processes import ServeProcess, composer, composer_project

pytestmark = pytest.mark.skipif(
    shutil.which("composer") is None, reason="composer is not installed (see .ci/run)"
)

EXPECTED = {"acme/app-lib": "1.2.0", "acme/util": "1.0.0", "acme/log": "1.1.0"}


def locked(project: Path) -> dict[str, dict[str, str]]:
    lock = json.loads((project / "composer.lock").read_text())
    return {p["name"]: {"version": p["version"], "url": p["dist"]["url"]} for p in lock["packages"]}


def installed(project: Path) -> dict[str, str]:
    found = {}
    for name in EXPECTED:
        source = (project / "vendor" / name / "src" / "Version.php").read_text()
        found[name] = source.split()[-1]  # "<?php // acme/log 1.1.0"
    return found


def run_composer(project: Path, home: Path, timings: dict[str, float], label: str) -> None:
    start = time.perf_counter()
    result = composer(project, home, "install")
    timings[label] = round(time.perf_counter() - start, 2)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("caches", ["stateless", "cache-dirs"])
def test_composer_installs_through_the_mirror_and_then_from_the_bucket_alone(
    pod_env: dict[str, str],
    repo: ComposerRepo,
    alias: str,
    tmp_path: Path,
    caches: str,
    record_property: pytest.RecordProperty,
) -> None:
    def env(instance: str, **extra: str) -> dict[str, str]:
        dirs = {"MIRROR_METADATA_CACHE_DIR": "", "MIRROR_DIST_CACHE_DIR": ""}
        if caches == "cache-dirs":  # the seed's /tmp-style caches, empty for each instance
            dirs = {var: str(tmp_path / instance / var.lower()) for var in dirs}
        return {**pod_env, **dirs, "SATCHEL_UPSTREAMS": f"{alias}={repo.url}", **extra}

    # IRSA: the role and the token file; no static keys anywhere.
    assert pod_env["AWS_ROLE_ARN"] and pod_env["AWS_WEB_IDENTITY_TOKEN_FILE"]
    assert "accessKey" not in pod_env["STORAGE_AWS_ARGS"]
    timings: dict[str, float] = {}
    first = ServeProcess(env("first"), tmp_path / "logs", "first")
    project = composer_project(tmp_path / "project", first.url, {"acme/app-lib": "^1.0"})
    with first:
        run_composer(project, tmp_path / "home-1", timings, "cold install via upstream")
    assert installed(project) == EXPECTED
    lock = locked(project)
    assert {name: p["version"] for name, p in lock.items()} == EXPECTED
    for name, package in lock.items():
        assert package["url"].startswith(f"{first.url}/dists/{alias}/{name}/")
    assert {line["cache"] for line in first.access_lines() if "/dists/" in line["path"]} == {"miss"}

    # A second instance on the same address, sharing only the bucket: the upstream is gone,
    # and with a zero TTL every document it serves is a stale-if-error answer.
    repo.stop()
    second_env = env("second", SATCHEL_UPSTREAM_TTL="0")
    second = ServeProcess(second_env, tmp_path / "logs", "second", first.port)
    with second:
        shutil.rmtree(project / "vendor")
        run_composer(project, tmp_path / "home-2", timings, "from the lock, upstream down")
        assert installed(project) == EXPECTED

        shutil.rmtree(project / "vendor")
        (project / "composer.lock").unlink()
        run_composer(project, tmp_path / "home-3", timings, "no lock, upstream down")
        assert installed(project) == EXPECTED
        assert locked(project) == lock
    served = second.access_lines()
    assert all(line["status"] == 200 for line in served if line["path"] != "/healthz")
    assert {line["cache"] for line in served if "/p2/" in line["path"]} == {"stale"}
    assert sum(repo.requests.values()) > 0 and not repo._server  # really stopped
    for label, seconds in timings.items():
        record_property(label, seconds)
    print(f"composer timings ({caches}): {timings}")
