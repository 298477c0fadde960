"""The Kubernetes provider (infra/kube.py): the cluster it talks to, as which AWS identity, and
how it applies the stack's objects."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.infra.harness import ProgramRun, RecordingMocks, run_program, stack_config_with

PROVIDER = "pulumi:providers:kubernetes"


def _exec(run: ProgramRun) -> dict[str, Any]:
    kubeconfig = json.loads(run.one(PROVIDER).inputs["kubeconfig"])
    user: dict[str, Any] = kubeconfig["users"][0]["user"]["exec"]
    return user


def _env(block: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in block.get("env", [])}


def test_the_exec_plugin_runs_as_the_stacks_aws_profile_and_role() -> None:
    role = "arn:aws:iam::123456789012:role/deployer"
    run = run_program(
        stack_config_with(
            "dev",
            **{
                "aws:profile": "platform-dev",
                "aws:assumeRoles": [{"roleArn": role, "sessionName": "pulumi"}],
                "aws:sharedCredentialsFiles": ["/home/ci/.aws/credentials"],
            },
        )
    )
    block = _exec(run)
    assert block["command"] == "aws"
    assert block["args"] == [
        "eks",
        "get-token",
        "--cluster-name",
        "packeton-dev",
        "--region",
        "eu-west-1",
        "--role-arn",
        role,
    ]
    assert _env(block) == {
        "AWS_PROFILE": "platform-dev",
        "AWS_SHARED_CREDENTIALS_FILE": "/home/ci/.aws/credentials",
    }


def test_keys_given_to_pulumi_reach_the_exec_plugin_only_inside_a_secret_kubeconfig() -> None:
    run = run_program(
        stack_config_with(
            "dev", **{"aws:accessKey": "AKIAEXAMPLE", "aws:secretKey": "s3cr3t-value"}
        ),
        secret_keys=("aws:secretKey",),
    )
    assert _env(_exec(run)) == {
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "s3cr3t-value",
    }
    provider = run.one(PROVIDER)
    assert "kubeconfig" in provider.options.secret_inputs
    for resource in run.mocks.resources:  # and nowhere else
        if resource is not provider:
            assert "s3cr3t-value" not in json.dumps(resource.inputs, default=str), resource.name
    assert "s3cr3t-value" not in json.dumps(run.outputs)


def test_without_aws_settings_the_exec_plugin_uses_the_ambient_chain() -> None:
    block = _exec(run_program(stack_config_with("dev")))
    assert "env" not in block
    assert "--role-arn" not in block["args"]


def test_a_role_chain_the_cli_cannot_assume_is_refused_with_the_alternative() -> None:
    roles = [{"roleArn": "arn:aws:iam::1:role/a"}, {"roleArn": "arn:aws:iam::1:role/b"}]
    mocks = RecordingMocks()
    with pytest.raises(Exception, match=r"aws:assumeRoles: .*satchel:kubeconfig"):
        run_program(stack_config_with("dev", **{"aws:assumeRoles": roles}), mocks=mocks)
    assert mocks.resources == []  # refused before anything is made


def test_a_secret_kubeconfig_stays_secret_in_the_providers_inputs() -> None:
    kubeconfig = "apiVersion: v1\nkind: Config\nusers: [{name: u, user: {token: abc123}}]\n"
    run = run_program(
        stack_config_with("dev", kubeconfig=kubeconfig, kubeContext="prod"),
        secret_keys=("satchel:kubeconfig", "satchel:kubeContext"),
    )
    provider = run.one(PROVIDER)
    assert provider.inputs["kubeconfig"] == kubeconfig
    assert {"kubeconfig", "context"} <= provider.options.secret_inputs
    assert "abc123" not in json.dumps(run.outputs)


def test_the_provider_is_replaced_only_for_another_cluster() -> None:
    dev = run_program(stack_config_with("dev"))
    assert dev.one(PROVIDER).inputs["clusterIdentifier"] == (
        "arn:aws:eks:eu-west-1:123456789012:cluster/packeton-dev"
    )
    own = run_program(stack_config_with("dev", kubeconfig="apiVersion: v1\n", kubeContext="x"))
    assert own.one(PROVIDER).inputs["clusterIdentifier"] == "kubeconfig:x"


def test_the_configmap_is_updated_in_place_and_existing_objects_are_adopted_only_if_asked() -> None:
    dev = run_program(stack_config_with("dev"))
    provider = dev.one(PROVIDER).inputs
    assert provider["enableConfigMapMutable"] == "true"
    assert provider["upsertExistingObjects"] == "false"
    account = dev.one("kubernetes:core/v1:ServiceAccount")
    assert account.options.retain_on_delete is False

    adopted = run_program(stack_config_with("dev", adoptExistingObjects=True, createNamespace=True))
    assert adopted.one(PROVIDER).inputs["upsertExistingObjects"] == "true"
    # Adopted objects were there before the stack: destroy leaves them.
    assert adopted.one("kubernetes:core/v1:Namespace").options.retain_on_delete is True
    assert adopted.one("kubernetes:core/v1:ServiceAccount").options.retain_on_delete is True
    assert adopted.one("kubernetes:core/v1:ConfigMap").options.retain_on_delete is False
