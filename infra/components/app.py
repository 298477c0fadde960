"""`satchel:index:AppDeployment`: `satchel serve` as a Deployment of several stateless replicas
sharing only the bucket (off unless `deployApp`), that survives node drains: a disruption
budget, spread over zones and nodes, a drain that stops new traffic before SIGTERM, an optional
autoscaler, and Prometheus scraping of /metrics (annotations, or a ServiceMonitor).

Drain: when a pod is deleted it leaves the Service's ready endpoints at once (it is
terminating), but kube-proxy and load balancers learn that a few seconds later. The preStop
sleep keeps the app serving through that window; then SIGTERM, and granian stops accepting and
lets open responses (a dist stream) finish for up to the app's graceful-shutdown time. The
grace period covers both, plus a margin, before kubelet's SIGKILL.
"""

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
from runtime.app.server import GRACEFUL_SHUTDOWN_SECONDS

PORT = 8080
# Where the upstream credentials (satchel:upstreamAuth) are mounted, read-only.
UPSTREAM_AUTH_DIR = "/etc/satchel/upstream-auth"
UPSTREAM_AUTH_FILE = f"{UPSTREAM_AUTH_DIR}/auth.json"
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


# Endpoint removal reaches kube-proxy and load balancers within seconds: serve meanwhile.
PRESTOP_SLEEP_SECONDS = 10
# SIGTERM to exit: the server's drain, then the workers' exit.
EXIT_MARGIN_SECONDS = 5
TERMINATION_GRACE_SECONDS = PRESTOP_SLEEP_SECONDS + GRACEFUL_SHUTDOWN_SECONDS + EXIT_MARGIN_SECONDS
METRICS_PATH = "/metrics"
SCRAPE_INTERVAL = "30s"
CPU_TARGET_PERCENT = 70
ZONE_KEY = "topology.kubernetes.io/zone"
NODE_KEY = "kubernetes.io/hostname"


def scrape_annotations() -> dict[str, str]:
    """The de-facto annotations Prometheus' kubernetes-pods job keeps (prometheus.io/*)."""
    return {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(PORT),
        "prometheus.io/path": METRICS_PATH,
    }


