"""Liveness and readiness, against a target of this module's own whose storage is stopped
and restarted."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from infra.local.target import LocalTarget
from tests.app.conftest import Mirror
from tests.conftest import running_target
from tests.test_storage_contract import MISSING_BUCKET
from tests.test_storage_contract import _gcs_env as gcs_env

MakeMirror = Callable[..., Mirror]


@pytest.fixture(scope="module")
def own_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTarget]:
    with running_target(tmp_path_factory, "readyz-target") as local:
        yield local


@pytest.fixture
def env(own_target: LocalTarget) -> dict[str, str]:
    own_target.rotate_token()
    return {**own_target.pod_env(), "SATCHEL_UPSTREAMS": "up=http://127.0.0.1:9"}


@dataclass
class Storage:
    """Stops and starts the target's SeaweedFS; it is always running again after the test."""

    target: LocalTarget
    stopped: bool = False

    def stop(self) -> None:
        self.target.stop_storage()
        self.stopped = True

    def start(self) -> None:
        self.target.start_storage()
        self.stopped = False


@pytest.fixture
def storage(own_target: LocalTarget) -> Iterator[Storage]:
    control = Storage(own_target)
    yield control
    if control.stopped:
        control.start()


def wait_ready(mirror: Mirror, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        mirror.clock.advance(10)  # past the remembered result
        if mirror.get("/readyz").status_code == 200:
            return
        time.sleep(0.2)
    raise AssertionError(f"not ready after {seconds} s: {mirror.get('/readyz').json()}")


def test_healthz_answers_without_any_io(make_mirror: MakeMirror, env: dict[str, str]) -> None:
    mirror = make_mirror(env)
    assert mirror.get("/healthz").json() == {"ok": True}
    assert mirror.client.app.state.mirror.stats.snapshot()["bucket_requests"] == 0


def test_readyz_fails_with_the_reason_while_storage_is_down_and_recovers(
    make_mirror: MakeMirror,
    env: dict[str, str],
    storage: Storage,
) -> None:
    mirror = make_mirror(env)
    assert mirror.get("/readyz").json() == {"ok": True}

    storage.stop()
    assert mirror.get("/readyz").status_code == 200  # remembered for a few seconds
    mirror.clock.advance(10)
    down = mirror.get("/readyz")
    assert down.status_code == 503
    assert down.json()["ok"] is False and down.json()["reason"]
    assert mirror.get("/healthz").status_code == 200  # alive all along

    storage.start()
    wait_ready(mirror)


def test_the_app_starts_while_storage_is_down_and_becomes_ready_when_it_is_back(
    make_mirror: MakeMirror,
    env: dict[str, str],
    storage: Storage,
) -> None:
    storage.stop()
    mirror = make_mirror(env)  # runs the app's startup
    assert mirror.get("/healthz").status_code == 200
    not_ready = mirror.get("/readyz")
    assert not_ready.status_code == 503 and not_ready.json()["reason"]

    storage.start()
    wait_ready(mirror)


@pytest.mark.parametrize("backend", ["s3", "gcs"])
def test_readyz_says_which_bucket_does_not_exist(
    make_mirror: MakeMirror, request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    if backend == "s3":
        env = {**request.getfixturevalue("s3_env"), "STORAGE_AWS_BUCKET": MISSING_BUCKET}
    else:
        env = gcs_env(request.getfixturevalue("fake_gcs"), tmp_path, MISSING_BUCKET)
    mirror = make_mirror({**env, "SATCHEL_UPSTREAMS": "up=http://127.0.0.1:9"})
    answer = mirror.get("/readyz")
    assert answer.status_code == 503
    assert f"bucket '{MISSING_BUCKET}' does not exist" in answer.json()["reason"]
