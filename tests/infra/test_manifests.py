"""Every Kubernetes object the program declares, as the manifest Pulumi sends, validated against
the Kubernetes API's own OpenAPI schemas (kubernetes-validate, strict: an unknown field is an
error, as server-side field validation makes it) for the oldest and newest Kubernetes versions
EKS supports: 1.32 (1.31's extended support ended on 26 Nov 2026) and 1.37, the newest the
package bundles.

Pulumi's mocks accept any shape; an API server would not. ServiceMonitor is a CRD, with no
bundled schema: its metadata and label selector are validated as the core types they are, its
endpoints against the Service they name.
"""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate
import kubernetes_validate.utils
import pytest

from tests.infra.harness import ProgramRun, run_program, stack_config_with

EKS_OLDEST, EKS_NEWEST = "1.32", "1.37"
VERSIONS = [EKS_OLDEST, EKS_NEWEST]
SERVICE_MONITOR = "kubernetes:monitoring.coreos.com/v1:ServiceMonitor"

Manifest = dict[str, Any]


@pytest.fixture(scope="module")
def everything() -> ProgramRun:
    """Every Kubernetes object the program can declare, in one stack."""
    return run_program(
        stack_config_with(
            "dev",
            deployApp=True,
            appImage="registry.example/satchel:1.0",
            createNamespace=True,
            appMaxReplicas=6,
            serviceMonitor=True,
            serviceMonitorLabels={"release": "kube-prometheus-stack"},
            upstreamAuth='{"bearer": {"repo.example.com": "t0ken"}}',
        ),
        secret_keys=("satchel:upstreamAuth",),
    )


def _manifests(run: ProgramRun) -> dict[str, Manifest]:
    """kind -> manifest, for the objects with a schema (not the provider, not CRDs)."""
    found = {}
    for resource in run.mocks.resources:
        if resource.type.startswith("kubernetes:") and resource.type != SERVICE_MONITOR:
            found[resource.inputs["kind"]] = dict(resource.inputs)
    return found


def test_the_bundled_schemas_span_the_versions_eks_supports() -> None:
    versions = kubernetes_validate.utils.all_versions()
    assert {f"{v}.0" for v in VERSIONS} <= set(versions)
    assert kubernetes_validate.utils.latest_version() == f"{EKS_NEWEST}.0"


def test_the_program_declares_every_object_the_stack_needs(everything: ProgramRun) -> None:
    assert set(_manifests(everything)) == {
        "Namespace",
        "ServiceAccount",
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "Secret",
    }
    assert everything.one(SERVICE_MONITOR)


@pytest.mark.parametrize("version", VERSIONS)
def test_every_object_is_valid_for_the_api_server_strictly(
    everything: ProgramRun, version: str
) -> None:
    for kind, manifest in _manifests(everything).items():
        try:
            kubernetes_validate.validate(manifest, version, strict=True)
        except kubernetes_validate.ValidationError as exc:  # pragma: no cover - the failure
            pytest.fail(f"{kind} is invalid for Kubernetes {version}: {exc.message}")


@pytest.mark.parametrize("version", VERSIONS)
def test_the_default_stack_objects_are_valid_too(version: str) -> None:
    for manifest in _manifests(run_program(stack_config_with("dev"))).values():
        kubernetes_validate.validate(manifest, version, strict=True)


MISSPELLINGS = [
    pytest.param(("spec", "template", "spec"), "terminationGracePeriodSeconds", id="pod-field"),
    pytest.param(("spec", "template", "spec", "containers", 0), "readinessProbe", id="container"),
    pytest.param(("spec",), "strategy", id="deployment-spec"),
]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("path", "field"), MISSPELLINGS)
def test_a_misspelled_field_fails_validation(
    everything: ProgramRun, version: str, path: tuple[str | int, ...], field: str
) -> None:
    manifest = copy.deepcopy(_manifests(everything)["Deployment"])
    node: Any = manifest
    for step in path:
        node = node[step]
    node[field[:-1]] = node.pop(field)  # `terminationGracePeriodSecond`, as a typo would
    kubernetes_validate.validate(copy.deepcopy(manifest), version, strict=False)  # a valid shape
    with pytest.raises(kubernetes_validate.ValidationError, match="Additional properties"):
        kubernetes_validate.validate(manifest, version, strict=True)


def test_a_misspelled_field_of_the_disruption_budget_fails(everything: ProgramRun) -> None:
    manifest = copy.deepcopy(_manifests(everything)["PodDisruptionBudget"])
    manifest["spec"]["maxUnavailible"] = manifest["spec"].pop("maxUnavailable")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(manifest, EKS_OLDEST, strict=True)


# The ServiceMonitor: a CRD (monitoring.coreos.com/v1), whose schema no package bundles


def test_the_service_monitor_has_no_bundled_schema(everything: ProgramRun) -> None:
    manifest = everything.one(SERVICE_MONITOR).inputs
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(dict(manifest), EKS_NEWEST, strict=True)


@pytest.mark.parametrize("version", VERSIONS)
def test_the_service_monitor_metadata_and_selector_are_valid_core_types(
    everything: ProgramRun, version: str
) -> None:
    manifest = everything.one(SERVICE_MONITOR).inputs
    assert manifest["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(manifest) == {"apiVersion", "kind", "metadata", "spec"}
    # ObjectMeta, checked as any object's metadata; a LabelSelector, as a budget's selector.
    as_meta = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": manifest["metadata"]}
    kubernetes_validate.validate(as_meta, version, strict=True)
    selector = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "selector"},
        "spec": {"selector": manifest["spec"]["selector"]},
    }
    kubernetes_validate.validate(selector, version, strict=True)


def test_the_service_monitor_scrapes_the_services_http_port_at_metrics(
    everything: ProgramRun,
) -> None:
    monitor = everything.one(SERVICE_MONITOR).inputs
    service = everything.one("kubernetes:core/v1:Service").inputs
    # The spec fields prometheus-operator's v1 ServiceMonitor defines, and only those we use.
    assert set(monitor["spec"]) == {"selector", "namespaceSelector", "endpoints"}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert set(endpoint) <= {"port", "path", "interval", "scheme", "scrapeTimeout"}
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    labels = service["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["packeton"]}
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
