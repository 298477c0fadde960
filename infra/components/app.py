"""`satchel:index:AppDeployment`: `satchel serve` as a Deployment of several stateless replicas
sharing only the bucket (off unless `deployApp`)."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from infra.config import StackConfig

PORT = 8080
LABELS = {"app.kubernetes.io/name": "satchel", "app.kubernetes.io/component": "mirror"}


def cache_volumes(config: StackConfig) -> list[tuple[str, str]]:
    """(volume name, mount path) of each local cache the env asks for, plus /tmp."""
    wanted = [
        ("mirror-meta-cache", config.mirror_metadata_cache_dir),
        ("mirror-dist-cache", config.mirror_dist_cache_dir),
        ("tmp", "/tmp"),
    ]
    seen: set[str] = set()
    volumes = []
    for name, path in wanted:
        # A cache under /tmp lives in the /tmp volume; one path is mounted once.
        if path and path not in seen and not (path.startswith("/tmp/") and name != "tmp"):
            volumes.append((name, path))
            seen.add(path)
    return volumes


def _probe(path: str, period: int) -> k8s.core.v1.ProbeArgsDict:
    return {
        "http_get": {"path": path, "port": "http"},
        "period_seconds": period,
        "timeout_seconds": 2,
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
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
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
            "security_context": {
                "run_as_non_root": True,
                "allow_privilege_escalation": False,
                "read_only_root_filesystem": True,
                "capabilities": {"drop": ["ALL"]},
            },
            "volume_mounts": [{"name": v, "mount_path": path} for v, path in volumes],
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
                "metadata": {"labels": LABELS},
                "spec": {
                    "service_account_name": service_account,
                    "termination_grace_period_seconds": 30,
                    "containers": [container],
                    "volumes": [
                        {"name": v, "empty_dir": {"size_limit": config.app_cache_size_limit}}
                        for v, _ in volumes
                    ],
                },
            },
        }
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment", metadata=metadata, spec=spec, opts=child
        )
        service: k8s.core.v1.ServiceSpecArgsDict = {
            "selector": LABELS,
            "ports": [{"name": "http", "port": 80, "target_port": "http"}],
        }
        self.service = k8s.core.v1.Service(
            f"{name}-service", metadata=metadata, spec=service, opts=child
        )
        self.register_outputs({"deployment": self.deployment.metadata["name"]})
