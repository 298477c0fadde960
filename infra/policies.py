"""IAM documents for Satchel's role, as pure functions (no Pulumi import).

The Pulumi program attaches them in AWS; the local target loads the very same documents into
SeaweedFS, so the policy the tests exercise is the policy that ships.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlparse

STS_AUDIENCE = "sts.amazonaws.com"
# Principal.Federated names the provider; SeaweedFS accepts the AWS ARN form as a provider name.
Target = Literal["aws", "seaweedfs"]
Document = dict[str, Any]


def issuer_host_path(issuer_url: str) -> str:
    """`https://oidc.eks.../id/X` -> `oidc.eks.../id/X`: the form IAM uses in ARNs and keys."""
    parsed = urlparse(issuer_url)
    return f"{parsed.netloc}{parsed.path}".rstrip("/")


def oidc_provider_arn(issuer_url: str, account_id: str, partition: str = "aws") -> str:
    return f"arn:{partition}:iam::{account_id}:oidc-provider/{issuer_host_path(issuer_url)}"


def service_account_subject(namespace: str, service_account: str) -> str:
    return f"system:serviceaccount:{namespace}:{service_account}"


@dataclass(frozen=True)
class TrustSpec:
    """Who may assume the role: tokens of one issuer, for these service accounts and audience."""

    issuer_url: str
    provider_arn: str
    namespace: str
    service_accounts: tuple[str, ...]
    audience: str = STS_AUDIENCE

    @property
    def subjects(self) -> list[str]:
        return [service_account_subject(self.namespace, sa) for sa in self.service_accounts]


def trust_policy(spec: TrustSpec, target: Target = "aws") -> Document:
    """The role's trust policy, rendered for AWS IAM or for SeaweedFS.

    AWS keys the conditions by the issuer (`<host/path>:sub`, `:aud`). SeaweedFS uses
    `oidc:sub`, and enforces the audience through the provider's `clientIds` instead: an
    `aud` condition would not match the list-valued `aud` of Kubernetes tokens there.
    """
    subjects: str | list[str] = spec.subjects[0] if len(spec.subjects) == 1 else spec.subjects
    if target == "aws":
        key = issuer_host_path(spec.issuer_url)
        condition = {"StringEquals": {f"{key}:sub": subjects, f"{key}:aud": spec.audience}}
    else:
        condition = {"StringEquals": {"oidc:sub": subjects}}
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ServiceAccountWebIdentity",
                "Effect": "Allow",
                "Principal": {"Federated": spec.provider_arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": condition,
            }
        ],
    }


# The session tags EKS Pod Identity sets on every session it asks STS for.
POD_IDENTITY_NAMESPACE_TAG = "aws:RequestTag/kubernetes-namespace"
POD_IDENTITY_SERVICE_ACCOUNT_TAG = "aws:RequestTag/kubernetes-service-account"


def pod_identity_trust_policy(
    namespace: str | None = None, service_account: str | None = None
) -> Document:
    """Trust for EKS Pod Identity: the EKS pods service assumes the role and tags the session.

    With a namespace and service account, only sessions EKS tags with them are trusted: else
    any Pod Identity association in the account naming this role (another namespace's, another
    cluster's) would get its credentials.
    """
    statement: Document = {
        "Sid": "EksPodIdentity",
        "Effect": "Allow",
        "Principal": {"Service": "pods.eks.amazonaws.com"},
        "Action": ["sts:AssumeRole", "sts:TagSession"],
    }
    if namespace is not None and service_account is not None:
        statement["Condition"] = {
            "StringEquals": {
                POD_IDENTITY_NAMESPACE_TAG: namespace,
                POD_IDENTITY_SERVICE_ACCOUNT_TAG: service_account,
            }
        }
    return {"Version": "2012-10-17", "Statement": [statement]}


def permission_policy(
    bucket: str,
    prefixes: list[str] | tuple[str, ...],
    kms_key_arn: str | None = None,
    partition: str = "aws",
) -> Document:
    """Least privilege for the app: objects under its prefixes, listing of its bucket only.

    `s3:ListBucket` carries no plain `s3:prefix` condition: without ListBucket on the
    request's key AWS answers 403 instead of 404 for a missing key, and a plain prefix
    condition never matches a GET or HEAD (the key is absent from its context).
    """
    bucket_arn = f"arn:{partition}:s3:::{bucket}"
    object_arns = sorted({f"{bucket_arn}/{_prefix_pattern(p)}" for p in prefixes})
    statements: list[Document] = [
        {
            "Sid": "ListTheBucket",
            "Effect": "Allow",
            "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
            "Resource": bucket_arn,
        },
        {
            "Sid": "ObjectsUnderPrefixes",
            "Effect": "Allow",
            "Action": [
                "s3:GetObject",
                "s3:PutObject",
                "s3:DeleteObject",
                "s3:AbortMultipartUpload",
                "s3:ListMultipartUploadParts",
            ],
            "Resource": object_arns,
        },
    ]
    if kms_key_arn:
        statements.append(
            {
                "Sid": "BucketKmsKey",
                "Effect": "Allow",
                "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                "Resource": kms_key_arn,
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


def _prefix_pattern(prefix: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/*" if prefix else "*"
