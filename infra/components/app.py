"""`satchel:index:AppDeployment`: `satchel serve` as a Deployment of several stateless replicas
sharing only the bucket (off unless `deployApp`)."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence

import pulumi
import pulumi_kubernetes as k8s

from infra.cache_layout import cache_volumes
from infra.config import StackConfig
from runtime.app.health import PROBE_TIMEOUT

PORT = 8080
LABELS = {"app.kubernetes.io/name": "satchel", "app.kubernetes.io/component": "mirror"}
# The image's user (Dockerfile): numeric, so kubelet can verify runAsNonRoot.
APP_UID = 10001
# A change of the env changes this pod template annotation, which rolls the Deployment:
# running pods read their env only at start.
ENV_HASH_ANNOTATION = "satchel/env-sha256"
# Above the app's own storage check in /readyz, so a slow bucket reads as "not ready" (503)
# from the app rather than as a probe timeout.
PROBE_TIMEOUT_SECONDS = math.ceil(PROBE_TIMEOUT) + 2
# What the `restricted` Pod Security Standard asks of every container.
RESTRICTED_CONTAINER: k8s.core.v1.SecurityContextArgsDict = {
    "run_as_non_root": True,
    "allow_privilege_escalation": False,
    "read_only_root_filesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccomp_profile": {"type": "RuntimeDefault"},
}


def env_hash(env: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(env, sort_keys=True).encode()).hexdigest()


def _probe(path: str, period: int) -> k8s.core.v1.ProbeArgsDict:
    return {
        "http_get": {"path": path, "port": "http"},
        "period_seconds": period,
        "timeout_seconds": PROBE_TIMEOUT_SECONDS,
        "failure_threshold": 3,
    }


class AppDeployment(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        config: StackConfig,
        *,
        provider: k8s.Provider,
        service_account: pulumi.Input[str],
        config_map: pulumi.Input[str],
        env: pulumi.Input[dict[str, str]],
        depends_on: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`depends_on`: what must exist before the first pod starts (the Pod Identity
        association: EKS injects the credentials only into pods created after it)."""
        super().__init__("satchel:index:AppDeployment", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=provider)
        volumes = cache_volumes(config)
        container: k8s.core.v1.ContainerArgsDict = {
            "name": "satchel",
            "image": config.app_image,
            "args": ["serve", "--host", "0.0.0.0", "--port", str(PORT), "--workers", "2"],
            "ports": [{"name": "http", "container_port": PORT}],
            "env_from": [{"config_map_ref": {"name": config_map}}],
            "readiness_probe": _probe("/readyz", 5),
            "liveness_probe": _probe("/healthz", 10),
            "resources": {
                "requests": {"cpu": "250m", "memory": "256Mi"},
                "limits": {"memory": "1Gi"},
            },
            "security_context": RESTRICTED_CONTAINER,
            "volume_mounts": [{"name": v.name, "mount_path": v.mount_path} for v in volumes],
        }
        metadata: k8s.meta.v1.ObjectMetaArgsDict = {
            "name": "satchel",
            "namespace": config.namespace,
            "labels": LABELS,
        }
        spec: k8s.apps.v1.DeploymentSpecArgsDict = {
            "replicas": config.app_replicas,
            "selector": {"match_labels": LABELS},
            "strategy": {"rolling_update": {"max_unavailable": 0, "max_surge": 1}},
            "template": {
                "metadata": {
                    "labels": LABELS,
                    "annotations": {
                        ENV_HASH_ANNOTATION: pulumi.Output.from_input(env).apply(env_hash)
                    },
                },
                "spec": {
                    "service_account_name": service_account,
                    "termination_grace_period_seconds": 30,
                    "security_context": {
                        "run_as_non_root": True,
                        "run_as_user": APP_UID,
                        "run_as_group": APP_UID,
                        "fs_group": APP_UID,  # the emptyDir volumes are the app's to write
                        "seccomp_profile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": [
                        {"name": v.name, "empty_dir": {"size_limit": config.app_cache_size_limit}}
                        for v in volumes
                    ],
                },
            },
        }
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=metadata,
            spec=spec,
            opts=pulumi.ResourceOptions.merge(
                child, pulumi.ResourceOptions(depends_on=list(depends_on))
            ),
        )
        service: k8s.core.v1.ServiceSpecArgsDict = {
            "selector": LABELS,
            "ports": [{"name": "http", "port": 80, "target_port": "http"}],
        }
        self.service = k8s.core.v1.Service(
            f"{name}-service", metadata=metadata, spec=service, opts=child
        )
        self.register_outputs({"deployment": self.deployment.metadata["name"]})
