"""Stack outputs: the same keys from `pulumi up` and from the local target.

`env` is exactly what the app's ConfigMap holds (the env contract plus AWS_REGION, and the
bounds of the local caches it turns on, derived from the pod's volume sizes). It is
checked with the runtime's own `load_settings`, so no stack can publish an env the app rejects.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from infra.cache_layout import cache_bounds
from infra.config import StackConfig
from runtime import load_settings

OUTPUT_KEYS = (
    "bucketName",
    "bucketArn",
    "region",
    "roleArn",
    "namespace",
    "serviceAccount",
    "identityMode",
    "env",
    "dotenv",
)


def app_env(
    config: StackConfig,
    bucket_name: str,
    *,
    endpoint: str | None = None,
    sts_endpoint: str | None = None,
) -> dict[str, str]:
    """The app's environment. Credentials are not in it: IRSA (or Pod Identity) injects them."""
    args: dict[str, Any] = {"region": config.region}
    if endpoint:  # an S3-compatible target (the local one): path-style, its own STS
        args.update(endpoint=endpoint, pathStyleEndpoint=True)
    if sts_endpoint:
        args["stsEndpoint"] = sts_endpoint
    env = {
        "STORAGE_SOURCE": "s3",
        "STORAGE_AWS_BUCKET": bucket_name,
        "STORAGE_AWS_PREFIX": config.storage_prefix,
        "STORAGE_AWS_ARTIFACT_PREFIX": config.artifact_prefix,
        "STORAGE_AWS_MIRROR_META_PREFIX": config.mirror_meta_prefix,
        "STORAGE_AWS_MIRROR_DIST_PREFIX": config.mirror_dist_prefix,
        "STORAGE_AWS_ARGS": json.dumps(args, separators=(",", ":")),
        "MIRROR_METADATA_CACHE_DIR": config.mirror_metadata_cache_dir,
        "MIRROR_DIST_CACHE_DIR": config.mirror_dist_cache_dir,
        "AWS_REGION": config.region,
        # Each cache's bound, so that the caches of a pod volume never outgrow its sizeLimit.
        **cache_bounds(config),
    }
    load_settings(env)  # raises runtime.ConfigError if the runtime would refuse this env
    return env


def dotenv(env: dict[str, str]) -> str:
    """The env as `.env` text: `NAME=value` lines, quoted so a shell can source them."""
    return "".join(f"{name}={shlex.quote(value)}\n" for name, value in env.items())


def stack_outputs(
    config: StackConfig,
    *,
    bucket_name: str,
    bucket_arn: str,
    role_arn: str,
    env: dict[str, str],
) -> dict[str, Any]:
    return {
        "bucketName": bucket_name,
        "bucketArn": bucket_arn,
        "region": config.region,
        "roleArn": role_arn,
        "namespace": config.namespace,
        "serviceAccount": config.service_account,
        "identityMode": config.identity_mode,
        "env": env,
        "dotenv": dotenv(env),
    }
