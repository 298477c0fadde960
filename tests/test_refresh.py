"""Long-lived processes: credentials refresh before expiry and pick up kubelet's rotated token.

botocore refreshes 15 and 10 minutes before expiry, so a session shorter than that would call
STS on every request and prove nothing. This module runs its own SeaweedFS whose STS sessions
last 6 s, and shrinks the refresh windows to 2 s / 1 s through the runtime's variables.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import jwt
import pytest
from botocore.exceptions import ClientError

import runtime
from infra.local.target import LocalTarget
from runtime import credentials
from runtime.settings import ADVISORY_VAR, MANDATORY_VAR
from runtime.storage.s3 import S3Adapter
from tests.conftest import running_target

SESSION_SECONDS = 6
ADVISORY, MANDATORY = 2, 1
RUN_SECONDS = 14.0


@pytest.fixture(scope="module")
def short_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTarget]:
    options = {"token_duration": f"{SESSION_SECONDS}s", "token_lifetime": 5}
    with running_target(tmp_path_factory, "short-sessions", **options) as local:
        yield local


def _token_exp(token: str) -> float:
    claims = jwt.decode(token, options={"verify_signature": False})
    return float(claims["exp"])


def test_a_storage_works_across_credential_lifetimes_while_the_token_rotates(
    short_target: LocalTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens_sent: list[str] = []
    read_token = credentials._read_token

    def recording_read(path: str) -> str:
        tokens_sent.append(read_token(path))
        return tokens_sent[-1]

    monkeypatch.setattr(credentials, "_read_token", recording_read)
    first_token = short_target.rotate_token()  # expires in 5 s
    env = {**short_target.pod_env(), ADVISORY_VAR: str(ADVISORY), MANDATORY_VAR: str(MANDATORY)}
    storage = runtime.open_storages(runtime.load_settings(env)).packages
    adapter = storage.adapter
    assert isinstance(adapter, S3Adapter) and adapter.credentials is not None
    resolved = adapter.credentials

    second_token = ""
    expiries: set[str | None] = set()
    first_session = None
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < RUN_SECONDS:
        storage.write("rotation.txt", f"{elapsed:.2f}".encode())
        assert storage.read("rotation.txt") == f"{elapsed:.2f}".encode()
        if first_session is None:
            assert resolved.credentials is not None
            first_session = resolved.credentials.get_frozen_credentials()
        if not second_token and elapsed > 2:
            second_token = short_target.rotate_token(short_target.mint_token(lifetime=120))
        expiries.add(resolved.info.expires)
        time.sleep(0.2)

    lifetimes = RUN_SECONDS / SESSION_SECONDS
    assert lifetimes > 2
    # About one STS call per session: the first, then one each (SESSION - ADVISORY) seconds.
    assert len(expiries) >= 3
    assert resolved.refreshes <= math.ceil(RUN_SECONDS / (SESSION_SECONDS - ADVISORY)) + 1
    assert resolved.refreshes == len(tokens_sent)
    # The first STS call used the first token; every refresh read the rotated one.
    assert tokens_sent[0] == first_token
    assert tokens_sent[1:] and set(tokens_sent[1:]) == {second_token}
    assert _token_exp(first_token) < time.time()  # so the old token could no longer work

    # Control: without refresh, the first session's keys are now refused by SeaweedFS.
    assert first_session is not None
    stale = boto3.client(
        "s3",
        endpoint_url=short_target.endpoint,
        region_name="us-east-1",
        aws_access_key_id=first_session.access_key,
        aws_secret_access_key=first_session.secret_key,
        aws_session_token=first_session.token,
    )
    with pytest.raises(ClientError):
        stale.put_object(Bucket=short_target.bucket, Key="packeton/stale.txt", Body=b"x")


def test_a_token_file_that_vanishes_after_start_fails_with_its_name(
    short_target: LocalTarget, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(short_target.mint_token())
    env = {
        **short_target.pod_env(),
        "AWS_WEB_IDENTITY_TOKEN_FILE": str(token_file),
        ADVISORY_VAR: str(ADVISORY),
        MANDATORY_VAR: str(MANDATORY),
    }
    storage = runtime.open_storages(runtime.load_settings(env)).packages
    storage.write("vanish.txt", b"ok")
    token_file.unlink()
    time.sleep(SESSION_SECONDS - MANDATORY + 0.5)  # inside the mandatory window: must refresh
    with pytest.raises(runtime.PermissionDenied, match=f"token file {token_file}"):
        storage.write("vanish.txt", b"again")
