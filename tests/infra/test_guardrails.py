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
from pulumi_policy.proxy import unknown_checking_proxy

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
    return f"urn:pulumi:dev::satchel::{resource.type}::{resource.name}"


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
            resources = [
                PolicyResource(
                    r.type,
                    _engine_props(r.outputs),
                    _urn(r),
                    r.name,
                    _options(r),
                    None,
                    None,
                    [],
                    {},
                )
                for r in run.mocks.resources
            ]
            with contextlib.suppress(_NotApplicableError):
                policy.validate(StackValidationArgs(resources), report)
    return found


def test_the_pack_holds_every_promised_policy_each_mandatory_with_a_remediation() -> None:
    assert POLICY_NAMES == [
        "s3-bucket-owner-enforced",
        "s3-bucket-public-access-blocked",
        "s3-bucket-default-encryption",
        "s3-bucket-versioning-enabled",
        "s3-bucket-tls-only",
        "iam-role-irsa-trust",
        "iam-role-pod-identity-trust",
        "iam-policy-no-wildcards",
        "iam-policy-scoped-to-prefixes",
        "k8s-service-account-role-annotated",
    ]
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


def test_an_unknown_value_stops_a_policy_the_way_preview_reports_it() -> None:
    from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError

    props = unknown_checking_proxy({"assumeRolePolicy": UNKNOWN_STRING_VALUE})
    args = ResourceValidationArgs(guardrails.ROLE, props, "urn", "role", None, None)  # type: ignore[arg-type]
    with pytest.raises(UnknownValueError):
        guardrails.iam_role_irsa_trust.validate(args, lambda message, urn=None: None)


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
