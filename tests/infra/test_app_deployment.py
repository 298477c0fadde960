"""The app's Deployment survives node drains and is scraped by Prometheus (issue 13's infra):
a disruption budget, spread over zones and nodes, a drain that stops new traffic before
SIGTERM and outlasts the app's own graceful shutdown, an optional autoscaler, and /metrics
announced by annotations or a ServiceMonitor."""

from __future__ import annotations

from typing import Any

import pytest

from infra.cache_layout import LARGE_DOWNLOAD, cache_volumes, parse_quantity
from infra.components.app import LABELS, PORT, PRESTOP_SLEEP_SECONDS
from infra.config import parse_stack_config
from runtime.app.server import GRACEFUL_SHUTDOWN_SECONDS
from runtime.settings import parse_size
from tests.infra.harness import ProgramRun, run_program, stack_config_with

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
BUDGET = "kubernetes:policy/v1:PodDisruptionBudget"
AUTOSCALER = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
SERVICE_MONITOR = "kubernetes:monitoring.coreos.com/v1:ServiceMonitor"


def _config(**changes: Any) -> dict[str, Any]:
    return stack_config_with(
        "dev", deployApp=True, appImage="registry.example/satchel:1.0", **changes
    )


@pytest.fixture(scope="module")
def app() -> ProgramRun:
    return run_program(_config())


def _pod(run: ProgramRun) -> dict[str, Any]:
    spec: dict[str, Any] = run.one(DEPLOYMENT).inputs["spec"]["template"]
    return spec


def test_a_drain_evicts_one_replica_at_a_time_and_never_waits_on_an_unready_one(
    app: ProgramRun,
) -> None:
    budget = app.one(BUDGET).inputs
    deployment = app.one(DEPLOYMENT).inputs
    assert budget["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]
    assert budget["spec"]["maxUnavailable"] == 1
    assert "minAvailable" not in budget["spec"]
    assert budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    assert deployment["spec"]["replicas"] >= 2  # so one eviction leaves a replica serving


def test_replicas_spread_over_zones_and_nodes(app: ProgramRun) -> None:
    pod = _pod(app)
    constraints = {c["topologyKey"]: c for c in pod["spec"]["topologySpreadConstraints"]}
    assert set(constraints) == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    for constraint in constraints.values():
        assert constraint["maxSkew"] == 1
        assert (
            constraint["labelSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
        )
        assert constraint["matchLabelKeys"] == ["pod-template-hash"]  # per rollout revision
    # Zones: best effort (one-zone clusters still run every replica); nodes: a hard rule.
    assert constraints["topology.kubernetes.io/zone"]["whenUnsatisfiable"] == "ScheduleAnyway"
    assert constraints["kubernetes.io/hostname"]["whenUnsatisfiable"] == "DoNotSchedule"
    # A cordoned node (tainted unschedulable) is no domain: its evicted replica is not held
    # Pending by a skew counted against a node nothing may be scheduled on.
    assert constraints["kubernetes.io/hostname"]["nodeTaintsPolicy"] == "Honor"
    assert "nodeTaintsPolicy" not in constraints["topology.kubernetes.io/zone"]


def test_the_drain_stops_new_traffic_before_sigterm_and_outlasts_the_apps_shutdown(
    app: ProgramRun,
) -> None:
    pod = _pod(app)["spec"]
    (container,) = pod["containers"]
    # Runs before SIGTERM, while the terminating pod leaves the endpoints everywhere; a sleep
    # handler of kubelet's own (no `sleep` binary needed in the image).
    assert container["lifecycle"]["preStop"] == {"sleep": {"seconds": PRESTOP_SLEEP_SECONDS}}
    assert PRESTOP_SLEEP_SECONDS >= 5
    grace = pod["terminationGracePeriodSeconds"]
    # kubelet counts the preStop hook inside the grace period: after it, the app's whole
    # graceful shutdown (open dist streams finishing) must fit before SIGKILL.
    assert grace - PRESTOP_SLEEP_SECONDS > GRACEFUL_SHUTDOWN_SECONDS
    assert grace <= PRESTOP_SLEEP_SECONDS + GRACEFUL_SHUTDOWN_SECONDS + 10  # no idle waiting


def test_no_autoscaler_unless_asked_and_then_it_owns_the_replica_count(app: ProgramRun) -> None:
    assert not app.of_type(AUTOSCALER)
    run = run_program(_config(appReplicas=3, appMaxReplicas=8))
    autoscaler = run.one(AUTOSCALER).inputs["spec"]
    deployment = run.one(DEPLOYMENT).inputs
    assert autoscaler["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert (autoscaler["minReplicas"], autoscaler["maxReplicas"]) == (3, 8)
    (metric,) = autoscaler["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    # The CPU target is a share of the request: the container must request CPU.
    assert deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"]
    assert "replicas" not in deployment["spec"]  # else every `pulumi up` resets the scale


def test_an_autoscaler_must_scale_above_the_replicas() -> None:
    with pytest.raises(Exception, match=r"satchel:appMaxReplicas: 2 must be above appReplicas"):
        run_program(_config(appMaxReplicas=2))


def test_the_pods_are_annotated_for_scraping_metrics_on_the_http_port(app: ProgramRun) -> None:
    pod = _pod(app)
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    (container,) = pod["spec"]["containers"]
    assert (
        annotations["prometheus.io/port"]
        == str(int(container["ports"][0]["containerPort"]))
        == str(PORT)
    )
    assert not app.of_type(SERVICE_MONITOR)


def test_with_a_service_monitor_the_pods_carry_no_scrape_annotations() -> None:
    run = run_program(_config(serviceMonitor=True, serviceMonitorLabels={"release": "prom"}))
    annotations = _pod(run)["metadata"]["annotations"]
    assert not [key for key in annotations if key.startswith("prometheus.io/")]  # scraped once
    monitor = run.one(SERVICE_MONITOR)
    assert monitor.inputs["metadata"]["labels"] == {**LABELS, "release": "prom"}
    assert run.one("kubernetes:core/v1:Service").name in monitor.options.dependencies


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({}, id="dev-under-tmp"),
        pytest.param(
            {
                "mirrorMetadataCacheDir": "/cache/meta",
                "mirrorDistCacheDir": "/cache/dist",
                "appCacheSizeLimit": "3Gi",
            },
            id="own-volumes",
        ),
    ],
)
def test_the_apps_cache_bounds_as_it_reads_them_fit_each_emptydir(changes: dict[str, Any]) -> None:
    run = run_program(_config(**changes))
    env = run.outputs["env"]
    pod = _pod(run)["spec"]
    limits = {v["name"]: parse_quantity(v["emptyDir"]["sizeLimit"]) for v in pod["volumes"]}
    for volume in cache_volumes(parse_stack_config(_config(**changes))):
        used = sum(parse_size(env[var]) for var in volume.caches)  # the runtime's own parser
        assert used + LARGE_DOWNLOAD <= limits[volume.name], volume
