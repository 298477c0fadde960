"""Integration tests against stack outputs: what `pulumi stack output --json` promises.

Target: the outputs JSON named by SATCHEL_STACK_OUTPUTS (from
`pulumi stack output --json --show-secrets > outputs.json`), else the local target provisioned
from Pulumi.dev.yaml, which writes the same JSON. Against a real stack, the checks that need the
service account's token run only inside the cluster (as a Job using the ServiceAccount, where
EKS injects AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE); elsewhere they are skipped.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import runtime
from infra.local.target import LocalTarget
from infra.outputs import OUTPUT_KEYS, dotenv
from runtime import PermissionDenied
from runtime.storage.s3 import S3Adapter

OUTPUTS_VAR = "SATCHEL_STACK_OUTPUTS"
IN_CLUSTER_HINT = (
    "needs the service account's token: run this suite in the cluster as a Job using the"
    " ServiceAccount (EKS injects AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE), with"
    f" {OUTPUTS_VAR} pointing at the outputs JSON"
)


@dataclass
class Stack:
    outputs: dict[str, Any]
    pod_env: dict[str, str] | None  # None: no token here, skip what needs one

    def storages(self) -> runtime.Storages:
        if self.pod_env is None:
            pytest.skip(IN_CLUSTER_HINT)
        return runtime.open_storages(runtime.load_settings(self.pod_env))


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest) -> Stack:
    path = os.environ.get(OUTPUTS_VAR)
    if path:
        outputs = json.loads(Path(path).read_text())
        injected = {
            k: os.environ[k]
            for k in ("AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE")
            if k in os.environ
        }
        pod_env = {**outputs["env"], **injected} if len(injected) == 2 else None
        return Stack(outputs, pod_env)
    target: LocalTarget = request.getfixturevalue("target")
    target.rotate_token()
    return Stack(json.loads(target.outputs_file.read_text()), target.pod_env())


def test_the_outputs_have_exactly_the_documented_keys(stack: Stack) -> None:
    assert tuple(stack.outputs) == OUTPUT_KEYS
    assert stack.outputs["identityMode"] in ("irsa", "pod-identity")
    assert stack.outputs["bucketArn"].endswith(f":::{stack.outputs['bucketName']}")


def test_the_env_loads_and_names_the_stacks_bucket(stack: Stack) -> None:
    env = stack.outputs["env"]
    settings = runtime.load_settings(env)
    assert settings.source == "s3"
    assert settings.bucket == stack.outputs["bucketName"]
    assert env["AWS_REGION"] == stack.outputs["region"]
    assert stack.outputs["dotenv"] == dotenv(env)
    assert not settings.aws_args.has_static_keys


def test_the_service_accounts_token_reaches_the_bucket_through_sts(stack: Stack) -> None:
    storages = stack.storages()
    adapter = storages.packages.adapter
    assert isinstance(adapter, S3Adapter) and adapter.credentials is not None
    key = f"outputs-check-{secrets.token_hex(4)}.txt"
    storages.packages.write(key, b"through sts")
    assert storages.packages.read(key) == b"through sts"
    storages.packages.delete(key)
    info = adapter.credentials.info
    assert info.source == "web-identity"
    assert info.role_arn == stack.outputs["roleArn"]


def test_every_prefix_is_writable(stack: Stack) -> None:
    key = f"outputs-check-{secrets.token_hex(4)}.txt"
    for _, storage in stack.storages().items():
        storage.write(key, b"ok")
        assert storage.exists(key)
        storage.delete(key)
        assert not storage.exists(key)


def test_outside_the_prefixes_is_denied(stack: Stack) -> None:
    if stack.pod_env is None:
        pytest.skip(IN_CLUSTER_HINT)
    env = {**stack.pod_env, "STORAGE_AWS_PREFIX": "outside-the-prefixes"}
    storage = runtime.open_storages(runtime.load_settings(env)).packages
    key = f"outputs-check-{secrets.token_hex(4)}.txt"
    with pytest.raises(PermissionDenied):
        storage.write(key, b"must not land")
    with pytest.raises(PermissionDenied):
        storage.read(key)
    # The role may list the whole bucket: the key is not there.
    assert key not in [info.key for info in storage.list()]
