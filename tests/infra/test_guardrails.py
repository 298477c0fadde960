"""The policy pack (infra/policy_pack), without the CLI: every policy's `validate` is called
with the resources the program really declares under Pulumi's mocks, handed over as the
engine hands them (a protobuf Struct, deserialized and wrapped in the SDK's unknown-checking
proxy). The program as configured passes every policy; each deliberately broken program or
stack fails exactly the policy meant to catch it."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pulumi_aws as aws
import pytest
from google.protobuf import json_format, struct_pb2
from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.deserialize import deserialize_properties
from pulumi_policy.policy import _NotApplicableError
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError, unknown_checking_proxy

import infra.components.bucket
import infra.components.identity
import infra.components.kubernetes
import infra.policies
from infra.policy_pack import guardrails
from tests.infra.harness import ISSUER, ProgramRun, RecordingMocks, Resource, run_program
from tests.infra.harness import stack_config_with as _with

ISSUER_KEY = ISSUER.removeprefix("https://")
KMS_KEY = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
POLICY_NAMES = [policy.name for policy in guardrails.POLICIES]


def _engine_props(values: dict[str, Any]) -> Any:
    """Properties as the analyzer receives them over gRPC (numbers become floats)."""
    struct = struct_pb2.Struct()
    struct.update(json.loads(json.dumps(values, default=str)))
    return unknown_checking_proxy(deserialize_properties(json_format.MessageToDict(struct)))


def _urn(resource: Resource) -> str:
    return resource.options.urn or f"urn:pulumi:dev::satchel::{resource.type}::{resource.name}"


def _options(resource: Resource) -> PolicyResourceOptions:
    return PolicyResourceOptions(
        protect=resource.options.protect,
        ignore_changes=[],
        delete_before_replace=None,
        aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=[],
    )


def violations(run: ProgramRun) -> dict[str, list[str]]:
    """Policy name -> the messages it reported on this run's resources."""
    found: dict[str, list[str]] = {}

    def reporter(name: str) -> Callable[[str, str | None], None]:
        return lambda message, urn=None: found.setdefault(name, []).append(message)

    for policy in guardrails.POLICIES:
        report = reporter(policy.name)
        if isinstance(policy, ResourceValidationPolicy):
            for r in run.mocks.resources:
                args = ResourceValidationArgs(
                    r.type, _engine_props(r.inputs), _urn(r), r.name, _options(r), None
                )
                with contextlib.suppress(_NotApplicableError):
                    policy.validate(args, report)
        else:
            assert isinstance(policy, StackValidationPolicy)
            with contextlib.suppress(_NotApplicableError):
                policy.validate(StackValidationArgs(_stack_resources(run)), report)
    return found


def _stack_resources(run: ProgramRun) -> list[PolicyResource]:
    """The stack's resources as the analyzer hands them over: outputs, with the parent and
    the property dependencies resolved to the resources they name (by URN)."""
    resources = {
        _urn(r): PolicyResource(
            r.type, _engine_props(r.outputs), _urn(r), r.name, _options(r), None, None, [], {}
        )
        for r in run.mocks.resources
    }
    for r in run.mocks.resources:
        resource = resources[_urn(r)]
        resource.parent = resources.get(r.options.parent)
        resource.property_dependencies = {
            key: [resources[urn] for urn in urns if urn in resources]
            for key, urns in r.options.property_dependencies
        }
        resource.dependencies = [
            d for deps in resource.property_dependencies.values() for d in deps
        ]
    return list(resources.values())


def test_the_pack_holds_every_promised_policy_each_mandatory_with_a_remediation() -> None:
    assert POLICY_NAMES == [
        "s3-bucket-owner-enforced",
        "s3-bucket-public-access-blocked",
        "s3-bucket-default-encryption",
        "s3-bucket-versioning-enabled",
        "s3-bucket-tls-only",
        "s3-bucket-protections-attached",
        "iam-role-irsa-trust",
        "iam-role-pod-identity-trust",
        "iam-pod-identity-association-matches-trust",
        "iam-policy-no-wildcards",
        "iam-role-no-aws-managed-policies",
        "iam-policy-scoped-to-prefixes",
        "k8s-service-account-role-annotated",
    ]
    # Only the joins look at the whole stack; everything else is checked resource by resource
    # (a stack policy reading one unknown value is dropped whole at preview).
    stack_wide = {p.name for p in guardrails.POLICIES if isinstance(p, StackValidationPolicy)}
    assert stack_wide == {
        "s3-bucket-protections-attached",
        "iam-pod-identity-association-matches-trust",
        "iam-policy-scoped-to-prefixes",
        "k8s-service-account-role-annotated",
    }
    for policy in guardrails.POLICIES:
        assert policy.enforcement_level is not None
        assert policy.enforcement_level.value == "mandatory", policy.name
        assert policy.remediation_steps and len(policy.remediation_steps) > 60, policy.name


