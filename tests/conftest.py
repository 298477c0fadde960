"""Session-wide real servers: SeaweedFS (S3) and fake-gcs-server (GCS), on free 127.0.0.1 ports."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from botocore.httpsession import URLLib3Session

from infra.config import load_stack_config
from infra.local.seaweedfs import AdminIdentity, SeaweedFS
from infra.local.target import LocalTarget
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
    run = f"t-{secrets.token_hex(4)}"  # every test gets its own four prefixes
    return {
        "STORAGE_SOURCE": "s3",
        "STORAGE_AWS_BUCKET": seaweed.bucket,
        "STORAGE_AWS_PREFIX": f"{run}/packeton",
        "STORAGE_AWS_ARTIFACT_PREFIX": f"{run}/artifact",
        "STORAGE_AWS_MIRROR_META_PREFIX": f"{run}/mirror-meta",
        "STORAGE_AWS_MIRROR_DIST_PREFIX": f"{run}/mirror-dist",
        "STORAGE_AWS_ARGS": json.dumps(args),
    }


@pytest.fixture
def local_env(tmp_path: Path) -> dict[str, str]:
    return {"STORAGE_SOURCE": "local", "SATCHEL_LOCAL_ROOT": str(tmp_path / "storage")}


@pytest.fixture
def mount_tmpfs(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """Mount a real tmpfs (`size`, `ro`): root ignores permission bits, so chmod proves nothing."""
    mounted: list[Path] = []

    def mount(name: str = "fs", *, size: str = "1m", read_only: bool = False) -> Path:
        target = tmp_path / name
        target.mkdir(parents=True)
        options = f"size={size}" + (",ro" if read_only else "")
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.strip()}")
        mounted.append(target)
        return target

    yield mount
    for target in reversed(mounted):
        subprocess.run(["umount", "-l", str(target)], check=False)


@pytest.fixture
def lying_checksum() -> Iterator[Callable[[Any, str], None]]:
    """`lie(client, crc32)`: the client's GETs get the real server's answer, body untouched,
    with `crc32` (base64) as the object's CRC32 header: a body that no longer matches the
    checksum it was stored with, as botocore sees it."""
    session = URLLib3Session()
    hooked: list[Any] = []

    def lie(client: Any, crc32: str) -> None:
        def send(request: Any, **_: Any) -> Any:
            response = session.send(request)
            if "x-amz-checksum-crc32" in response.headers:
                response.headers["x-amz-checksum-crc32"] = crc32
            return response

        client.meta.events.register("before-send.s3.GetObject", send)
        hooked.append((client, send))

    yield lie
    for client, send in hooked:
        client.meta.events.unregister("before-send.s3.GetObject", send)
    session.close()


@contextmanager
def running_target(
    tmp_path_factory: pytest.TempPathFactory, name: str, **options: Any
) -> Iterator[LocalTarget]:
    """A local IRSA target from the committed Pulumi.dev.yaml, up for the `with` block."""
    local = LocalTarget(load_stack_config("dev"), tmp_path_factory.mktemp(name), **options)
    local.up()
    try:
        yield local
    finally:
        local.down()


@pytest.fixture(scope="session")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTarget]:
    """The shared local IRSA target (tests that stop or reconfigure it use their own)."""
    with running_target(tmp_path_factory, "local-target") as local:
        yield local


@pytest.fixture
def pod_env(target: LocalTarget) -> dict[str, str]:
    """What a pod with IRSA sees (the stack's env plus the IRSA variables), with a fresh token."""
    target.rotate_token()
    return dict(target.pod_env())