def spread() -> list[k8s.core.v1.TopologySpreadConstraintArgsDict]:
    """Replicas spread over zones (as far as the cluster's capacity allows) and over nodes
    (never two on one node while another node fits one), counted per rollout revision.

    The node rule honors taints: a cordoned or draining node (tainted unschedulable) no longer
    counts as a domain, so the replica it evicts is not held Pending by a skew against it."""

    def constraint(key: str, when: str) -> k8s.core.v1.TopologySpreadConstraintArgsDict:
        return {
            "max_skew": 1,
            "topology_key": key,
            "when_unsatisfiable": when,
            "label_selector": {"match_labels": LABELS},
            "match_label_keys": ["pod-template-hash"],
        }

    return [
        constraint(ZONE_KEY, "ScheduleAnyway"),
        {**constraint(NODE_KEY, "DoNotSchedule"), "node_taints_policy": "Honor"},
    ]


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
        auth = self._upstream_auth(name, config, child)
        mounts: list[k8s.core.v1.VolumeMountArgsDict] = [
            {"name": v.name, "mount_path": v.mount_path} for v in volumes
        ]
        container: k8s.core.v1.ContainerArgsDict = {
            "name": "satchel",
            "image": config.app_image,
            "args": ["serve", "--host", "0.0.0.0", "--port", str(PORT), "--workers", "2"],
            "ports": [{"name": "http", "container_port": PORT}],
            "env_from": [{"config_map_ref": {"name": config_map}}],
            "readiness_probe": _probe("/readyz", 5),
            "lifecycle": {"pre_stop": {"sleep": {"seconds": PRESTOP_SLEEP_SECONDS}}},
            "liveness_probe": _probe("/healthz", 10),
            "resources": {
                "requests": {"cpu": "250m", "memory": "256Mi"},
                "limits": {"memory": "1Gi"},
            },
            "security_context": RESTRICTED_CONTAINER,
            "volume_mounts": mounts,
        }
        pod_volumes: list[k8s.core.v1.VolumeArgsDict] = [
            {"name": v.name, "empty_dir": {"size_limit": config.app_cache_size_limit}}
            for v in volumes
        ]
        if auth is not None:
            # Not in the ConfigMap (the stack's env and outputs): a Secret volume, its path
            # in the container's own env.
            container["env"] = [{"name": "SATCHEL_UPSTREAM_AUTH_FILE", "value": UPSTREAM_AUTH_FILE}]
            mounts.append(
                {"name": "upstream-auth", "mount_path": UPSTREAM_AUTH_DIR, "read_only": True}
            )
            pod_volumes.append(
                {
                    "name": "upstream-auth",
                    "secret": {
                        "secret_name": auth.metadata["name"],
                        "default_mode": 0o440,  # the app's group (fs_group) reads it
                        "items": [{"key": "auth.json", "path": "auth.json"}],
                    },
                }
            )
        metadata: k8s.meta.v1.ObjectMetaArgsDict = {
            "name": "satchel",
            "namespace": config.namespace,
            "labels": LABELS,
        }
        annotations: dict[str, pulumi.Input[str]] = {
            ENV_HASH_ANNOTATION: pulumi.Output.from_input(env).apply(env_hash),
            **({} if config.service_monitor else scrape_annotations()),
        }
        spec: k8s.apps.v1.DeploymentSpecArgsDict = {
            "selector": {"match_labels": LABELS},
            "strategy": {"rolling_update": {"max_unavailable": 0, "max_surge": 1}},
            "template": {
                "metadata": {"labels": LABELS, "annotations": annotations},
                "spec": {
                    "service_account_name": service_account,
                    "termination_grace_period_seconds": TERMINATION_GRACE_SECONDS,
                    "topology_spread_constraints": spread(),
                    "security_context": {
                        "run_as_non_root": True,
                        "run_as_user": APP_UID,
                        "run_as_group": APP_UID,
                        "fs_group": APP_UID,  # the emptyDir volumes are the app's to write
                        "seccomp_profile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": pod_volumes,
                },
            },
        }
        if not config.app_max_replicas:
            # With an autoscaler, the replica count is its own: Pulumi leaves the field alone.
            spec["replicas"] = config.app_replicas
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
        self.disruption_budget = k8s.policy.v1.PodDisruptionBudget(
            f"{name}-disruption-budget",
            metadata=metadata,
            spec={
                # A drain evicts one replica at a time; the rest keep serving.
                "max_unavailable": 1,
                "selector": {"match_labels": LABELS},
                # A pod that is not ready serves nothing: evicting it never blocks a drain.
                "unhealthy_pod_eviction_policy": "AlwaysAllow",
            },
            opts=child,
        )
        if config.app_max_replicas:
            k8s.autoscaling.v2.HorizontalPodAutoscaler(
                f"{name}-autoscaler",
                metadata=metadata,
                spec={
                    "scale_target_ref": {
                        "api_version": "apps/v1",
                        "kind": "Deployment",
                        "name": self.deployment.metadata["name"],
                    },
                    "min_replicas": config.app_replicas,
                    "max_replicas": config.app_max_replicas,
                    "metrics": [
                        {
                            "type": "Resource",
                            "resource": {
                                "name": "cpu",
                                "target": {
                                    "type": "Utilization",
                                    "average_utilization": CPU_TARGET_PERCENT,
                                },
                            },
                        }
                    ],
                },
                opts=child,
            )
        if config.service_monitor:
            k8s.apiextensions.CustomResource(
                f"{name}-service-monitor",
                api_version="monitoring.coreos.com/v1",
                kind="ServiceMonitor",
                metadata={
                    "name": "satchel",
                    "namespace": config.namespace,
                    "labels": {**LABELS, **config.service_monitor_labels},
                },
                spec={
                    "selector": {"matchLabels": LABELS},
                    "namespaceSelector": {"matchNames": [config.namespace]},
                    "endpoints": [
                        {"port": "http", "path": METRICS_PATH, "interval": SCRAPE_INTERVAL}
                    ],
                },
                opts=pulumi.ResourceOptions.merge(
                    child, pulumi.ResourceOptions(depends_on=[self.service])
                ),
            )
        self.register_outputs({"deployment": self.deployment.metadata["name"]})

    @staticmethod
    def _upstream_auth(
        name: str, config: StackConfig, opts: pulumi.ResourceOptions
    ) -> k8s.core.v1.Secret | None:
        """The Secret holding satchel:upstreamAuth, or None. Auto-named and replaced when
        its data changes: the new name changes the pod template, which rolls the pods
        (they read the file at start), and no digest of the credentials is published."""
        if not config.upstream_auth:
            return None
        return k8s.core.v1.Secret(
            f"{name}-upstream-auth",
            metadata={"namespace": config.namespace, "labels": LABELS},
            type="Opaque",
            string_data={"auth.json": pulumi.Output.secret(config.upstream_auth)},
            opts=pulumi.ResourceOptions.merge(
                opts,
                pulumi.ResourceOptions(
                    replace_on_changes=["stringData"],
                    additional_secret_outputs=["stringData", "data"],
                ),
            ),
        )