def test_the_pack_checks_documents_with_the_same_constants_the_program_renders() -> None:
    assert guardrails.STS_AUDIENCE == infra.policies.STS_AUDIENCE
    assert guardrails.IRSA_ANNOTATION == infra.components.kubernetes.IRSA_ANNOTATION
    assert guardrails.NAMESPACE_TAG == infra.policies.POD_IDENTITY_NAMESPACE_TAG
    assert guardrails.SERVICE_ACCOUNT_TAG == infra.policies.POD_IDENTITY_SERVICE_ACCOUNT_TAG


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({}, id="dev"),
        pytest.param({"identityMode": "pod-identity"}, id="pod-identity"),
        pytest.param({"kmsKeyArn": KMS_KEY}, id="sse-kms"),
        pytest.param({"deployApp": True, "appImage": "registry.example/satchel:1"}, id="app"),
        pytest.param(
            {"rolePath": "/workloads/", "maxSessionDuration": 7200, "bucketName": None},
            id="iam-options-generated-bucket",
        ),
    ],
)
def test_the_program_as_configured_passes_every_policy(changes: dict[str, Any]) -> None:
    assert violations(run_program(_with(**changes))) == {}


def test_a_stack_with_a_created_oidc_provider_passes_every_policy() -> None:
    mocks = RecordingMocks()
    mocks.oidc_providers.clear()
    config = _with(
        clusterName=None, oidcIssuerUrl=ISSUER, createOidcProvider=True, kubeconfig="k: v\n"
    )
    assert violations(run_program(config, mocks=mocks)) == {}


# Broken programs: a fork's edit, applied to the real program by patching one of its pieces


def _wrap(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, change: Callable[..., Any]):  # type: ignore[no-untyped-def]
    original = getattr(owner, name)
    monkeypatch.setattr(owner, name, lambda *a, **k: change(original, *a, **k))


