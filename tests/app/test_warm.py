"""`satchel mirror warm`: lock files seed the bucket, then the mirror serves without the
upstream."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from infra.local.composer_repo import ComposerRepo
from tests.app.conftest import Mirror
from tests.cli_helpers import SATCHEL

MakeMirror = Callable[..., Mirror]


def lock_file(path: Path, repo: ComposerRepo, packages: dict[str, str]) -> Path:
    """A composer.lock as composer writes it against the upstream itself."""
    entries = []
    for name, version in packages.items():
        release = repo.release(name, version) if name in repo.releases else None
        url = f"{repo.url}/dists/{name}/{version}.zip"
        entries.append(
            {
                "name": name,
                "version": version,
                "dist": {
                    "type": "zip",
                    "url": url,
                    "reference": release.reference if release else "0" * 40,
                    "shasum": release.shasum if release else "",
                },
            }
        )
    path.write_text(json.dumps({"packages": entries[:-1], "packages-dev": entries[-1:]}))
    return path


def warm(env: dict[str, str], *locks: Path) -> subprocess.CompletedProcess[str]:
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("STORAGE_", "SATCHEL_", "AWS_"))
    }
    return subprocess.run(
        [SATCHEL, "mirror", "warm", *map(str, locks)],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_warming_stores_documents_and_dists_then_the_mirror_serves_them_with_the_upstream_down(
    make_mirror: MakeMirror,
    mirror_env: dict[str, str],
    repo: ComposerRepo,
    tmp_path: Path,
    alias: str,
) -> None:
    lock = lock_file(tmp_path / "composer.lock", repo, {"acme/log": "1.1.0", "acme/util": "1.0.0"})
    first = warm(mirror_env, lock)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "warm: 4 fetched, 0 already stored, 0 skipped, 0 failed"
    assert repo.requests["/dists/acme/log/1.1.0.zip"] == 1

    again = warm(mirror_env, lock, lock)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "warm: 0 fetched, 4 already stored, 0 skipped, 0 failed"
    assert repo.requests["/dists/acme/log/1.1.0.zip"] == 1

    repo.stop()
    mirror = make_mirror(mirror_env)
    p2 = mirror.get("/p2/acme/log.json").json()["packages"]["acme/log"]
    url = next(v["dist"]["url"] for v in p2 if v.get("version") == "1.1.0")
    dist = mirror.get(url.removeprefix("http://mirror.test"))
    assert dist.status_code == 200 and dist.content == repo.release("acme/log", "1.1.0").archive


def test_warming_a_package_no_upstream_has_fails_with_exit_1(
    mirror_env: dict[str, str], repo: ComposerRepo, tmp_path: Path
) -> None:
    lock = lock_file(tmp_path / "composer.lock", repo, {"acme/log": "1.0.0", "acme/nope": "1.0.0"})
    result = warm(mirror_env, lock)
    assert result.returncode == 1
    assert "acme/nope 1.0.0: in no upstream" in result.stderr
    assert result.stdout.strip() == "warm: 2 fetched, 0 already stored, 0 skipped, 1 failed"
    bad = tmp_path / "bad.lock"
    bad.write_text("{")
    assert warm(mirror_env, bad).returncode == 2
