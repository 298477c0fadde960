"""The IAM documents Satchel ships: linted with parliament, their security shape pinned down,
and their scoping checked for arbitrary names, buckets and prefixes (hypothesis)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.components.bucket import tls_only_policy
from infra.policies import (
    TrustSpec,
    issuer_host_path,
    oidc_provider_arn,
    permission_policy,
    pod_identity_trust_policy,
    trust_policy,
)

# parliament 1.6.4 reads its data files with open() and never closes them: two ResourceWarnings
# when it is first imported (in `_parliament_findings`, under this filter).
pytestmark = pytest.mark.filterwarnings("ignore:unclosed file:ResourceWarning:parliament")

ACCOUNT_ID = "123456789012"
ISSUER = "https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B716D3041E"
ISSUER_KEY = "oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B716D3041E"
PROVIDER_ARN = f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{ISSUER_KEY}"
KMS_KEY = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
BUCKET = "packeton-dev-storage"
BUCKET_ARN = "arn:aws:s3:::packeton-dev-storage"
PREFIXES = ["packeton", "artifact", "mirror-meta", "mirror-dist"]
SUBJECT = "system:serviceaccount:packeton:packeton"

BUCKET_ACTIONS = {"s3:ListBucket", "s3:GetBucketLocation"}
OBJECT_ACTIONS = {
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
}
KMS_ACTIONS = {"kms:Decrypt", "kms:GenerateDataKey"}

# What parliament reports for every OIDC trust policy, ours included: it expects a Resource,
# which IAM forbids in trust policies (and stops checking the statement there), and it knows
# only Cognito, Amazon, Facebook, Google and SAML providers as federation sources.
MISSING_RESOURCE = ("MALFORMED", "Statement contains neither Resource nor NotResource")
OIDC_TRUST_EXEMPTIONS = [
    MISSING_RESOURCE,
    ("UNKNOWN_FEDERATION_SOURCE", PROVIDER_ARN),  # only for our own provider
]

Document = dict[str, Any]


def _spec(namespace: str = "packeton", service_account: str = "packeton") -> TrustSpec:
    return TrustSpec(
        issuer_url=ISSUER,
        provider_arn=oidc_provider_arn(ISSUER, ACCOUNT_ID),
        namespace=namespace,
        service_accounts=(service_account,),
    )


def _parliament_findings(document: Document) -> list[tuple[str, str]]:
    from parliament import analyze_policy_string  # type: ignore[import-untyped]

    policy = analyze_policy_string(json.dumps(document), include_community_auditors=True)
    return sorted((finding.issue, str(finding.detail)) for finding in policy.findings)


def _listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _grants(document: Document) -> dict[str, set[str]]:
    """Action -> the resources some statement allows it on."""
    grants: dict[str, set[str]] = {}
    for statement in document["Statement"]:
        for action in _listed(statement["Action"]):
            grants.setdefault(action, set()).update(_listed(statement["Resource"]))
    return grants


def _only_statement(document: Document) -> Document:
    assert document["Version"] == "2012-10-17"
    [statement] = document["Statement"]
    return dict(statement)


# parliament


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(permission_policy(BUCKET, PREFIXES), id="permission-policy"),
        pytest.param(permission_policy(BUCKET, PREFIXES, KMS_KEY), id="permission-policy-kms"),
        pytest.param(tls_only_policy(BUCKET_ARN), id="tls-only-bucket-policy"),
    ],
)
def test_parliament_finds_nothing_in_the_permission_and_bucket_policies(
    document: Document,
) -> None:
    assert _parliament_findings(document) == []


def test_parliament_flags_the_aws_trust_policy_only_as_it_flags_every_oidc_trust_policy() -> None:
    findings = _parliament_findings(trust_policy(_spec(), "aws"))
    assert findings == sorted(OIDC_TRUST_EXEMPTIONS)


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(pod_identity_trust_policy(), id="unscoped"),
        pytest.param(pod_identity_trust_policy("packeton", "packeton"), id="session-tags"),
    ],
)
def test_parliament_flags_the_pod_identity_trust_policy_only_for_its_missing_resource(
    document: Document,
) -> None:
    assert _parliament_findings(document) == [MISSING_RESOURCE]


# the security shape, on fixed inputs


def test_the_provider_arn_names_the_issuer_host_and_path_in_the_account() -> None:
    assert oidc_provider_arn(ISSUER, ACCOUNT_ID) == PROVIDER_ARN
    assert issuer_host_path(ISSUER + "/") == ISSUER_KEY


def test_the_aws_trust_policy_admits_only_the_service_account_with_the_sts_audience() -> None:
    statement = _only_statement(trust_policy(_spec(), "aws"))
    assert set(statement) == {"Sid", "Effect", "Principal", "Action", "Condition"}
    assert statement["Effect"] == "Allow"
    assert _listed(statement["Action"]) == ["sts:AssumeRoleWithWebIdentity"]
    assert statement["Principal"] == {"Federated": PROVIDER_ARN}
    assert statement["Condition"] == {
        "StringEquals": {
            f"{ISSUER_KEY}:sub": SUBJECT,
            f"{ISSUER_KEY}:aud": "sts.amazonaws.com",
        }
    }


def test_the_seaweedfs_trust_policy_matches_oidc_sub_and_leaves_the_audience_to_the_provider() -> (
    None
):
    statement = _only_statement(trust_policy(_spec(), "seaweedfs"))
    assert set(statement) == {"Sid", "Effect", "Principal", "Action", "Condition"}
    assert statement["Effect"] == "Allow"
    assert _listed(statement["Action"]) == ["sts:AssumeRoleWithWebIdentity"]
    assert statement["Principal"] == {"Federated": PROVIDER_ARN}
    assert statement["Condition"] == {"StringEquals": {"oidc:sub": SUBJECT}}


def test_the_pod_identity_trust_admits_the_eks_pods_service_to_assume_and_tag_only() -> None:
    statement = _only_statement(pod_identity_trust_policy())
    assert set(statement) == {"Sid", "Effect", "Principal", "Action"}
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert sorted(_listed(statement["Action"])) == ["sts:AssumeRole", "sts:TagSession"]


def test_the_scoped_pod_identity_trust_admits_only_sessions_tagged_with_the_account() -> None:
    statement = _only_statement(pod_identity_trust_policy("packeton", "mirror"))
    assert statement["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert sorted(_listed(statement["Action"])) == ["sts:AssumeRole", "sts:TagSession"]
    assert statement["Condition"] == {
        "StringEquals": {
            "aws:RequestTag/kubernetes-namespace": "packeton",
            "aws:RequestTag/kubernetes-service-account": "mirror",
        }
    }


@pytest.mark.parametrize("kms_key", [None, KMS_KEY], ids=["sse-s3", "sse-kms"])
def test_every_permission_statement_is_a_plain_allow_without_conditions(
    kms_key: str | None,
) -> None:
    document = permission_policy(BUCKET, PREFIXES, kms_key)
    assert document["Version"] == "2012-10-17"
    for statement in document["Statement"]:
        assert set(statement) == {"Sid", "Effect", "Action", "Resource"}, statement
        assert statement["Effect"] == "Allow"
    assert "s3:prefix" not in json.dumps(document)


def test_the_bucket_is_listed_without_a_prefix_condition() -> None:
    document = permission_policy(BUCKET, PREFIXES)
    [listing] = [s for s in document["Statement"] if "s3:ListBucket" in _listed(s["Action"])]
    assert set(_listed(listing["Action"])) == BUCKET_ACTIONS
    assert _listed(listing["Resource"]) == [BUCKET_ARN]
    assert "Condition" not in listing


def test_object_actions_are_granted_only_under_the_given_prefixes() -> None:
    grants = _grants(permission_policy(BUCKET, ["packeton", "artifact"]))
    assert grants == {
        **{action: {BUCKET_ARN} for action in BUCKET_ACTIONS},
        **{
            action: {f"{BUCKET_ARN}/packeton/*", f"{BUCKET_ARN}/artifact/*"}
            for action in OBJECT_ACTIONS
        },
    }


@pytest.mark.parametrize("kms_key", [None, KMS_KEY], ids=["sse-s3", "sse-kms"])
def test_no_statement_grants_a_wildcard_action_or_resource(kms_key: str | None) -> None:
    grants = _grants(permission_policy(BUCKET, PREFIXES, kms_key))
    for action, resources in grants.items():
        assert "*" not in action, action
        for resource in resources:
            assert resource != "*"
            # the only wildcard: "every key under a prefix"
            assert "*" not in resource.removesuffix("/*"), resource
    assert grants.keys() <= BUCKET_ACTIONS | OBJECT_ACTIONS | KMS_ACTIONS


def test_the_kms_key_is_granted_decrypt_and_generate_data_key_only_when_given() -> None:
    without = _grants(permission_policy(BUCKET, PREFIXES))
    assert not any(action.startswith("kms:") for action in without)
    with_key = _grants(permission_policy(BUCKET, PREFIXES, KMS_KEY))
    kms_grants = {action: resources for action, resources in with_key.items() if "kms:" in action}
    assert kms_grants == {action: {KMS_KEY} for action in KMS_ACTIONS}


# the same properties for arbitrary valid inputs

_k8s_names = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", fullmatch=True)
_bucket_names = st.from_regex(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]", fullmatch=True)
_segments = st.from_regex(r"[a-z0-9._-]{1,12}", fullmatch=True).filter(lambda s: s != "..")
_paths = st.lists(_segments, min_size=1, max_size=3).map("/".join)
_slash = st.sampled_from(["", "/"])
# Leading and trailing slashes are trimmed (as the config does): "a/" and "a" are one prefix.
_prefix_lists = st.lists(
    st.builds(lambda lead, path, trail: lead + path + trail, _slash, _paths, _slash),
    min_size=1,
    max_size=4,
    unique_by=lambda prefix: prefix.strip("/"),
)
_partitions = st.sampled_from(["aws", "aws-cn", "aws-us-gov"])
_accounts = st.from_regex(r"[0-9]{12}", fullmatch=True)
_dns_labels = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True)
_hosts = st.lists(_dns_labels, min_size=1, max_size=4).map(".".join)
_url_path_segments = st.from_regex(r"[A-Za-z0-9_-]{1,24}", fullmatch=True)


@settings(deadline=None)
@given(
    bucket=_bucket_names,
    prefixes=_prefix_lists,
    partition=_partitions,
    kms_key_id=st.none() | st.uuids(),
)
def test_the_permission_policy_is_scoped_to_exactly_its_bucket_and_prefixes(
    bucket: str, prefixes: list[str], partition: str, kms_key_id: Any
) -> None:
    kms_key = f"arn:{partition}:kms:eu-west-1:{ACCOUNT_ID}:key/{kms_key_id}" if kms_key_id else None
    bucket_arn = f"arn:{partition}:s3:::{bucket}"
    object_arns = {f"{bucket_arn}/{prefix.strip('/')}/*" for prefix in prefixes}
    assert len(object_arns) == len(prefixes)

    grants = _grants(permission_policy(bucket, prefixes, kms_key, partition))

    expected = {action: {bucket_arn} for action in BUCKET_ACTIONS}
    expected.update({action: object_arns for action in OBJECT_ACTIONS})
    if kms_key:
        expected.update({action: {kms_key} for action in KMS_ACTIONS})
    assert grants == expected


@settings(deadline=None)
@given(namespace=_k8s_names, service_account=_k8s_names)
def test_the_trust_policies_admit_exactly_the_one_service_account(
    namespace: str, service_account: str
) -> None:
    spec = _spec(namespace, service_account)
    subject = f"system:serviceaccount:{namespace}:{service_account}"

    aws = _only_statement(trust_policy(spec, "aws"))
    assert aws["Principal"] == {"Federated": PROVIDER_ARN}
    assert aws["Condition"] == {
        "StringEquals": {f"{ISSUER_KEY}:sub": subject, f"{ISSUER_KEY}:aud": "sts.amazonaws.com"}
    }
    seaweedfs = _only_statement(trust_policy(spec, "seaweedfs"))
    assert seaweedfs["Condition"] == {"StringEquals": {"oidc:sub": subject}}


@settings(deadline=None)
@given(
    host=_hosts,
    path=st.lists(_url_path_segments, max_size=3),
    trailing_slash=st.booleans(),
    account_id=_accounts,
    partition=_partitions,
)
def test_the_provider_arn_and_the_condition_keys_name_the_same_issuer(
    host: str, path: list[str], trailing_slash: bool, account_id: str, partition: str
) -> None:
    host_path = "/".join([host, *path])
    issuer = f"https://{host_path}" + ("/" if trailing_slash else "")

    assert issuer_host_path(issuer) == host_path
    provider_arn = oidc_provider_arn(issuer, account_id, partition)
    assert provider_arn == f"arn:{partition}:iam::{account_id}:oidc-provider/{host_path}"

    spec = TrustSpec(issuer, provider_arn, "packeton", ("packeton",))
    statement = _only_statement(trust_policy(spec, "aws"))
    assert statement["Principal"] == {"Federated": provider_arn}
    assert set(statement["Condition"]["StringEquals"]) == {f"{host_path}:sub", f"{host_path}:aud"}
