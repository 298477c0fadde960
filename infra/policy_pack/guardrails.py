"""Satchel's guardrails as Pulumi policies: what the stack promises about its bucket, its role
and its ServiceAccount, checked on what a program declares (ours, a fork, or a user's edit).

Self-contained on purpose (the standard library and `pulumi_policy` only): the pack runs in a
virtualenv of its own, and may be published without this repository. It checks documents
independently of `infra/policies.py`, which renders them: a check that reused the renderer
would pass whatever the renderer got wrong.

Resource policies see a resource's inputs; stack policies see every resource's outputs, for
rules that need two resources (a bucket and its protections, a role and its ServiceAccount).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

STS_AUDIENCE = "sts.amazonaws.com"
POD_IDENTITY_SERVICE = "pods.eks.amazonaws.com"
NAMESPACE_TAG = "aws:RequestTag/kubernetes-namespace"
SERVICE_ACCOUNT_TAG = "aws:RequestTag/kubernetes-service-account"
IRSA_ANNOTATION = "eks.amazonaws.com/role-arn"

BUCKET = "aws:s3/bucket:Bucket"
OWNERSHIP = "aws:s3/bucketOwnershipControls:BucketOwnershipControls"
PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
ENCRYPTION = (
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
)
VERSIONING = "aws:s3/bucketVersioning:BucketVersioning"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
BUCKET_ACL = "aws:s3/bucketAcl:BucketAcl"
ROLE = "aws:iam/role:Role"
IAM_POLICY = "aws:iam/policy:Policy"
POD_IDENTITY_ASSOCIATION = "aws:eks/podIdentityAssociation:PodIdentityAssociation"
SERVICE_ACCOUNT = "kubernetes:core/v1:ServiceAccount"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"

PUBLIC_ACCESS_FLAGS = (
    "blockPublicAcls",
    "blockPublicPolicy",
    "ignorePublicAcls",
    "restrictPublicBuckets",
)
BUCKET_ACTIONS = frozenset({"s3:ListBucket", "s3:GetBucketLocation"})
OBJECT_ACTIONS = frozenset(
    {
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:AbortMultipartUpload",
        "s3:ListMultipartUploadParts",
    }
)
# The env keys (the app's ConfigMap) naming the bucket and the four prefixes.
BUCKET_VAR = "STORAGE_AWS_BUCKET"
PREFIX_VARS = (
    "STORAGE_AWS_PREFIX",
    "STORAGE_AWS_ARTIFACT_PREFIX",
    "STORAGE_AWS_MIRROR_META_PREFIX",
    "STORAGE_AWS_MIRROR_DIST_PREFIX",
)
_SUBJECT = re.compile(
    r"^system:serviceaccount:[a-z0-9]([-a-z0-9]*[a-z0-9])?:[a-z0-9]([-a-z0-9.]*[a-z0-9])?\Z"
)
_PROVIDER_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:oidc-provider/(?P<issuer>.+)\Z")
_WILDCARD = re.compile(r"[*?]")

Document = dict[str, Any]


# Reading what the engine hands over: proxies (Mapping/Sequence) that raise on unknown values


def plain(value: Any) -> Any:
    """Proxied values as plain dicts and lists (an unknown value raises, and the engine then
    reports that the policy can't run during preview)."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return {key: plain(value[key]) for key in value}
    if isinstance(value, Sequence):
        return [plain(item) for item in value]
    return value


def document(value: Any) -> Document | None:
    """An IAM document given as JSON text or as an object; None if it is neither."""
    value = plain(value)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    return value if isinstance(value, dict) else None


def listed(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def statements(doc: Document) -> list[Document]:
    return [s for s in listed(doc.get("Statement")) if isinstance(s, dict)]


def _of_type(args: StackValidationArgs, typ: str) -> list[PolicyResource]:
    return [r for r in args.resources if r.resource_type == typ]


def _for_bucket(
    args: StackValidationArgs, typ: str, bucket: PolicyResource
) -> list[PolicyResource]:
    """The resources of a type that name the bucket in their `bucket` (its id: its name)."""
    name = bucket.props.get("bucket")
    return [r for r in _of_type(args, typ) if r.props.get("bucket") == name]


def _buckets(args: StackValidationArgs) -> Iterator[tuple[PolicyResource, str]]:
    for bucket in _of_type(args, BUCKET):
        yield bucket, str(bucket.props.get("bucket"))


def _stack_policy(
    name: str, description: str, remediation: str
) -> Callable[[Callable[[StackValidationArgs, ReportViolation], None]], StackValidationPolicy]:
    def build(
        check: Callable[[StackValidationArgs, ReportViolation], None],
    ) -> StackValidationPolicy:
        return StackValidationPolicy(
            name=name,
            description=description,
            validate=check,
            enforcement_level=EnforcementLevel.MANDATORY,
            remediation_steps=remediation,
        )

    return build


def _resource_policy(
    name: str, description: str, remediation: str
) -> Callable[
    [Callable[[ResourceValidationArgs, ReportViolation], None]], ResourceValidationPolicy
]:
    def build(
        check: Callable[[ResourceValidationArgs, ReportViolation], None],
    ) -> ResourceValidationPolicy:
        return ResourceValidationPolicy(
            name=name,
            description=description,
            validate=check,
            enforcement_level=EnforcementLevel.MANDATORY,
            remediation_steps=remediation,
        )

    return build


# The bucket


@_stack_policy(
    "s3-bucket-owner-enforced",
    "Every bucket has ObjectOwnership BucketOwnerEnforced (ACLs off) and no ACL",
    "Declare aws.s3.BucketOwnershipControls for the bucket with"
    " rule={'object_ownership': 'BucketOwnerEnforced'} and remove any acl/grants or BucketAcl:"
    " access is granted by IAM policies only.",
)
def bucket_owner_enforced(args: StackValidationArgs, report: ReportViolation) -> None:
    for bucket, name in _buckets(args):
        # AWS reports the owner's own grant on every bucket: only a canned ACL other than
        # private, or a grant to a group (AllUsers, AuthenticatedUsers), opens it.
        acl = plain(bucket.props.get("acl"))
        groups = [
            g for g in listed(plain(bucket.props.get("grants"))) if (g or {}).get("type") == "Group"
        ]
        if acl not in (None, "", "private") or groups:
            report(f"bucket {name} sets an ACL; remove acl/grants (ACLs are off)", bucket.urn)
        for acl in _for_bucket(args, BUCKET_ACL, bucket):
            report(f"bucket {name} has a BucketAcl; remove it (ACLs are off)", acl.urn)
        rules = [plain(c.props.get("rule")) or {} for c in _for_bucket(args, OWNERSHIP, bucket)]
        if not any(rule.get("objectOwnership") == "BucketOwnerEnforced" for rule in rules):
            report(
                f"bucket {name} has no BucketOwnershipControls with BucketOwnerEnforced:"
                " objects written with an ACL could belong to another account",
                bucket.urn,
            )


def _public_statements(doc: Document) -> list[Document]:
    """Allow statements for anyone (`*` or {"AWS": "*"})."""
    found = []
    for statement in statements(doc):
        principal = statement.get("Principal")
        aws = principal.get("AWS") if isinstance(principal, dict) else principal
        if statement.get("Effect") == "Allow" and "*" in listed(aws):
            found.append(statement)
    return found


@_stack_policy(
    "s3-bucket-public-access-blocked",
    "Every bucket has all four public-access-block flags true and no policy allowing anyone",
    "Declare aws.s3.BucketPublicAccessBlock for the bucket with block_public_acls,"
    " block_public_policy, ignore_public_acls and restrict_public_buckets all True, and remove"
    " bucket policy statements that Allow Principal '*'. Serve packages through the app"
    " (`satchel serve`), never from the bucket.",
)
def bucket_public_access_blocked(args: StackValidationArgs, report: ReportViolation) -> None:
    for bucket, name in _buckets(args):
        blocks = _for_bucket(args, PUBLIC_ACCESS_BLOCK, bucket)
        if not blocks:
            report(f"bucket {name} has no BucketPublicAccessBlock", bucket.urn)
        for block in blocks:
            off = [flag for flag in PUBLIC_ACCESS_FLAGS if block.props.get(flag) is not True]
            if off:
                report(f"bucket {name}: public access block has {', '.join(off)} off", block.urn)
        for policy in _for_bucket(args, BUCKET_POLICY, bucket):
            doc = document(policy.props.get("policy")) or {}
            for statement in _public_statements(doc):
                sid = statement.get("Sid", "(no Sid)")
                report(f"bucket {name}: policy statement {sid} allows anyone", policy.urn)


@_stack_policy(
    "s3-bucket-default-encryption",
    "Every bucket encrypts by default (SSE-S3, or SSE-KMS with a key)",
    "Declare aws.s3.BucketServerSideEncryptionConfiguration for the bucket with"
    " sse_algorithm 'AES256', or 'aws:kms' with kms_master_key_id (satchel:kmsKeyArn).",
)
def bucket_default_encryption(args: StackValidationArgs, report: ReportViolation) -> None:
    for bucket, name in _buckets(args):
        good = False
        for config in _for_bucket(args, ENCRYPTION, bucket):
            for rule in listed(plain(config.props.get("rules"))):
                default = (rule or {}).get("applyServerSideEncryptionByDefault") or {}
                algorithm = default.get("sseAlgorithm")
                if algorithm == "AES256" or (
                    algorithm in ("aws:kms", "aws:kms:dsse") and default.get("kmsMasterKeyId")
                ):
                    good = True
        if not good:
            report(f"bucket {name} has no default encryption", bucket.urn)


@_stack_policy(
    "s3-bucket-versioning-enabled",
    "Every bucket keeps object versions (an overwrite or delete can be undone)",
    "Set satchel:versioning true (aws.s3.BucketVersioning with status 'Enabled');"
    " noncurrentVersionExpirationDays bounds what old versions cost.",
)
def bucket_versioning_enabled(args: StackValidationArgs, report: ReportViolation) -> None:
    for bucket, name in _buckets(args):
        statuses = [
            (plain(v.props.get("versioningConfiguration")) or {}).get("status")
            for v in _for_bucket(args, VERSIONING, bucket)
        ]
        if "Enabled" not in statuses:
            shown = ", ".join(str(s) for s in statuses) or "not configured"
            report(f"bucket {name}: versioning is {shown}", bucket.urn)


def _denies_plain_http(statement: Document, bucket_arn: str) -> bool:
    condition = statement.get("Condition") or {}
    secure = (condition.get("Bool") or {}).get("aws:SecureTransport")
    principal = statement.get("Principal")
    return (
        statement.get("Effect") == "Deny"
        and (
            principal == "*"
            or (isinstance(principal, dict) and listed(principal.get("AWS")) == ["*"])
        )
        and "s3:*" in listed(statement.get("Action"))
        and {bucket_arn, f"{bucket_arn}/*"} <= set(listed(statement.get("Resource")))
        and str(secure).lower() == "false"
    )


@_stack_policy(
    "s3-bucket-tls-only",
    "Every bucket's policy denies any request without TLS",
    "Attach an aws.s3.BucketPolicy with a statement: Effect Deny, Principal '*', Action 's3:*',"
    " Resource [BUCKET_ARN, BUCKET_ARN/*], Condition {'Bool': {'aws:SecureTransport': 'false'}}.",
)
def bucket_tls_only(args: StackValidationArgs, report: ReportViolation) -> None:
    for bucket, name in _buckets(args):
        arn = str(bucket.props.get("arn") or f"arn:aws:s3:::{name}")
        docs = [
            document(p.props.get("policy")) or {} for p in _for_bucket(args, BUCKET_POLICY, bucket)
        ]
        if not any(_denies_plain_http(s, arn) for doc in docs for s in statements(doc)):
            report(f"bucket {name}: no policy statement denies requests without TLS", bucket.urn)


# The role's trust


def _is_pod_identity(doc: Document) -> bool:
    principals = [s.get("Principal") for s in statements(doc)]
    return bool(principals) and all(
        isinstance(p, dict) and set(p) == {"Service"} for p in principals
    )


def _exact(value: Any) -> str | None:
    """A single literal string (no list, no IAM wildcard), else None."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, str) and not _WILDCARD.search(value):
        return value
    return None


def irsa_trust_problems(doc: Document) -> list[str]:
    """What makes a web-identity trust broader than one service account of one issuer."""
    found = statements(doc)
    if len(found) != 1:
        return [f"the trust policy has {len(found)} statements; it must have exactly one"]
    (statement,) = found
    problems = []
    principal = statement.get("Principal")
    principal = principal if isinstance(principal, dict) else {}
    federated = principal.get("Federated")
    match = _PROVIDER_ARN.match(federated) if isinstance(federated, str) else None
    if statement.get("Effect") != "Allow" or match is None or set(principal) != {"Federated"}:
        return [
            "the trust is neither web identity for one IAM OIDC provider (Principal.Federated"
            " an oidc-provider ARN) nor EKS Pod Identity"
        ]
    if listed(statement.get("Action")) != ["sts:AssumeRoleWithWebIdentity"]:
        problems.append("the only action must be sts:AssumeRoleWithWebIdentity")
    issuer = match["issuer"]
    condition = statement.get("Condition") or {}
    if set(condition) != {"StringEquals"}:
        problems.append(
            f"conditions must be StringEquals only (found {', '.join(sorted(condition)) or 'none'})"
        )
    equals = condition.get("StringEquals") or {}
    elsewhere = {k: v for op in condition.values() if isinstance(op, dict) for k, v in op.items()}
    subject = _exact(equals.get(f"{issuer}:sub"))
    if subject is None or not _SUBJECT.match(subject):
        problems.append(
            f"{issuer}:sub must be exactly one system:serviceaccount:NAMESPACE:NAME, without"
            f" wildcards, under StringEquals (found {elsewhere.get(f'{issuer}:sub')!r})"
        )
    if _exact(equals.get(f"{issuer}:aud")) != STS_AUDIENCE:
        problems.append(
            f"{issuer}:aud must be {STS_AUDIENCE} (found {elsewhere.get(f'{issuer}:aud')!r}):"
            " without it a token minted for any other audience is accepted"
        )
    others = set(equals) - {f"{issuer}:sub", f"{issuer}:aud"}
    if others:
        problems.append(f"unexpected condition keys {sorted(others)} (another issuer's?)")
    return problems


@_resource_policy(
    "iam-role-irsa-trust",
    "A web-identity trust admits one OIDC provider, StringEquals on :sub (one service account)"
    " and :aud (sts.amazonaws.com)",
    "Use a trust policy with one statement: Principal {'Federated': the cluster's"
    " oidc-provider ARN}, Action sts:AssumeRoleWithWebIdentity, Condition {'StringEquals':"
    " {'ISSUER:sub': 'system:serviceaccount:NS:SA', 'ISSUER:aud': 'sts.amazonaws.com'}}"
    " (infra/policies.py trust_policy renders it).",
)
def iam_role_irsa_trust(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != ROLE:
        return
    doc = document(args.props.get("assumeRolePolicy"))
    if doc is None:
        report("the trust policy is not an IAM policy document", None)
        return
    if _is_pod_identity(doc):
        args.not_applicable("an EKS Pod Identity trust (iam-role-pod-identity-trust)")
    for problem in irsa_trust_problems(doc):
        report(f"role {args.name}: {problem}", None)


def pod_identity_trust_problems(doc: Document) -> list[str]:
    found = statements(doc)
    if len(found) != 1:
        return [f"the trust policy has {len(found)} statements; it must have exactly one"]
    (statement,) = found
    problems = []
    if statement.get("Effect") != "Allow" or statement.get("Principal") != {
        "Service": POD_IDENTITY_SERVICE
    }:
        problems.append(f"the only principal must be the service {POD_IDENTITY_SERVICE}")
    if sorted(listed(statement.get("Action"))) != ["sts:AssumeRole", "sts:TagSession"]:
        problems.append("the actions must be exactly sts:AssumeRole and sts:TagSession")
    condition = statement.get("Condition") or {}
    equals = condition.get("StringEquals") or {}
    for key in (NAMESPACE_TAG, SERVICE_ACCOUNT_TAG):
        if _exact(equals.get(key)) is None:
            problems.append(
                f"no StringEquals on {key} (found {equals.get(key)!r}): any Pod Identity"
                " association naming this role would get its credentials"
            )
    operators = sorted(set(condition) - {"StringEquals", "ArnEquals"})
    if operators:
        problems.append(f"unexpected condition operators {operators}")
    return problems


@_resource_policy(
    "iam-role-pod-identity-trust",
    "A Pod Identity trust admits only pods.eks.amazonaws.com, for sts:AssumeRole and"
    " sts:TagSession, for sessions tagged with one namespace and service account",
    "Trust Principal {'Service': 'pods.eks.amazonaws.com'} with Action ['sts:AssumeRole',"
    " 'sts:TagSession'] and Condition {'StringEquals': {'aws:RequestTag/kubernetes-namespace':"
    " NS, 'aws:RequestTag/kubernetes-service-account': SA}} (satchel:podIdentityTrustConditions"
    " true renders it).",
)
def iam_role_pod_identity_trust(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != ROLE:
        return
    doc = document(args.props.get("assumeRolePolicy"))
    if doc is None or not _is_pod_identity(doc):
        args.not_applicable("not an EKS Pod Identity trust")
        return
    for problem in pod_identity_trust_problems(doc):
        report(f"role {args.name}: {problem}", None)


# The role's permissions


def wildcard_problems(doc: Document) -> list[str]:
    problems = []
    for statement in statements(doc):
        sid = statement.get("Sid", "(no Sid)")
        if statement.get("Effect") != "Allow":
            continue
        for key in ("NotAction", "NotResource"):
            if key in statement:
                problems.append(f"statement {sid} uses {key}, which grants everything else")
        for action in listed(statement.get("Action")):
            if _WILDCARD.search(str(action)):
                problems.append(f"statement {sid} grants the wildcard action {action!r}")
        for resource in listed(statement.get("Resource")):
            # The only wildcard: "every key under a prefix" (the ARN's trailing /*).
            if _WILDCARD.search(str(resource).removesuffix("/*")):
                problems.append(f"statement {sid} grants on the wildcard resource {resource!r}")
    return problems


@_resource_policy(
    "iam-policy-no-wildcards",
    "The app's IAM policies grant no `*` action and no `*` resource",
    "List each action the app needs (s3:GetObject, s3:PutObject, ...) on the bucket's ARN and"
    " its prefixes' ARNs (arn:aws:s3:::BUCKET/PREFIX/*); infra/policies.py permission_policy"
    " renders them.",
)
def iam_policy_no_wildcards(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != IAM_POLICY:
        return
    doc = document(args.props.get("policy"))
    if doc is None:
        report("the policy is not an IAM policy document", None)
        return
    for problem in wildcard_problems(doc):
        report(f"policy {args.name}: {problem}", None)


def scope_problems(doc: Document, bucket: str, prefixes: Sequence[str]) -> list[str]:
    """S3 grants outside `bucket` (listing) and its `prefixes` (objects)."""
    problems = []
    allowed_objects = {p.strip("/") for p in prefixes}
    for statement in statements(doc):
        sid = statement.get("Sid", "(no Sid)")
        # Wildcard actions are iam-policy-no-wildcards' to report.
        actions = {
            a
            for a in listed(statement.get("Action"))
            if str(a).startswith("s3:") and not _WILDCARD.search(str(a))
        }
        if statement.get("Effect") != "Allow" or not actions:
            continue
        for resource in listed(statement.get("Resource")):
            arn = str(resource)
            service, _, path = arn.partition(":s3:::")
            name, slash, key = path.partition("/")
            if not service.startswith("arn:aws") or name != bucket:
                problems.append(f"statement {sid} grants S3 on {arn}, not on the bucket {bucket}")
            elif not slash:
                extra = sorted(actions - BUCKET_ACTIONS)
                if extra:
                    problems.append(f"statement {sid} grants {extra} on the bucket itself")
            else:
                prefix = key.removesuffix("/*").strip("/") if key.endswith("/*") else None
                if not prefix or prefix not in allowed_objects:
                    problems.append(
                        f"statement {sid} grants objects under {key!r}, not under the"
                        f" configured prefixes {sorted(allowed_objects)}"
                    )
                extra = sorted(actions - OBJECT_ACTIONS)
                if extra:
                    problems.append(f"statement {sid} grants {extra} on objects")
    return problems


@_stack_policy(
    "iam-policy-scoped-to-prefixes",
    "Object actions only under the configured prefixes, s3:ListBucket only on the bucket",
    "Grant object actions on arn:aws:s3:::BUCKET/PREFIX/* for exactly the prefixes of the app's"
    " env (satchel:storagePrefix, artifactPrefix, mirrorMetaPrefix, mirrorDistPrefix; none"
    " empty) and s3:ListBucket / s3:GetBucketLocation on arn:aws:s3:::BUCKET alone.",
)
def iam_policy_scoped_to_prefixes(args: StackValidationArgs, report: ReportViolation) -> None:
    envs = [plain(c.props.get("data")) or {} for c in _of_type(args, CONFIG_MAP)]
    envs = [env for env in envs if BUCKET_VAR in env]
    if not envs:
        args.not_applicable("no ConfigMap with the app's env (STORAGE_AWS_BUCKET) in the stack")
    for env in envs:
        prefixes = [str(env.get(var, "")) for var in PREFIX_VARS]
        for policy in _of_type(args, IAM_POLICY):
            doc = document(policy.props.get("policy")) or {}
            for problem in scope_problems(doc, str(env[BUCKET_VAR]), prefixes):
                report(f"policy {policy.name}: {problem}", policy.urn)
        for empty in [
            var for var, prefix in zip(PREFIX_VARS, prefixes, strict=True) if not prefix.strip("/")
        ]:
            report(f"{empty} is empty: the app's storage would be the whole bucket", None)


# The ServiceAccount


def _trust_subject(role: PolicyResource) -> str | None:
    """The one exact subject the role's trust names, if it names one (a wildcard or several
    are iam-role-irsa-trust's to report)."""
    doc = document(role.props.get("assumeRolePolicy")) or {}
    for statement in statements(doc):
        for operator in ("StringEquals", "StringLike"):
            for key, value in ((statement.get("Condition") or {}).get(operator) or {}).items():
                if key.endswith(":sub"):
                    return _exact(value)
    return None


@_stack_policy(
    "k8s-service-account-role-annotated",
    "The app's ServiceAccount is annotated with the ARN of the stack's web-identity role for"
    " it (irsa), or named by a Pod Identity association (pod-identity)",
    "Annotate the ServiceAccount with eks.amazonaws.com/role-arn: the role's ARN (the role"
    " whose trust names system:serviceaccount:NS:SA), or associate it with"
    " aws.eks.PodIdentityAssociation (satchel:identityMode pod-identity).",
)
def service_account_role_annotated(args: StackValidationArgs, report: ReportViolation) -> None:
    associated = {
        (str(a.props.get("namespace")), str(a.props.get("serviceAccount")))
        for a in _of_type(args, POD_IDENTITY_ASSOCIATION)
    }
    roles = {str(r.props.get("arn")): r for r in _of_type(args, ROLE)}
    for account in _of_type(args, SERVICE_ACCOUNT):
        metadata = plain(account.props.get("metadata")) or {}
        namespace, name = str(metadata.get("namespace", "default")), str(metadata.get("name"))
        if (namespace, name) in associated:
            continue
        arn = (metadata.get("annotations") or {}).get(IRSA_ANNOTATION)
        subject = f"system:serviceaccount:{namespace}:{name}"
        if not arn:
            report(f"ServiceAccount {namespace}/{name} has no {IRSA_ANNOTATION}", account.urn)
        elif arn not in roles:
            report(
                f"ServiceAccount {namespace}/{name}: {arn} is no role of this stack", account.urn
            )
        elif _trust_subject(roles[arn]) not in (None, subject):
            report(
                f"ServiceAccount {namespace}/{name}: role {arn} trusts"
                f" {_trust_subject(roles[arn])!r}, not {subject}",
                account.urn,
            )


POLICIES = [
    bucket_owner_enforced,
    bucket_public_access_blocked,
    bucket_default_encryption,
    bucket_versioning_enabled,
    bucket_tls_only,
    iam_role_irsa_trust,
    iam_role_pod_identity_trust,
    iam_policy_no_wildcards,
    iam_policy_scoped_to_prefixes,
    service_account_role_annotated,
]