def _public_bucket(monkeypatch: pytest.MonkeyPatch) -> None:
    # "Serve the dists straight from S3": the public access block off, a public-read statement.
    _wrap(
        monkeypatch,
        aws.s3,
        "BucketPublicAccessBlock",
        lambda original, name, **kw: original(
            name, **{**kw, "block_public_policy": False, "restrict_public_buckets": False}
        ),
    )

    def with_public_read(original: Any, arn: str) -> Any:
        policy = original(arn)
        policy["Statement"].append(
            {
                "Sid": "PublicRead",
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": f"{arn}/*",
            }
        )
        return policy

    _wrap(monkeypatch, infra.components.bucket, "tls_only_policy", with_public_read)


def _trust_edit(edit: Callable[[dict[str, Any]], None]) -> Callable[[pytest.MonkeyPatch], None]:
    def patch(monkeypatch: pytest.MonkeyPatch) -> None:
        def edited(original: Any, *args: Any) -> Any:
            document = original(*args)
            edit(document["Statement"][0]["Condition"])
            return document

        _wrap(monkeypatch, infra.components.identity, "trust_policy", edited)

    return patch


def _without_aud(condition: dict[str, Any]) -> None:
    del condition["StringEquals"][f"{ISSUER_KEY}:aud"]


def _wildcard_subject(condition: dict[str, Any]) -> None:
    del condition["StringEquals"][f"{ISSUER_KEY}:sub"]
    condition["StringLike"] = {f"{ISSUER_KEY}:sub": "system:serviceaccount:packeton:*"}


def _s3_star(monkeypatch: pytest.MonkeyPatch) -> None:
    def star(original: Any, *args: Any) -> Any:
        document = original(*args)
        for statement in document["Statement"]:
            if statement["Sid"] == "ObjectsUnderPrefixes":
                statement["Action"] = "s3:*"
        return document

    _wrap(monkeypatch, infra.components.identity, "permission_policy", star)


def _empty_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    # The config refuses "" (tests/infra/test_config.py); a fork passing it on regardless
    # grants the whole bucket (permission_policy renders "" as BUCKET/*).
    _wrap(
        monkeypatch,
        infra.components.identity,
        "permission_policy",
        lambda original, bucket, prefixes, *rest: original(bucket, ["", *prefixes[1:]], *rest),
    )


def _object_writer(monkeypatch: pytest.MonkeyPatch) -> None:
    _wrap(
        monkeypatch,
        aws.s3,
        "BucketOwnershipControls",
        lambda original, name, **kw: original(
            name, **{**kw, "rule": {"object_ownership": "ObjectWriter"}}
        ),
    )


def _no_encryption_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        infra.components.bucket,
        "_encryption_rule",
        lambda _: {"apply_server_side_encryption_by_default": {"sse_algorithm": "aws:kms"}},
    )


def _plain_http_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    def allowing(original: Any, arn: str) -> Any:
        policy = original(arn)
        policy["Statement"][0]["Resource"] = [arn]  # objects no longer covered
        return policy

    _wrap(monkeypatch, infra.components.bucket, "tls_only_policy", allowing)


def _unannotated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(infra.components.kubernetes, "IRSA_ANNOTATION", "example.com/role-arn")


BROKEN = [
    pytest.param(_public_bucket, {}, "s3-bucket-public-access-blocked", id="public-bucket"),
    pytest.param(_trust_edit(_without_aud), {}, "iam-role-irsa-trust", id="missing-aud"),
    pytest.param(_trust_edit(_wildcard_subject), {}, "iam-role-irsa-trust", id="wildcard-subject"),
    pytest.param(_s3_star, {}, "iam-policy-no-wildcards", id="s3-star"),
    pytest.param(_empty_prefix, {}, "iam-policy-scoped-to-prefixes", id="empty-prefix"),
    pytest.param(_object_writer, {}, "s3-bucket-owner-enforced", id="object-writer"),
    pytest.param(_no_encryption_key, {}, "s3-bucket-default-encryption", id="kms-without-key"),
    pytest.param(_plain_http_allowed, {}, "s3-bucket-tls-only", id="tls-on-bucket-only"),
    pytest.param(_unannotated, {}, "k8s-service-account-role-annotated", id="no-role-arn"),
    # Broken stacks: config the model accepts, the pack refuses.
    pytest.param(None, {"versioning": False}, "s3-bucket-versioning-enabled", id="unversioned"),
    pytest.param(
        None,
        {"identityMode": "pod-identity", "podIdentityTrustConditions": False},
        "iam-role-pod-identity-trust",
        id="pod-identity-unscoped",
    ),
]


@pytest.mark.parametrize(("patch", "changes", "policy"), BROKEN)
def test_each_broken_configuration_fails_exactly_the_policy_meant_to_catch_it(
    patch: Callable[[pytest.MonkeyPatch], None] | None,
    changes: dict[str, Any],
    policy: str,
    monkeypatch: pytest.MonkeyPatch,
    record_property: Callable[[str, object], None],
) -> None:
    if patch is not None:
        patch(monkeypatch)
    found = violations(run_program(_with(**changes)))
    record_property("violations", found)
    assert set(found) == {policy}, found
    assert all(message.strip() for message in found[policy])


def _messages(patch: Callable[[pytest.MonkeyPatch], None], monkeypatch: pytest.MonkeyPatch) -> str:
    patch(monkeypatch)
    return " | ".join(message for ms in violations(run_program(_with())).values() for message in ms)


def test_a_missing_audience_is_named_with_what_it_lets_in(monkeypatch: pytest.MonkeyPatch) -> None:
    message = _messages(_trust_edit(_without_aud), monkeypatch)
    assert f"{ISSUER_KEY}:aud must be sts.amazonaws.com" in message
    assert "any other audience" in message


def test_a_wildcard_subject_is_named_with_the_operator_and_the_subject(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = _messages(_trust_edit(_wildcard_subject), monkeypatch)
    assert "StringEquals only (found StringEquals, StringLike)" in message
    assert "without wildcards" in message


def test_a_public_bucket_is_reported_for_each_opening(monkeypatch: pytest.MonkeyPatch) -> None:
    message = _messages(_public_bucket, monkeypatch)
    assert "blockPublicPolicy, restrictPublicBuckets off" in message
    assert "statement PublicRead allows anyone" in message


# The checks on documents alone, for shapes the program never renders


@pytest.mark.parametrize(
    ("statement", "problem"),
    [
        ({"Principal": {"AWS": "*"}}, "neither web identity"),
        ({"Action": ["sts:AssumeRoleWithWebIdentity", "sts:AssumeRole"]}, "the only action"),
        ({"sub": ["system:serviceaccount:a:b", "system:serviceaccount:a:c"]}, ":sub must be"),
        ({"sub": "system:serviceaccount:packeton:pack?ton"}, ":sub must be"),
        ({"aud": "sts.amazonaws.com*"}, ":aud must be"),
    ],
)
def test_the_irsa_trust_check_refuses_each_widening(
    statement: dict[str, Any], problem: str
) -> None:
    spec = infra.policies.TrustSpec(
        ISSUER, f"arn:aws:iam::123456789012:oidc-provider/{ISSUER_KEY}", "packeton", ("packeton",)
    )
    document = infra.policies.trust_policy(spec)
    target = document["Statement"][0]
    assert guardrails.irsa_trust_problems(document) == []
    for key, value in statement.items():
        if key in ("sub", "aud"):
            target["Condition"]["StringEquals"][f"{ISSUER_KEY}:{key}"] = value
        else:
            target[key] = value
    assert any(problem in p for p in guardrails.irsa_trust_problems(document))


@pytest.mark.parametrize(
    ("grant", "problem"),
    [
        ({"Action": "s3:GetObject", "Resource": "*"}, "wildcard resource"),
        ({"Action": "s3:Get*", "Resource": "arn:aws:s3:::b/packeton/*"}, "wildcard action"),
        ({"NotAction": "iam:*", "Resource": "arn:aws:s3:::b"}, "NotAction"),
    ],
)
def test_the_wildcard_check_refuses_each_shape(grant: dict[str, Any], problem: str) -> None:
    document = {"Statement": [{"Sid": "X", "Effect": "Allow", **grant}]}
    assert any(problem in p for p in guardrails.wildcard_problems(document))


@pytest.mark.parametrize(
    ("grant", "problem"),
    [
        (
            {"Action": "s3:GetObject", "Resource": "arn:aws:s3:::other/packeton/*"},
            "not on the bucket",
        ),
        ({"Action": "s3:PutBucketPolicy", "Resource": "arn:aws:s3:::b"}, "on the bucket itself"),
        ({"Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/secret/*"}, "not under the"),
        ({"Action": "s3:ListBucket", "Resource": "arn:aws:s3:::b/packeton/*"}, "on objects"),
    ],
)
def test_the_scope_check_refuses_grants_outside_the_bucket_and_prefixes(
    grant: dict[str, Any], problem: str
) -> None:
    document = {"Statement": [{"Sid": "X", "Effect": "Allow", **grant}]}
    found = guardrails.scope_problems(document, "b", ["packeton", "artifact"])
    assert any(problem in p for p in found), found


def test_the_rendered_permission_policy_is_in_scope() -> None:
    document = infra.policies.permission_policy("b", ["packeton", "artifact"], KMS_KEY)
    assert guardrails.scope_problems(document, "b", ["packeton", "artifact"]) == []
    assert guardrails.wildcard_problems(document) == []


def test_an_unknown_value_skips_that_resource_alone() -> None:
    """At preview an unknown trust is left to `up` for that role; another role, known, is
    still checked (the SDK would drop the whole policy on an uncaught unknown)."""
    unknown = ResourceValidationArgs(
        guardrails.ROLE,
        unknown_checking_proxy({"assumeRolePolicy": UNKNOWN_STRING_VALUE}),
        "urn",
        "role",
        None,  # type: ignore[arg-type]
        None,
    )
    found: list[str] = []
    guardrails.iam_role_irsa_trust.validate(
        unknown, lambda message, urn=None: found.append(message)
    )
    assert found == []
    broad = {"Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:*"}]}
    known = ResourceValidationArgs(
        guardrails.ROLE,
        unknown_checking_proxy({"assumeRolePolicy": json.dumps(broad)}),
        "urn",
        "other",
        None,  # type: ignore[arg-type]
        None,
    )
    guardrails.iam_role_irsa_trust.validate(known, lambda message, urn=None: found.append(message))
    assert found and "neither web identity" in found[0]


# `pulumi preview` of a new stack: no ids, no ARNs, nothing computed from them


def _preview(config: dict[str, Any]) -> ProgramRun:
    return run_program(config, mocks=RecordingMocks(preview=True))


def test_a_preview_run_carries_the_unknowns_the_engine_sends() -> None:
    run = _preview(_with())
    bucket = run.one(guardrails.BUCKET)
    assert bucket.outputs["arn"] == UNKNOWN_STRING_VALUE
    assert run.one(guardrails.BUCKET_POLICY).inputs["bucket"] == UNKNOWN_STRING_VALUE
    assert run.one(guardrails.ROLE).outputs["arn"] == UNKNOWN_STRING_VALUE
    annotations = run.one(guardrails.SERVICE_ACCOUNT).inputs["metadata"]["annotations"]
    assert annotations[infra.components.kubernetes.IRSA_ANNOTATION] == UNKNOWN_STRING_VALUE
    # What the SDK would refuse to read: a stack-wide join through `bucket` cannot run.
    with pytest.raises(UnknownValueError):
        _ = _engine_props(run.one(guardrails.VERSIONING).inputs)["bucket"]


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({}, id="dev"),
        pytest.param({"identityMode": "pod-identity"}, id="pod-identity"),
        pytest.param({"deployApp": True, "appImage": "registry.example/satchel:1"}, id="app"),
        pytest.param({"bucketName": None}, id="generated-bucket"),
    ],
)
def test_the_program_as_configured_passes_every_policy_at_preview(changes: dict[str, Any]) -> None:
    assert violations(_preview(_with(**changes))) == {}


@pytest.mark.parametrize(("patch", "changes", "policy"), BROKEN)
def test_each_broken_configuration_fails_its_policy_already_at_preview(
    patch: Callable[[pytest.MonkeyPatch], None] | None,
    changes: dict[str, Any],
    policy: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if patch is not None:
        patch(monkeypatch)
    found = violations(_preview(_with(**changes)))
    assert set(found) == {policy}, found


# Bypasses: what a fork could add beside the program's own resources


def _after(monkeypatch: pytest.MonkeyPatch, component: Any, add: Callable[[Any], None]) -> None:
    """Declare more resources once `component` (AppIdentity, SecureBucket) is built."""
    original = component.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        add(self)

    monkeypatch.setattr(component, "__init__", init)


S3_STAR = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
)
S3_FULL_ACCESS = "arn:aws:iam::aws:policy/AmazonS3FullAccess"


def _role_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    _after(
        monkeypatch,
        infra.components.identity.AppIdentity,
        lambda self: aws.iam.RolePolicy("fork-inline", role=self.role.name, policy=S3_STAR),
    )


def _role_with(**extra: Any) -> Callable[[pytest.MonkeyPatch], None]:
    def patch(monkeypatch: pytest.MonkeyPatch) -> None:
        _wrap(
            monkeypatch,
            aws.iam,
            "Role",
            lambda original, name, **kw: original(name, **{**kw, **extra}),
        )

    return patch


def _attached_managed_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    _after(
        monkeypatch,
        infra.components.identity.AppIdentity,
        lambda self: aws.iam.RolePolicyAttachment(
            "fork-s3-full", role=self.role.name, policy_arn=S3_FULL_ACCESS
        ),
    )


def _bucket_v2(monkeypatch: pytest.MonkeyPatch) -> None:
    _after(
        monkeypatch,
        infra.components.bucket.SecureBucket,
        lambda self: aws.s3.BucketV2("fork-bucket", bucket="fork-bucket-example"),
    )


def _public_acl_v2(monkeypatch: pytest.MonkeyPatch) -> None:
    _after(
        monkeypatch,
        infra.components.bucket.SecureBucket,
        lambda self: aws.s3.BucketAclV2("fork-acl", bucket=self.bucket.id, acl="public-read"),
    )


def _public_policy_on_the_bucket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = _with()["satchel:bucketName"]
    policy = infra.components.bucket.tls_only_policy(f"arn:aws:s3:::{name}")
    policy["Statement"].append(
        {
            "Sid": "PublicRead",
            "Effect": "Allow",
            "Principal": {"AWS": "*"},
            "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::{name}/*",
        }
    )
    _wrap(
        monkeypatch,
        aws.s3,
        "Bucket",
        lambda original, res, **kw: original(res, **{**kw, "policy": json.dumps(policy)}),
    )


BYPASSES = [
    pytest.param(_role_policy, "iam-policy-no-wildcards", id="role-policy-s3-star"),
    pytest.param(
        _role_with(inline_policies=[{"name": "fork", "policy": S3_STAR}]),
        "iam-policy-no-wildcards",
        id="role-inline-policies",
    ),
    pytest.param(
        _role_with(managed_policy_arns=[S3_FULL_ACCESS]),
        "iam-role-no-aws-managed-policies",
        id="role-managed-policy-arns",
    ),
    pytest.param(
        _attached_managed_policy,
        "iam-role-no-aws-managed-policies",
        id="attached-aws-managed-policy",
    ),
    pytest.param(_bucket_v2, "s3-bucket-protections-attached", id="unprotected-bucket-v2"),
    pytest.param(_public_acl_v2, "s3-bucket-owner-enforced", id="bucket-acl-v2-public-read"),
    pytest.param(
        _public_policy_on_the_bucket, "s3-bucket-public-access-blocked", id="public-bucket-policy"
    ),
]


@pytest.mark.parametrize("preview", [False, True], ids=["up", "preview"])
@pytest.mark.parametrize(("patch", "policy"), BYPASSES)
def test_each_bypass_fails_the_policy_meant_to_catch_it(
    patch: Callable[[pytest.MonkeyPatch], None],
    policy: str,
    preview: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    patch(monkeypatch)
    found = violations(run_program(_with(), mocks=RecordingMocks(preview=preview)))
    assert set(found) == {policy}, found


def test_an_unprotected_bucket_v2_is_told_each_missing_protection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = _messages(_bucket_v2, monkeypatch)
    for what, _, how in guardrails.PROTECTIONS:
        assert f"bucket fork-bucket-example lacks {what}: declare {how}" in message
    assert "bucket packeton" not in message  # the program's own bucket has all five


# The prefixes without the app's ConfigMap


def test_the_scope_check_fails_without_prefixes_rather_than_switching_itself_off() -> None:
    resources = [
        r
        for r in _stack_resources(run_program(_with()))
        if r.resource_type != "kubernetes:core/v1:ConfigMap"
    ]
    found: list[str] = []
    guardrails.iam_policy_scoped_to_prefixes.validate(
        StackValidationArgs(resources), lambda message, urn=None: found.append(message)
    )
    assert len(found) == 1 and "pack's config" in found[0], found
    assert "prefixes" in (guardrails.iam_policy_scoped_to_prefixes.remediation_steps or "")


def test_the_scope_check_reads_the_prefixes_from_the_packs_config() -> None:
    run = run_program(_with())
    resources = [
        r for r in _stack_resources(run) if r.resource_type != "kubernetes:core/v1:ConfigMap"
    ]
    bucket = run.outputs["bucketName"]
    env = run.one("kubernetes:core/v1:ConfigMap").inputs["data"]
    prefixes = [env[var] for var in guardrails.PREFIX_VARS]

    def check(config: dict[str, Any]) -> list[str]:
        found: list[str] = []
        guardrails.iam_policy_scoped_to_prefixes.validate(
            StackValidationArgs(resources, config), lambda message, urn=None: found.append(message)
        )
        return found

    assert check({"bucket": bucket, "prefixes": prefixes}) == []
    narrower = check({"bucket": bucket, "prefixes": prefixes[:1]})
    assert narrower and all("not under the configured prefixes" in m for m in narrower)


# TLS-only: the union of the Deny statements


def _deny(resources: list[str], action: str = "s3:*") -> dict[str, Any]:
    return {
        "Effect": "Deny",
        "Principal": "*",
        "Action": action,
        "Resource": resources,
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


ARN = "arn:aws:s3:::b"


@pytest.mark.parametrize(
    "denies",
    [
        pytest.param([_deny([ARN, f"{ARN}/*"])], id="one-statement"),
        pytest.param([_deny([ARN]), _deny([f"{ARN}/*"])], id="bucket-and-objects-apart"),
        pytest.param([_deny([ARN, f"{ARN}/*"], action="*")], id="action-star"),
    ],
)
def test_the_tls_check_accepts_the_union_of_deny_statements(denies: list[Any]) -> None:
    assert guardrails.tls_problems({"Statement": denies}, "b") == []


def test_the_tls_check_names_what_is_left_without_tls() -> None:
    (problem,) = guardrails.tls_problems({"Statement": [_deny([ARN])]}, "b")
    assert f"{ARN}/* (its objects)" in problem
    (problem,) = guardrails.tls_problems({"Statement": [_deny([f"{ARN}/*"])]}, "b")
    assert f"{ARN} (the bucket)" in problem
    (problem,) = guardrails.tls_problems({"Statement": []}, "b")
    assert "the bucket" in problem and "its objects" in problem


# Pod Identity: the session tags name the association's namespace and service account


def test_the_pod_identity_trust_must_name_the_associations_namespace_and_account() -> None:
    document = infra.policies.pod_identity_trust_policy("packeton", "packeton")
    assert guardrails.pod_identity_trust_problems(document, "packeton", "packeton") == []
    problems = guardrails.pod_identity_trust_problems(document, "packeton", "other")
    assert len(problems) == 1 and "the association names 'other'" in problems[0]


def _trust_for_another_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    _wrap(
        monkeypatch,
        infra.components.identity,
        "pod_identity_trust_policy",
        lambda original, namespace, account: original("elsewhere", account),
    )


@pytest.mark.parametrize("preview", [False, True], ids=["up", "preview"])
def test_a_pod_identity_trust_for_another_namespace_fails_the_association_check(
    preview: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    _trust_for_another_namespace(monkeypatch)
    run = run_program(_with(identityMode="pod-identity"), mocks=RecordingMocks(preview=preview))
    found = violations(run)
    assert set(found) == {"iam-pod-identity-association-matches-trust"}, found
    assert "'elsewhere'" in found["iam-pod-identity-association-matches-trust"][0]


@pytest.fixture
def pack_entry_point() -> Iterator[str]:
    from infra.config import ROOT

    yield (ROOT / "infra" / "policy_pack" / "__main__.py").read_text()


def test_only_the_entry_point_builds_the_pack(pack_entry_point: str) -> None:
    # PolicyPack(...) serves gRPC and blocks: the importable module must not build one.
    source = Path(guardrails.__file__).read_text()
    assert "PolicyPack(" not in source
    assert "PolicyPack(" in pack_entry_point
    assert "policies=POLICIES" in pack_entry_point


def test_the_entry_point_serves_the_pack_without_this_repository_on_the_path(
    tmp_path: Path,
) -> None:
    """As the CLI runs it (`runpy.run_path(PACK_DIR)`), with `infra` not importable (the pack's
    own virtualenv): it falls back to its sibling module and prints the analyzer's port."""
    pack = Path(guardrails.__file__).parent
    script = (
        "import runpy, sys\n"
        "sys.modules['infra'] = None  # not importable, as in the pack's own virtualenv\n"
        f"runpy.run_path({str(pack)!r}, run_name='__main__')\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = process.stdout.readline().strip()
        assert port.isdigit(), process.stderr.read() if process.stderr else port
    finally:
        process.kill()
        process.wait(10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_the_readme_lists_every_policy_with_what_it_checks_and_the_real_counts() -> None:
    from infra.config import ROOT

    text = (ROOT / "README.md").read_text()
    rows = dict(
        (line.split("|")[1].strip().strip("`"), line.split("|")[2].strip())
        for line in text.splitlines()
        if line.startswith("| `") and line.split("|")[1].strip().strip("`") in POLICY_NAMES
    )
    assert list(rows) == POLICY_NAMES
    for policy in guardrails.POLICIES:
        stack_wide = isinstance(policy, StackValidationPolicy)
        assert rows[policy.name] == ("the stack (join)" if stack_wide else "each resource")
    assert f"{len(BROKEN)} broken programs or stacks, {len(BYPASSES)} bypasses" in text
    assert "ten broken" not in text
