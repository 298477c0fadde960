"""The real Composer client (php-curl) against a packagist-shaped upstream through
`satchel serve`: gzip-encoded minified p2 files, and `composer audit` through the mirror's
advisories API, also with the upstream stopped."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from infra.local.composer_repo import packagist_repo
from tests.app.processes import ServeProcess, composer, composer_project

pytestmark = pytest.mark.skipif(
    shutil.which("composer") is None, reason="composer is not installed (see .ci/run)"
)


def audit(project: Path, home: Path) -> tuple[int, dict[str, object]]:
    """`composer audit --locked --format=json` (2.5 has no --no-progress for it)."""
    result = composer(project, home, "audit", "--locked", "--format=json", progress_flag=False)
    start = result.stdout.find("{")
    assert start >= 0, result.stdout + result.stderr
    return result.returncode, json.loads(result.stdout[start:])


def test_composer_installs_from_a_packagist_shaped_upstream_and_audits_through_the_mirror(
    pod_env: dict[str, str], alias: str, tmp_path: Path
) -> None:
    repo = packagist_repo().start()
    env = {
        **pod_env,
        "MIRROR_METADATA_CACHE_DIR": "",
        "MIRROR_DIST_CACHE_DIR": "",
        "SATCHEL_UPSTREAMS": f"{alias}={repo.url}",
        "SATCHEL_UPSTREAM_TTL": "0",  # every request after the first asks the upstream
        "SATCHEL_ADVISORIES_TTL": "0",
        "SATCHEL_UPSTREAM_RETRIES": "0",
    }
    try:
        with ServeProcess(env, tmp_path / "logs", "serve") as serve:
            project = composer_project(tmp_path / "project", serve.url, {"acme/app-lib": "^1.0"})
            result = composer(project, tmp_path / "home-1", "install")
            assert result.returncode == 0, result.stdout + result.stderr
            assert "1.1.0" in (project / "vendor/acme/log/src/Version.php").read_text()

            code, report = audit(project, tmp_path / "home-2")
            advisories = report["advisories"]
            assert isinstance(advisories, dict) and code != 0
            assert [a["advisoryId"] for a in advisories["acme/log"]] == ["PKSA-test-0001"]
            assert [a["title"] for a in advisories["acme/log"]] == ["Log injection in acme/log"]
            assert set(advisories) == {"acme/log"}
            assert repo.advisory_queries  # it came through the mirror from the upstream
            asked = len(repo.advisory_queries)

            repo.stop()
            code, again = audit(project, tmp_path / "home-3")
            assert again["advisories"] == advisories and code != 0
            assert len(repo.advisory_queries) == asked
        lines = serve.access_lines()
        audits = [line for line in lines if "security-advisories" in line["path"]]
        assert [line["status"] for line in audits] == [200, 200]
        assert [line["cache"] for line in audits] == ["miss", "stale"]
        p2 = [line for line in lines if line["path"].startswith("/p2/")]
        assert p2 and all(line["status"] == 200 for line in p2)
    finally:
        repo.stop()
