"""Integration tests against stack outputs: what `pulumi stack output --json` promises.

Target: the outputs JSON named by SATCHEL_STACK_OUTPUTS (from
`pulumi stack output --json --show-secrets > outputs.json`, which sorts the keys), else the local
target provisioned from Pulumi.dev.yaml, which writes the same JSON. Against a real stack, the
checks that need the service account's credentials run only inside the cluster (as a Job using
the ServiceAccount, where EKS injects AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE for irsa, or
AWS_CONTAINER_CREDENTIALS_FULL_URI and AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE for Pod
Identity); elsewhere they are skipped.
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
from runtime.credentials import CredentialInfo
from runtime.identity import caller_identity
from runtime.storage.s3 import S3Adapter

OUTPUTS_VAR = "SATCHEL_STACK_OUTPUTS"
# What EKS injects into the pods of the ServiceAccount, per identityMode; and the source
# `runtime.credentials` then resolves.
INJECTED = {
    "irsa": ("AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"),
    "pod-identity": (
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    ),
}
CREDENTIAL_SOURCE = {"irsa": "web-identity", "pod-identity": "container"}
IN_CLUSTER_HINT = (
    "needs the service account's credentials: run this suite in the cluster as a Job using the"
    " ServiceAccount (EKS injects AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE for irsa, the"
    " AWS_CONTAINER_* variables for pod-identity), with"
    f" {OUTPUTS_VAR} pointing at the outputs JSON"
)


def assert_documented_keys(outputs: dict[str, Any]) -> None:
    # As a set: `pulumi stack output --json` sorts the keys, the local target does not.
    assert set(outputs) == set(OUTPUT_KEYS)
    assert outputs["identityMode"] in CREDENTIAL_SOURCE
    assert outputs["bucketArn"].endswith(f":::{outputs['bucketName']}")


def assert_credentials_are_the_stacks_role(
    outputs: dict[str, Any], info: CredentialInfo, caller_arn: str | None
) -> None:
    """The pod's credentials come the way the stack's identityMode says, as its role."""
    mode = outputs["identityMode"]
    assert info.source == CREDENTIAL_SOURCE[mode], (mode, info.source)
    if mode == "irsa":
        assert info.role_arn == outputs["roleArn"]
    else:  # Pod Identity names no role to the pod: STS says which one the session is
        assert caller_arn is not None, "STS GetCallerIdentity is needed to check the role"
        role_name = outputs["roleArn"].rpartition("/")[2]
        assert f":assumed-role/{role_name}/" in caller_arn, (caller_arn, outputs["roleArn"])


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
        names = INJECTED.get(outputs.get("identityMode"), ())
        injected = {k: os.environ[k] for k in names if k in os.environ}
        pod_env = {**outputs["env"], **injected} if names and len(injected) == 2 else None
        return Stack(outputs, pod_env)
    target: LocalTarget = request.getfixturevalue("target")
    target.rotate_token()
    return Stack(json.loads(target.outputs_file.read_text()), target.pod_env())


def test_the_outputs_have_exactly_the_documented_keys(stack: Stack) -> None:
    assert_documented_keys(stack.outputs)


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
    caller = None
    if stack.outputs["identityMode"] == "pod-identity":
        settings = runtime.load_settings(stack.pod_env)
        identity = caller_identity(adapter.credentials, settings.aws_args, settings.environ)
        caller = identity.arn
    assert_credentials_are_the_stacks_role(stack.outputs, adapter.credentials.info, caller)


# The checks themselves, against what a real stack gives (no stack needed)


def _real_outputs(mode: str) -> dict[str, Any]:
    """Outputs as `pulumi stack output --json` prints them: keys sorted."""
    role = "arn:aws:iam::123456789012:role/satchel-dev-app-role-1a2b3c4"
    outputs = {
        "bucketName": "packeton-dev-storage",
        "bucketArn": "arn:aws:s3:::packeton-dev-storage",
        "region": "eu-west-1",
        "roleArn": role,
        "namespace": "packeton",
        "serviceAccount": "packeton",
        "identityMode": mode,
        "env": {"STORAGE_SOURCE": "s3"},
        "dotenv": "STORAGE_SOURCE=s3\n",
    }
    return json.loads(json.dumps(outputs, sort_keys=True))


def test_the_key_check_accepts_the_sorted_keys_of_pulumi_stack_output() -> None:
    outputs = _real_outputs("irsa")
    assert tuple(outputs) != OUTPUT_KEYS
    assert_documented_keys(outputs)
    with pytest.raises(AssertionError):
        assert_documented_keys({**outputs, "extra": 1})


def test_the_credential_check_follows_the_identity_mode() -> None:
    irsa = _real_outputs("irsa")
    web = CredentialInfo(source="web-identity", role_arn=irsa["roleArn"])
    assert_credentials_are_the_stacks_role(irsa, web, None)
    pod = _real_outputs("pod-identity")
    container = CredentialInfo(source="container")
    session = "arn:aws:sts::123456789012:assumed-role/satchel-dev-app-role-1a2b3c4/eks-pod-1"
    assert_credentials_are_the_stacks_role(pod, container, session)
    with pytest.raises(AssertionError):
        assert_credentials_are_the_stacks_role(pod, web, session)
    with pytest.raises(AssertionError):
        other = "arn:aws:sts::123456789012:assumed-role/node-role/i-0abc"
        assert_credentials_are_the_stacks_role(pod, container, other)


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
