"""The Pulumi program under Pulumi's mocks: every security property, both identity modes,
and the stack outputs, run the way `pulumi up` runs it (from `infra/`, with Pulumi.dev.yaml)."""

from __future__ import annotations

import inspect
import json
from typing import Any

import pulumi_aws
import pytest

import runtime
from infra.components.app import ENV_HASH_ANNOTATION, env_hash
from infra.outputs import OUTPUT_KEYS
from runtime.app.health import PROBE_TIMEOUT
from tests.infra.harness import (
    ACCOUNT_ID,
    ISSUER,
    ProgramRun,
    RecordingMocks,
    run_program,
    stack_config_with,
    stack_file_config,
)

ISSUER_KEY = ISSUER.removeprefix("https://")
KMS_KEY = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


@pytest.fixture(scope="module")
def dev() -> ProgramRun:
    return run_program(stack_file_config("dev"))


def _with(**changes: Any) -> dict[str, Any]:
    return stack_config_with("dev", **changes)


def _doc(resource_inputs: dict[str, Any], key: str) -> dict[str, Any]:
    value = resource_inputs[key]
    return json.loads(value) if isinstance(value, str) else value


def test_the_dev_stack_declares_each_resource_once_named_after_its_component(
    dev: ProgramRun,
) -> None:
    names = {(r.type, r.name) for r in dev.mocks.resources}
    assert len(names) == len(dev.mocks.resources)
    components = {r.name for r in dev.mocks.resources if r.type.startswith("satchel:index:")}
    assert components == {"satchel-dev-storage", "satchel-dev-app", "satchel-dev-k8s-app"}
    for resource in dev.mocks.resources:
        assert resource.name.startswith("satchel-dev-"), resource.name


