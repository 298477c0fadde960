"""The Pulumi program: stack config -> bucket, identity, Kubernetes objects, stack outputs."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra.components.app import AppDeployment
from infra.components.bucket import SecureBucket
from infra.components.identity import AppIdentity
from infra.components.kubernetes import AppKubernetes
from infra.config import PROJECT, StackConfig, parse_stack_config
from infra.outputs import OUTPUT_KEYS, app_env, stack_outputs


def read_pulumi_config() -> dict[str, Any]:
    """All of the stack's config, decoded: Pulumi hands values over as strings."""
    raw: dict[str, Any] = {
        **pulumi.runtime.get_config_env(),
        **pulumi.runtime.config.CONFIG.get(),
    }
    return {key: _decode(key, value) for key, value in raw.items()}


def _decode(key: str, value: Any) -> Any:
    """JSON-decode booleans, numbers and objects; keep strings as they are."""
    if not isinstance(value, str) or not key.startswith(f"{PROJECT}:"):
        return value
    field = StackConfig.model_fields.get(_field_name(key.partition(":")[2]))
    if field is None or field.annotation in (str, str | None):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value  # the model's validation names the key and the expected type


def _field_name(alias: str) -> str:
    for name, field in StackConfig.model_fields.items():
        if field.alias == alias or name == alias:
            return name
    return alias


def kubeconfig_for_cluster(cluster: aws.eks.AwaitableGetClusterResult, region: str) -> str:
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
            "users": [
                {
                    "name": name,
                    "user": {
                        "exec": {
                            "apiVersion": "client.authentication.k8s.io/v1beta1",
                            "command": "aws",
                            "args": [
                                "eks",
                                "get-token",
                                "--cluster-name",
                                name,
                                "--region",
                                region,
                            ],
                        }
                    },
                }
            ],
        }
    )


def main() -> None:
    config = parse_stack_config(read_pulumi_config())
    stack = pulumi.get_stack()
    name = f"{PROJECT}-{stack}"

    identity_doc = aws.get_caller_identity()
    partition = aws.get_partition().partition
    cluster = aws.eks.get_cluster(name=config.cluster_name) if config.cluster_name else None
    issuer_url = config.oidc_issuer_url or (
        cluster.identities[0].oidcs[0].issuer if cluster is not None else None
    )

    storage = SecureBucket(f"{name}-storage", config)
    identity = AppIdentity(
        f"{name}-app",
        config,
        bucket_name=storage.bucket.bucket,
        issuer_url=issuer_url,
        account_id=identity_doc.account_id,
        partition=partition,
    )
    env = storage.bucket.bucket.apply(lambda bucket: app_env(config, bucket))

    kubeconfig = config.kubeconfig or (
        kubeconfig_for_cluster(cluster, config.region) if cluster is not None else None
    )
    provider = k8s.Provider(f"{name}-k8s", kubeconfig=kubeconfig, context=config.kube_context)
    kubernetes = AppKubernetes(
        f"{name}-k8s-app", config, provider=provider, role_arn=identity.role_arn, env=env
    )
    if config.deploy_app:
        AppDeployment(
            f"{name}-serve",
            config,
            provider=provider,
            service_account=kubernetes.service_account.metadata["name"],
            config_map=kubernetes.config_map.metadata["name"],
        )

    outputs = pulumi.Output.all(
        storage.bucket.bucket, storage.bucket.arn, identity.role_arn, env
    ).apply(
        lambda v: stack_outputs(config, bucket_name=v[0], bucket_arn=v[1], role_arn=v[2], env=v[3])
    )
    for key in OUTPUT_KEYS:
        pulumi.export(key, outputs[key])
