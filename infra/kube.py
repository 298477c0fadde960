"""The Kubernetes provider: which cluster, with which AWS identity, and how it applies objects.

With `clusterName`, the kubeconfig is the one `aws eks update-kubeconfig` writes: an exec
plugin running `aws eks get-token` (the AWS CLI is a prerequisite). That plugin runs outside
the AWS provider, so the AWS settings the stack gives Pulumi (`aws:profile`, `aws:assumeRoles`,
keys, shared files) are handed to it explicitly; else it would sign with the ambient chain,
another principal than the one that made the role ("Unauthorized").
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra.config import StackConfig

# aws: config key -> the AWS CLI's variable for the same setting.
_CLI_ENV = {
    "aws:profile": "AWS_PROFILE",
    "aws:accessKey": "AWS_ACCESS_KEY_ID",
    "aws:secretKey": "AWS_SECRET_ACCESS_KEY",
    "aws:token": "AWS_SESSION_TOKEN",
}
_CLI_FILES = {
    "aws:sharedCredentialsFiles": "AWS_SHARED_CREDENTIALS_FILE",
    "aws:sharedConfigFiles": "AWS_CONFIG_FILE",
}


def _json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def get_token_exec(cluster_name: str, region: str, aws_config: Mapping[str, Any]) -> dict[str, Any]:
    """The kubeconfig `exec` block: `aws eks get-token` as the stack's AWS identity."""
    args = ["eks", "get-token", "--cluster-name", cluster_name, "--region", region]
    env = [
        {"name": var, "value": str(aws_config[key])}
        for key, var in _CLI_ENV.items()
        if aws_config.get(key)
    ]
    for key, var in _CLI_FILES.items():
        files = _json(aws_config.get(key))
        if files:
            env.append({"name": var, "value": str(files[0] if isinstance(files, list) else files)})
    roles = _json(aws_config.get("aws:assumeRoles")) or []
    if isinstance(roles, dict):
        roles = [roles]
    if len(roles) > 1 or any(role.get("externalId") for role in roles):
        raise pulumi.RunError(
            "aws:assumeRoles: `aws eks get-token` can assume one role without an external id;"
            " for a chain of roles or an external id, give satchel:kubeconfig a kubeconfig"
            " whose exec plugin uses an AWS CLI profile that assumes them"
        )
    if roles and roles[0].get("roleArn"):
        args += ["--role-arn", str(roles[0]["roleArn"])]
    block: dict[str, Any] = {
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "command": "aws",
        "args": args,
        "interactiveMode": "Never",
    }
    if env:
        block["env"] = env
    return block


def kubeconfig_for_cluster(
    cluster: aws.eks.AwaitableGetClusterResult, region: str, aws_config: Mapping[str, Any]
) -> str:
    """A kubeconfig using `aws eks get-token`, as `aws eks update-kubeconfig` writes it."""
    name = cluster.name
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": name,
                    "cluster": {
                        "server": cluster.endpoint,
                        "certificate-authority-data": cluster.certificate_authorities[0].data,
                    },
                }
            ],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
            "current-context": name,
            "users": [{"name": name, "user": {"exec": get_token_exec(name, region, aws_config)}}],
        }
    )


def kubernetes_provider(
    name: str,
    config: StackConfig,
    *,
    cluster: aws.eks.AwaitableGetClusterResult | None,
    aws_config: Mapping[str, Any],
    secret_keys: frozenset[str],
) -> k8s.Provider:
    if config.kubeconfig:
        kubeconfig = config.kubeconfig
        identifier = f"kubeconfig:{config.kube_context or 'current-context'}"
    else:
        assert cluster is not None  # StackConfig asks for clusterName or kubeconfig
        kubeconfig = kubeconfig_for_cluster(cluster, config.region, aws_config)
        identifier = cluster.arn
    context: pulumi.Input[str] | None = config.kube_context
    if context is not None and "satchel:kubeContext" in secret_keys:
        context = pulumi.Output.secret(context)
    return k8s.Provider(
        name,
        # A kubeconfig may hold credentials (and ours, the stack's AWS keys): secret in state.
        kubeconfig=pulumi.Output.secret(kubeconfig),
        context=context,
        # Replace the provider (and so every object) only for another cluster, not for a
        # rotated token or a changed exec plugin in the kubeconfig.
        cluster_identifier=identifier,
        # The env ConfigMap is updated in place (its fixed name would otherwise mean delete,
        # then create, and pods starting in between fail with CreateContainerConfigError).
        enable_config_map_mutable=True,
        # Since pulumi-kubernetes 4.29 creating an existing object fails with AlreadyExists;
        # adopting it is the user's explicit choice.
        upsert_existing_objects=config.adopt_existing_objects,
    )