def test_the_bucket_is_owner_enforced_private_encrypted_and_versioned(dev: ProgramRun) -> None:
    bucket = dev.one("aws:s3/bucket:Bucket")
    assert bucket.inputs["bucket"] == "packeton-dev-storage"
    assert bucket.inputs["forceDestroy"] is False
    assert bucket.inputs["tags"] == {"team": "platform", "app": "packeton", "environment": "dev"}
    assert "acl" not in bucket.inputs
    ownership = dev.one("aws:s3/bucketOwnershipControls:BucketOwnershipControls")
    assert ownership.inputs["rule"] == {"objectOwnership": "BucketOwnerEnforced"}
    block = dev.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    for flag in (
        "blockPublicAcls",
        "blockPublicPolicy",
        "ignorePublicAcls",
        "restrictPublicBuckets",
    ):
        assert block.inputs[flag] is True, flag
    sse = dev.one(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    )
    assert sse.inputs["rules"] == [
        {"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}
    ]
    versioning = dev.one("aws:s3/bucketVersioning:BucketVersioning")
    assert versioning.inputs["versioningConfiguration"] == {"status": "Enabled"}


def test_noncurrent_versions_and_stale_uploads_expire(dev: ProgramRun) -> None:
    lifecycle = dev.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
    rules = {rule["id"]: rule for rule in lifecycle.inputs["rules"]}
    noncurrent = rules["expire-noncurrent-versions"]
    assert noncurrent["noncurrentVersionExpiration"] == {"noncurrentDays": 14}
    assert rules["abort-incomplete-multipart-uploads"]["abortIncompleteMultipartUpload"] == {
        "daysAfterInitiation": 7
    }


def test_the_bucket_policy_denies_every_request_without_tls(dev: ProgramRun) -> None:
    policy = _doc(dev.one("aws:s3/bucketPolicy:BucketPolicy").inputs, "policy")
    (statement,) = policy["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Principal"] == "*"
    assert statement["Action"] == "s3:*"
    assert statement["Resource"] == [
        "arn:aws:s3:::packeton-dev-storage",
        "arn:aws:s3:::packeton-dev-storage/*",
    ]
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_the_role_trusts_only_the_clusters_provider_for_one_service_account(
    dev: ProgramRun,
) -> None:
    trust = _doc(dev.one("aws:iam/role:Role").inputs, "assumeRolePolicy")
    (statement,) = trust["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Principal"] == {
        "Federated": f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{ISSUER_KEY}"
    }
    assert statement["Condition"] == {
        "StringEquals": {
            f"{ISSUER_KEY}:sub": "system:serviceaccount:packeton:packeton",
            f"{ISSUER_KEY}:aud": "sts.amazonaws.com",
        }
    }
    assert "aws:eks/getCluster:getCluster" in dev.mocks.calls
    assert not dev.of_type("aws:iam/openIdConnectProvider:OpenIdConnectProvider")


def test_the_attached_policy_is_least_privilege_for_the_four_prefixes(dev: ProgramRun) -> None:
    policy = _doc(dev.one("aws:iam/policy:Policy").inputs, "policy")
    statements = {s["Sid"]: s for s in policy["Statement"]}
    assert set(statements) == {"ListTheBucket", "ObjectsUnderPrefixes"}
    assert statements["ListTheBucket"]["Resource"] == "arn:aws:s3:::packeton-dev-storage"
    assert "Condition" not in statements["ListTheBucket"]
    assert sorted(statements["ObjectsUnderPrefixes"]["Resource"]) == [
        f"arn:aws:s3:::packeton-dev-storage/{prefix}/*"
        for prefix in ("artifact", "mirror-dist", "mirror-meta", "packeton")
    ]
    attachment = dev.one("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    assert attachment.inputs["role"] == "satchel-dev-app-role"
    assert attachment.inputs["policyArn"].endswith(":policy/satchel-dev-app-storage-policy")


def test_the_service_account_is_annotated_with_the_role_and_the_configmap_holds_the_env(
    dev: ProgramRun,
) -> None:
    account = dev.one("kubernetes:core/v1:ServiceAccount")
    assert account.inputs["metadata"]["name"] == "packeton"
    assert account.inputs["metadata"]["namespace"] == "packeton"
    assert account.inputs["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": dev.outputs["roleArn"]
    }
    config_map = dev.one("kubernetes:core/v1:ConfigMap")
    assert config_map.inputs["data"] == dev.outputs["env"]


def test_kubernetes_objects_use_an_explicit_provider_built_from_the_cluster(
    dev: ProgramRun,
) -> None:
    provider = dev.one("pulumi:providers:kubernetes")
    kubeconfig = json.loads(provider.inputs["kubeconfig"])
    assert kubeconfig["clusters"][0]["cluster"]["server"].startswith("https://")
    exec_args = kubeconfig["users"][0]["user"]["exec"]["args"]
    assert exec_args[:4] == ["eks", "get-token", "--cluster-name", "packeton-dev"]


def test_the_outputs_are_exactly_the_contracts_keys_and_the_env_loads(dev: ProgramRun) -> None:
    assert tuple(dev.outputs) == OUTPUT_KEYS
    assert dev.outputs["bucketName"] == "packeton-dev-storage"
    assert dev.outputs["region"] == "eu-west-1"
    assert dev.outputs["identityMode"] == "irsa"
    assert (dev.outputs["namespace"], dev.outputs["serviceAccount"]) == ("packeton", "packeton")
    env = dev.outputs["env"]
    settings = runtime.load_settings(env)
    assert settings.source == "s3" and settings.bucket == "packeton-dev-storage"
    assert json.loads(env["STORAGE_AWS_ARGS"]) == {"region": "eu-west-1"}
    assert env["AWS_REGION"] == "eu-west-1"
    assert "accessKeyId" not in env["STORAGE_AWS_ARGS"]
    assert dev.outputs["dotenv"].splitlines()[0] == "STORAGE_SOURCE=s3"


def test_pod_identity_mode_trusts_the_eks_pods_service_and_associates_the_account() -> None:
    run = run_program(_with(identityMode="pod-identity"))
    trust = _doc(run.one("aws:iam/role:Role").inputs, "assumeRolePolicy")
    (statement,) = trust["Statement"]
    assert statement["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert sorted(statement["Action"]) == ["sts:AssumeRole", "sts:TagSession"]
    assert statement["Condition"] == {
        "StringEquals": {
            "aws:RequestTag/kubernetes-namespace": "packeton",
            "aws:RequestTag/kubernetes-service-account": "packeton",
        }
    }
    association = run.one("aws:eks/podIdentityAssociation:PodIdentityAssociation")
    assert association.inputs["clusterName"] == "packeton-dev"
    assert association.inputs["namespace"] == "packeton"
    assert association.inputs["serviceAccount"] == "packeton"
    account = run.one("kubernetes:core/v1:ServiceAccount")
    assert not account.inputs["metadata"].get("annotations")
    assert run.outputs["identityMode"] == "pod-identity"


def test_an_explicit_issuer_and_a_created_provider_need_no_cluster_lookup() -> None:
    mocks = RecordingMocks()
    mocks.oidc_providers.clear()
    run = run_program(
        _with(
            clusterName=None,
            oidcIssuerUrl=ISSUER,
            createOidcProvider=True,
            kubeconfig="apiVersion: v1\nkind: Config\n",
        ),
        mocks=mocks,
    )
    assert "aws:eks/getCluster:getCluster" not in run.mocks.calls
    provider = run.one("aws:iam/openIdConnectProvider:OpenIdConnectProvider")
    assert provider.inputs["url"] == ISSUER
    assert provider.inputs["clientIdLists"] == ["sts.amazonaws.com"]
    trust = _doc(run.one("aws:iam/role:Role").inputs, "assumeRolePolicy")
    assert trust["Statement"][0]["Principal"]["Federated"] == provider.outputs["arn"]


def test_a_kms_key_switches_to_sse_kms_and_grants_the_key() -> None:
    run = run_program(_with(kmsKeyArn=KMS_KEY))
    sse = run.one(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    )
    (rule,) = sse.inputs["rules"]
    assert rule["applyServerSideEncryptionByDefault"] == {
        "sseAlgorithm": "aws:kms",
        "kmsMasterKeyId": KMS_KEY,
    }
    assert rule["bucketKeyEnabled"] is True
    policy = _doc(run.one("aws:iam/policy:Policy").inputs, "policy")
    (kms,) = [s for s in policy["Statement"] if s["Sid"] == "BucketKmsKey"]
    assert kms["Resource"] == KMS_KEY
    assert sorted(kms["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]


def test_a_generated_bucket_name_flows_into_every_document_and_output() -> None:
    run = run_program(_with(bucketName=None, bucketNamePrefix="pkg-"))
    name = run.outputs["bucketName"]
    assert name.startswith("pkg-")
    assert run.outputs["env"]["STORAGE_AWS_BUCKET"] == name
    policy = _doc(run.one("aws:iam/policy:Policy").inputs, "policy")
    assert policy["Statement"][0]["Resource"] == f"arn:aws:s3:::{name}"


def test_no_namespace_is_created_unless_asked(dev: ProgramRun) -> None:
    assert not dev.of_type("kubernetes:core/v1:Namespace")
    run = run_program(_with(createNamespace=True))
    assert run.one("kubernetes:core/v1:Namespace").inputs["metadata"]["name"] == "packeton"


def test_the_app_is_not_deployed_unless_asked(dev: ProgramRun) -> None:
    assert not dev.of_type("kubernetes:apps/v1:Deployment")


def test_the_app_deployment_runs_stateless_replicas_with_the_service_account_and_env() -> None:
    run = run_program(_with(deployApp=True, appImage="registry.example/satchel:1.0", appReplicas=3))
    deployment = run.one("kubernetes:apps/v1:Deployment")
    spec = deployment.inputs["spec"]
    assert spec["replicas"] == 3
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "packeton"
    (container,) = pod["containers"]
    assert container["image"] == "registry.example/satchel:1.0"
    assert container["args"][:1] == ["serve"]
    assert container["envFrom"] == [{"configMapRef": {"name": "packeton-env"}}]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"] == {"cpu": "250m", "memory": "256Mi"}
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # The dev stack's caches live under /tmp: one emptyDir with a size limit holds them.
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}}]
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    service = run.one("kubernetes:core/v1:Service")
    assert service.inputs["spec"]["selector"] == spec["selector"]["matchLabels"]


def test_cache_dirs_outside_tmp_get_their_own_volumes() -> None:
    run = run_program(
        _with(
            deployApp=True,
            appImage="img",
            mirrorMetadataCacheDir="/cache/meta",
            mirrorDistCacheDir="/cache/dist",
            appCacheSizeLimit="5Gi",
        )
    )
    pod = run.one("kubernetes:apps/v1:Deployment").inputs["spec"]["template"]["spec"]
    assert {v["name"]: v["emptyDir"]["sizeLimit"] for v in pod["volumes"]} == {
        "mirror-meta-cache": "5Gi",
        "mirror-dist-cache": "5Gi",
        "tmp": "5Gi",
    }


def test_deploying_the_app_without_an_image_is_a_config_error() -> None:
    with pytest.raises(Exception, match="satchel:appImage: deployApp needs"):
        run_program(_with(deployApp=True))


# What the mocks used not to see: a real destroy, a real rollout, a real admission check


BUCKET_PROTECTIONS = (
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketVersioning:BucketVersioning",
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
    "aws:s3/bucketPolicy:BucketPolicy",
)


def test_destroy_keeps_a_bucket_without_force_destroy_and_never_strips_its_protections(
    dev: ProgramRun,
) -> None:
    bucket = dev.one("aws:s3/bucket:Bucket")
    assert bucket.options.retain_on_delete is True
    for typ in BUCKET_PROTECTIONS:
        assert dev.one(typ).options.deleted_with == bucket.name, typ


def test_force_destroy_lets_destroy_delete_the_bucket_with_its_protections() -> None:
    run = run_program(_with(forceDestroy=True))
    bucket = run.one("aws:s3/bucket:Bucket")
    assert bucket.inputs["forceDestroy"] is True
    assert bucket.options.retain_on_delete is False
    for typ in BUCKET_PROTECTIONS:
        assert run.one(typ).options.deleted_with == bucket.name, typ


def test_delete_markers_left_alone_expire(dev: ProgramRun) -> None:
    lifecycle = dev.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
    rules = {rule["id"]: rule for rule in lifecycle.inputs["rules"]}
    marker = rules["expire-delete-markers"]
    assert marker["status"] == "Enabled"
    assert marker["filter"] == {}
    assert marker["expiration"] == {"expiredObjectDeleteMarker": True}


def _deployment(**changes: Any) -> ProgramRun:
    return run_program(_with(deployApp=True, appImage="registry.example/satchel:1.0", **changes))


def test_a_change_of_the_env_rolls_the_deployment() -> None:
    before = _deployment()
    after = _deployment(mirrorMetaPrefix="mirror-meta-v2")
    hashes = []
    for run in (before, after):
        template = run.one("kubernetes:apps/v1:Deployment").inputs["spec"]["template"]
        annotation = template["metadata"]["annotations"][ENV_HASH_ANNOTATION]
        assert annotation == env_hash(run.outputs["env"])
        hashes.append(annotation)
    assert hashes[0] != hashes[1]
    # The ConfigMap keeps its name (others' pods refer to it) and exists before the pods.
    deployment = before.one("kubernetes:apps/v1:Deployment")
    config_map = before.one("kubernetes:core/v1:ConfigMap")
    assert config_map.inputs["metadata"]["name"] == "packeton-env"
    assert config_map.name in deployment.options.dependencies


def test_in_pod_identity_mode_no_pod_starts_before_the_association() -> None:
    run = _deployment(identityMode="pod-identity")
    association = run.one("aws:eks/podIdentityAssociation:PodIdentityAssociation")
    deployment = run.one("kubernetes:apps/v1:Deployment")
    assert association.name in deployment.options.dependencies


def test_the_pods_meet_the_restricted_pod_security_standard() -> None:
    pod = _deployment().one("kubernetes:apps/v1:Deployment").inputs["spec"]["template"]["spec"]
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    # Numeric, as the image's USER: kubelet can check runAsNonRoot only against a number.
    assert pod["securityContext"]["runAsUser"] == 10001
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    for volume in pod["volumes"]:
        assert set(volume) == {"name", "emptyDir"}  # no hostPath
    (container,) = pod["containers"]
    context = container["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["runAsNonRoot"] is True
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not context.get("privileged")
    assert all("hostPort" not in port for port in container["ports"])


def test_the_probes_wait_longer_than_the_apps_own_storage_check() -> None:
    pod = _deployment().one("kubernetes:apps/v1:Deployment").inputs["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["timeoutSeconds"] > PROBE_TIMEOUT, probe


# IAM options real accounts require


def test_the_role_takes_the_boundary_path_and_session_length_of_the_stack() -> None:
    boundary = f"arn:aws:iam::{ACCOUNT_ID}:policy/org/WorkloadBoundary"
    run = run_program(
        _with(permissionsBoundaryArn=boundary, rolePath="/workloads/", maxSessionDuration=43200)
    )
    role = run.one("aws:iam/role:Role")
    assert role.inputs["permissionsBoundary"] == boundary
    assert role.inputs["path"] == "/workloads/"
    assert role.inputs["maxSessionDuration"] == 43200
    assert run.one("aws:iam/policy:Policy").inputs["path"] == "/workloads/"
    assert (
        run.outputs["roleArn"] == f"arn:aws:iam::{ACCOUNT_ID}:role/workloads/satchel-dev-app-role"
    )
    account = run.one("kubernetes:core/v1:ServiceAccount")
    assert (
        account.inputs["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
        == (run.outputs["roleArn"])
    )


def test_without_iam_options_the_role_has_no_boundary_the_root_path_and_one_hour(
    dev: ProgramRun,
) -> None:
    role = dev.one("aws:iam/role:Role")
    assert "permissionsBoundary" not in role.inputs
    assert role.inputs["path"] == "/"
    assert role.inputs["maxSessionDuration"] == 3600


def test_pod_identity_trust_without_session_tag_conditions_only_when_asked() -> None:
    run = run_program(_with(identityMode="pod-identity", podIdentityTrustConditions=False))
    trust = _doc(run.one("aws:iam/role:Role").inputs, "assumeRolePolicy")
    assert "Condition" not in trust["Statement"][0]


def _taggable(typ: str) -> bool:
    """Whether the pulumi_aws resource of this type token takes `tags`."""
    module, _, name = typ.removeprefix("aws:").partition(":")
    cls = getattr(getattr(pulumi_aws, module.partition("/")[0]), name)
    return "tags" in inspect.signature(cls._internal_init).parameters


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({}, id="irsa"),
        pytest.param({"identityMode": "pod-identity"}, id="pod-identity"),
        pytest.param(
            {
                "clusterName": None,
                "oidcIssuerUrl": ISSUER,
                "createOidcProvider": True,
                "kubeconfig": "apiVersion: v1\n",
            },
            id="created-oidc-provider",
        ),
    ],
)
def test_every_taggable_aws_resource_carries_the_stacks_tags(changes: dict[str, Any]) -> None:
    tags = {"team": "platform", "cost-center": "4711"}
    mocks = RecordingMocks()
    if changes.get("createOidcProvider"):
        mocks.oidc_providers.clear()
    run = run_program(_with(tags=tags, **changes), mocks=mocks)
    aws_resources = [r for r in run.mocks.resources if r.type.startswith("aws:")]
    taggable = [r for r in aws_resources if _taggable(r.type)]
    assert {r.type for r in taggable} >= {
        "aws:s3/bucket:Bucket",
        "aws:iam/role:Role",
        "aws:iam/policy:Policy",
    }
    assert len(taggable) < len(aws_resources)  # the check tells the two apart
    for resource in taggable:
        assert tags.items() <= dict(resource.inputs.get("tags") or {}).items(), resource.name
