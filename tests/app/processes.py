"""Real processes for end-to-end tests: `satchel serve` (granian), and Composer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.local.ports import free_port
from tests.cli_helpers import SATCHEL

_APP_PREFIXES = ("STORAGE_", "SATCHEL_", "MIRROR_", "AWS_", "GOOGLE_")


@dataclass
class ServeProcess:
    """`satchel serve` with exactly `env` (plus PATH and the like), on 127.0.0.1:`port`."""

    env: dict[str, str]
    log_dir: Path  # gets NAME.out (the access log) and NAME.err
    name: str = "serve"
    port: int = field(default_factory=free_port)
    workers: int = 1
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def access_log(self) -> Path:
        return self.log_dir / f"{self.name}.out"

    def start(self) -> ServeProcess:
        base = {k: v for k, v in os.environ.items() if not k.startswith(_APP_PREFIXES)}
        args = [SATCHEL, "serve", "--port", str(self.port), "--workers", str(self.workers)]
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (
            self.access_log.open("ab") as out,
            (self.log_dir / f"{self.name}.err").open("ab") as err,
        ):
            self.process = subprocess.Popen(args, env={**base, **self.env}, stdout=out, stderr=err)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"satchel serve exited with {self.process.returncode}")
            try:
                urllib.request.urlopen(f"{self.url}/healthz", timeout=1).close()
                return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("satchel serve did not answer /healthz within 30 s")

    def stop(self) -> int | None:
        """SIGTERM (the server's graceful shutdown), then the exit code."""
        if self.process is None:
            return None
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.process = None
        return code

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def access_lines(self) -> list[dict[str, Any]]:
        lines = self.access_log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]


def composer_project(directory: Path, mirror_url: str, requires: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    document = {
        "name": "test/project",
        "require": requires,
        "repositories": [{"type": "composer", "url": mirror_url}, {"packagist.org": False}],
        "config": {"secure-http": False},
    }
    (directory / "composer.json").write_text(json.dumps(document, indent=2))
    return directory


def composer(
    project: Path, home: Path, *args: str, progress_flag: bool = True
) -> subprocess.CompletedProcess[str]:
    """Composer with its own fresh home and cache: nothing from earlier runs helps it.
    `progress_flag=False` leaves out `--no-progress`, which some commands (2.5's `audit`)
    refuse."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "COMPOSER_HOME": str(home / "composer"),
        "COMPOSER_CACHE_DIR": str(home / "cache"),
        "COMPOSER_ALLOW_SUPERUSER": "1",
        "COMPOSER_NO_INTERACTION": "1",
    }
    return subprocess.run(
        ["composer", *args, "--no-interaction", *(["--no-progress"] if progress_flag else [])],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
