"""Fixtures for the mirror app: a test upstream, and app instances on the local IRSA target.

The target's prefixes are fixed by its policy, so every test mirrors under its own upstream
alias: keys never collide across tests sharing the bucket.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from infra.local.composer_repo import ComposerRepo, standard_repo
from runtime.app import create_app
from runtime.app.config import load_serve_config
from runtime.settings import load_settings
from runtime.storage import open_storages

BASE = "http://mirror.test"


@dataclass
class Clock:
    now: float = field(default_factory=time.time)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Mirror:
    """One app instance: its test client, its clock and its access log."""

    client: TestClient
    clock: Clock
    log_file: Path

    def get(self, path: str, **headers: str) -> Any:
        return self.client.get(path, headers=headers)

    def logs(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log_file.read_text().splitlines()]

    def last_cache(self) -> str:
        return str(self.logs()[-1]["cache"])


@pytest.fixture
def repo() -> Iterator[ComposerRepo]:
    upstream = standard_repo().start()
    yield upstream
    upstream.stop()


@pytest.fixture
def alias() -> str:
    return f"t{secrets.token_hex(4)}"


@contextmanager
def dist_in_bucket(env: dict[str, str], alias: str, size: int) -> Iterator[tuple[str, bytes]]:
    """`size` random bytes stored as a dist of upstream `alias` in the mirror's bucket (no
    worker has them on its disk yet): their /dists path and the bytes; deleted after."""
    payload = secrets.token_bytes(size)
    key = f"{alias}/acme/stored/1.0.0-{secrets.token_hex(4)}.zip"
    storage = open_storages(load_settings(env)).mirror_dist
    storage.write(key, payload)
    try:
        yield f"/dists/{key}", payload
    finally:
        storage.delete(key)


@pytest.fixture
def mirror_env(pod_env: dict[str, str], repo: ComposerRepo, alias: str) -> dict[str, str]:
    return {
        **pod_env,
        "SATCHEL_UPSTREAMS": f"{alias}={repo.url}",
        "SATCHEL_UPSTREAM_RETRIES": "1",
        "MIRROR_METADATA_CACHE_DIR": "",
        "MIRROR_DIST_CACHE_DIR": "",
    }


@pytest.fixture
def make_mirror(tmp_path: Path) -> Iterator[Callable[..., Mirror]]:
    """Start app instances (lifespan included); all are stopped after the test."""
    stack: list[TestClient] = []
    files: list[int] = []

    def make(env: dict[str, str], clock: Clock | None = None, **overrides: str) -> Mirror:
        env = {**env, **overrides}
        clock = clock or Clock()
        log_file = tmp_path / f"access-{len(stack)}.log"
        fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        files.append(fd)
        app = create_app(
            load_settings(env),
            load_serve_config(env),
            clock=clock,
            monotonic=clock,
            access_log_fd=fd,
        )
        client = TestClient(app, base_url=BASE)
        client.__enter__()
        stack.append(client)
        return Mirror(client, clock, log_file)

    yield make
    for client in reversed(stack):
        client.__exit__(None, None, None)
    for fd in files:
        os.close(fd)
