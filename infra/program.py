"""The Pulumi program: stack config -> bucket, identity, Kubernetes objects, stack outputs."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.components.app import AppDeployment
from infra.components.bucket import SecureBucket
from infra.components.identity import AppIdentity
from infra.components.kubernetes import AppKubernetes
from infra.config import PROJECT, StackConfig, check_secret_keys, parse_stack_config
from infra.kube import kubernetes_provider
from infra.lookups import check_pod_identity_agent, oidc_provider_arn
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


def secret_config_keys() -> frozenset[str]:
    """Keys set with `pulumi config set --secret` (the language host lists them in
    PULUMI_CONFIG_SECRET_KEYS; the SDK's own list is what tests and providers set)."""
    raw = {**pulumi.runtime.get_config_env(), **pulumi.runtime.config.CONFIG.get()}
    listed = set(pulumi.runtime.get_config_secret_keys_env())
    return frozenset(listed | {key for key in raw if pulumi.runtime.is_config_secret(key)})


def main() -> None:
    raw = read_pulumi_config()
    secret_keys = secret_config_keys()
    check_secret_keys(
        secret_keys, present=frozenset(k for k, v in raw.items() if v not in ("", None))
    )
    config = parse_stack_config(raw)
    stack = pulumi.get_stack()
    name = f"{PROJECT}-{stack}"
    # The stack's fully qualified name (a diy backend's organization is "organization").
    owner = f"{pulumi.get_organization() or 'organization'}/{pulumi.get_project()}/{stack}"

    # Everything looked up first: a missing piece stops `up` before anything is made.
    identity_doc = aws.get_caller_identity()
    partition = aws.get_partition().partition
    cluster = aws.eks.get_cluster(name=config.cluster_name) if config.cluster_name else None
    issuer_url = config.oidc_issuer_url or (
        cluster.identities[0].oidcs[0].issuer if cluster is not None else None
    )
    provider_arn = None
    if config.identity_mode == "irsa":
        assert issuer_url is not None
        provider_arn = oidc_provider_arn(
            config, issuer_url, account_id=identity_doc.account_id, owner=owner
        )
    else:
        check_pod_identity_agent(config)
    aws_config = {key: value for key, value in raw.items() if key.startswith("aws:")}
    # First too: building its kubeconfig may refuse the stack's AWS settings.
    provider = kubernetes_provider(
        f"{name}-k8s", config, cluster=cluster, aws_config=aws_config, secret_keys=secret_keys
    )

    storage = SecureBucket(f"{name}-storage", config, partition=partition)
    identity = AppIdentity(
        f"{name}-app",
        config,
        bucket_name=storage.bucket.bucket,
        issuer_url=issuer_url,
        oidc_provider_arn=provider_arn,
        owner=owner,
        partition=partition,
    )
    env = storage.bucket.bucket.apply(lambda bucket: app_env(config, bucket))
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
            env=env,
            depends_on=[kubernetes.config_map]
            + ([identity.pod_identity] if identity.pod_identity is not None else []),
        )

    outputs = pulumi.Output.all(
        storage.bucket.bucket, storage.bucket.arn, identity.role_arn, env
    ).apply(
        lambda v: stack_outputs(config, bucket_name=v[0], bucket_arn=v[1], role_arn=v[2], env=v[3])
    )
    for key in OUTPUT_KEYS:
        pulumi.export(key, outputs[key])
