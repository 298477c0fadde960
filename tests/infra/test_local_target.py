"""The IAM options on the local target, against a real SeaweedFS: what it enforces of them.

Enforced: the role's path (its ARN) and maxSessionDuration (longer sessions are refused).
Not enforceable there, and so only mock-tested (tests/infra/test_program.py, the policy pack):
permissionsBoundaryArn (SeaweedFS has no boundaries), tags (no IAM tags), and Pod Identity's
session-tag conditions (the local agent obtains credentials through web identity).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from infra.config import parse_stack_config
from infra.local.target import LocalTarget
from tests.infra.harness import stack_config_with


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTarget]:
    config = parse_stack_config(
        stack_config_with("dev", rolePath="/workloads/satchel/", maxSessionDuration=7200)
    )
    local = LocalTarget(config, Path(tmp_path_factory.mktemp("iam-options")))
    local.up()
    try:
        yield local
    finally:
        local.down()


def _assume(target: LocalTarget, role_arn: str, duration: int) -> dict[str, object]:
    sts = boto3.client(
        "sts",
        endpoint_url=target.endpoint,
        region_name="us-east-1",
        config=Config(signature_version=UNSIGNED, retries={"total_max_attempts": 1}),
    )
    response = sts.assume_role_with_web_identity(
        RoleArn=role_arn,
        RoleSessionName="iam-options",
        WebIdentityToken=target.mint_token(),
        DurationSeconds=duration,
    )
    return dict(response["Credentials"])


def test_the_role_arn_carries_the_path_and_is_assumable(target: LocalTarget) -> None:
    assert (
        target.role_arn == "arn:aws:iam::000000000000:role/workloads/satchel/packeton-dev-storage"
    )
    assert _assume(target, target.role_arn, 3600)["AccessKeyId"]
    assert target.outputs()["roleArn"] == target.role_arn


@pytest.mark.parametrize(
    "arn",
    [
        pytest.param("arn:aws:iam::000000000000:role/packeton-dev-storage", id="without-path"),
        pytest.param(
            "arn:aws:iam::000000000000:role/other/satchel/packeton-dev-storage", id="other-path"
        ),
    ],
)
def test_the_role_is_not_assumable_under_another_path(target: LocalTarget, arn: str) -> None:
    # The path is part of the role's identity: the name alone does not reach it.
    with pytest.raises(ClientError):
        _assume(target, arn, 900)


def test_a_session_up_to_max_session_duration_is_granted(target: LocalTarget) -> None:
    # 7200 s, above IAM's one-hour default: the configured bound, not the default, applies.
    assert _assume(target, target.role_arn, 7200)["AccessKeyId"]


def test_a_session_longer_than_max_session_duration_is_refused(target: LocalTarget) -> None:
    with pytest.raises(ClientError, match="DurationSeconds must be between 900 and 7200"):
        _assume(target, target.role_arn, 7300)
