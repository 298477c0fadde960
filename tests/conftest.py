"""Session-wide real servers: SeaweedFS (S3) and fake-gcs-server (GCS), on free 127.0.0.1 ports."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.local.seaweedfs import AdminIdentity, SeaweedFS
from tests.servers import FakeGcs

BUCKET = "satchel-test"


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    server = SeaweedFS(
        run_dir=tmp_path_factory.mktemp("seaweedfs"),
        bucket=BUCKET,
        admin=AdminIdentity(access_key="satchel-admin", secret_key=secrets.token_hex(20)),
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def fake_gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeGcs]:
    server = FakeGcs()
    server.start(tmp_path_factory.mktemp("fake-gcs") / "server.log")
    yield server
    server.stop()


@pytest.fixture
def s3_env(seaweed: SeaweedFS) -> dict[str, str]:
    """The env of an app using the SeaweedFS bucket with static keys (the OVH-style example)."""
    import json

    args = {
        "endpoint": seaweed.endpoint,
        "accessKeyId": seaweed.admin.access_key,
        "accessKeySecret": seaweed.admin.secret_key,
        "region": "waw",
    }
    return {
        "STORAGE_SOURCE": "s3",
        "STORAGE_AWS_BUCKET": seaweed.bucket,
        "STORAGE_AWS_PREFIX": f"t-{secrets.token_hex(4)}",
        "STORAGE_AWS_ARGS": json.dumps(args),
    }


@pytest.fixture
def local_env(tmp_path: Path) -> dict[str, str]:
    return {"STORAGE_SOURCE": "local", "SATCHEL_LOCAL_ROOT": str(tmp_path / "storage")}
