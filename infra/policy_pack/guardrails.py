"""Satchel's guardrails as Pulumi policies: what the stack promises about its bucket, its role
and its ServiceAccount, checked on what a program declares (ours, a fork, or a user's edit).

Self-contained on purpose (the standard library and `pulumi_policy` only): the pack runs in a
virtualenv of its own, and may be published without this repository. It checks documents
independently of `infra/policies.py`, which renders them: a check that reused the renderer
would pass whatever the renderer got wrong.

Written for `pulumi preview` of a new stack, where ids and ARNs are not known yet (the SDK
drops a whole policy that reads an unknown value: "can't run during preview"):

- each resource is checked on its own (resource policies) on what it declares itself and is
  known at preview: the public-access flags, the ownership rule, the encryption rule, the
  versioning status, the statements of a bucket policy and of trust and permission documents
  (whenever they are known);
- only the joins are stack-wide ("every bucket has its protections", "the ServiceAccount's
  role trusts it"), and they join through `property_dependencies` (URNs, known at preview)
  rather than through ids or ARNs;
- an unknown value is caught where it is read, for that resource alone: what is unknown at
  preview is checked at `up`, and everything else still is at preview.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

STS_AUDIENCE = "sts.amazonaws.com"
POD_IDENTITY_SERVICE = "pods.eks.amazonaws.com"
NAMESPACE_TAG = "aws:RequestTag/kubernetes-namespace"
SERVICE_ACCOUNT_TAG = "aws:RequestTag/kubernetes-service-account"
IRSA_ANNOTATION = "eks.amazonaws.com/role-arn"

BUCKET = "aws:s3/bucket:Bucket"
BUCKET_V2 = "aws:s3/bucketV2:BucketV2"
BUCKETS = (BUCKET, BUCKET_V2)
OWNERSHIP = "aws:s3/bucketOwnershipControls:BucketOwnershipControls"
PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
ENCRYPTION = (
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
)
ENCRYPTION_V2 = (
    "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2"
)
VERSIONING = "aws:s3/bucketVersioning:BucketVersioning"
VERSIONING_V2 = "aws:s3/bucketVersioningV2:BucketVersioningV2"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
BUCKET_ACL = "aws:s3/bucketAcl:BucketAcl"
BUCKET_ACL_V2 = "aws:s3/bucketAclV2:BucketAclV2"
ROLE = "aws:iam/role:Role"
IAM_POLICY = "aws:iam/policy:Policy"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
ROLE_POLICY_ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
POLICY_ATTACHMENT = "aws:iam/policyAttachment:PolicyAttachment"
ROLE_POLICY_ATTACHMENTS_EXCLUSIVE = (
    "aws:iam/rolePolicyAttachmentsExclusive:RolePolicyAttachmentsExclusive"
)
POD_IDENTITY_ASSOCIATION = "aws:eks/podIdentityAssociation:PodIdentityAssociation"
SERVICE_ACCOUNT = "kubernetes:core/v1:ServiceAccount"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"

# What every bucket needs beside it: (what, the resource types that provide it, how to add it).
PROTECTIONS = (
    ("ownership controls", (OWNERSHIP,), "aws.s3.BucketOwnershipControls (BucketOwnerEnforced)"),
    ("a public access block", (PUBLIC_ACCESS_BLOCK,), "aws.s3.BucketPublicAccessBlock"),
    (
        "a default encryption configuration",
        (ENCRYPTION, ENCRYPTION_V2),
        "aws.s3.BucketServerSideEncryptionConfiguration",
    ),
    ("a versioning configuration", (VERSIONING, VERSIONING_V2), "aws.s3.BucketVersioning"),
    ("a bucket policy", (BUCKET_POLICY,), "aws.s3.BucketPolicy (the TLS-only deny)"),
)
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
_AWS_MANAGED = re.compile(r"^arn:aws[a-z-]*:iam::aws:policy/")
_S3_ARN = re.compile(r"^arn:(?P<partition>aws[a-z-]*):s3:::(?P<bucket>[^/]+)(?P<key>/.*)?\Z")
_WILDCARD = re.compile(r"[*?]")

Document = dict[str, Any]
_MISSING = object()


# Reading what the engine hands over: proxies (Mapping/Sequence) that raise on unknown values


def plain(value: Any) -> Any:
    """Proxied values as plain dicts and lists (an unknown value raises UnknownValueError)."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return {key: plain(value[key]) for key in value}
    if isinstance(value, Sequence):
        return [plain(item) for item in value]
    return value


def known(read: Callable[[], Any], default: Any = _MISSING) -> Any:
    """`read()` as plain values, or `default` (`_MISSING`) if any of it is unknown (preview)."""
    try:
        return plain(read())
    except UnknownValueError:
        return default


def item(mapping: Any, key: str, default: Any = None, missing: Any = _MISSING) -> Any:
    """`mapping.get(key, default)` as plain values, `missing` if it is unknown (preview)."""
    return known(lambda: mapping.get(key, default), missing)


def prop(resource: Any, key: str) -> Any:
    """A property of a resource (validation args or a stack's resource), `_MISSING` if unknown."""
    return known(lambda: resource.props.get(key))


def document(value: Any) -> Document | None:
    """An IAM document given as JSON text or as an object; None if it is neither (raises
    UnknownValueError if it is not known yet)."""
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


def _of_type(args: StackValidationArgs, *types: str) -> list[PolicyResource]:
    return [r for r in args.resources if r.resource_type in types]


def _depends_on(resource: PolicyResource, key: str, other: PolicyResource) -> bool:
    """Whether `resource`'s property `key` was computed from `other` (URNs: known at preview)."""
    deps = (resource.property_dependencies or {}).get(key) or []
    return any(dep.urn == other.urn for dep in deps)


def _protects(child: PolicyResource, bucket: PolicyResource) -> bool:
    """Whether `child` names `bucket` in its `bucket`: through the bucket's own output (a
    property dependency, known at preview), or as a literal name equal to the bucket's."""
    if _depends_on(child, "bucket", bucket):
        return True
    name, theirs = prop(child, "bucket"), prop(bucket, "bucket")
    return isinstance(name, str) and bool(name) and name == theirs


def _bucket_name(bucket: PolicyResource) -> str:
    name = prop(bucket, "bucket")
    return name if isinstance(name, str) and name else f"({bucket.name}, name not known yet)"


def _stack_policy(
    name: str,
    description: str,
    remediation: str,
    config_schema: PolicyConfigSchema | None = None,
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
            config_schema=config_schema,
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


# The bucket: each protection checked on its own resource


@_resource_policy(
    "s3-bucket-owner-enforced",
    "Ownership controls are BucketOwnerEnforced (ACLs off); no bucket sets an ACL or grants,"
    " no BucketAcl exists",
    "Declare aws.s3.BucketOwnershipControls for the bucket with"
    " rule={'object_ownership': 'BucketOwnerEnforced'} and remove any acl/grants on the bucket"
    " and any BucketAcl/BucketAclV2: access is granted by IAM policies only.",
)
def bucket_owner_enforced(args: ResourceValidationArgs, report: ReportViolation) -> None:
    typ = args.resource_type
    if typ == OWNERSHIP:
        rule = prop(args, "rule")
        if rule is not _MISSING and (rule or {}).get("objectOwnership") != "BucketOwnerEnforced":
            found = (rule or {}).get("objectOwnership")
            report(
                f"{args.name}: object ownership is {found!r}, not BucketOwnerEnforced: objects"
                " written with an ACL could belong to another account",
                None,
            )
    elif typ in BUCKETS:
        # AWS reports the owner's own grant on every bucket: only a canned ACL other than
        # private, or a grant to a group (AllUsers, AuthenticatedUsers), opens it.
        acl, grants = prop(args, "acl"), prop(args, "grants")
        groups = [
            g
            for g in listed(grants if grants is not _MISSING else None)
            if isinstance(g, dict) and g.get("type") == "Group"
        ]
        if acl not in (None, "", "private", _MISSING) or groups:
            report(f"bucket {args.name} sets an ACL; remove acl/grants (ACLs are off)", None)
    elif typ in (BUCKET_ACL, BUCKET_ACL_V2):
        acl = prop(args, "acl")
        shown = f" ({acl})" if isinstance(acl, str) else ""
        report(f"{args.name} is a bucket ACL{shown}; remove it (ACLs are off)", None)


def _public_statements(doc: Document) -> list[Document]:
    """Allow statements for anyone (`*` or {"AWS": "*"})."""
    found = []
    for statement in statements(doc):
        principal = statement.get("Principal")
        aws = principal.get("AWS") if isinstance(principal, dict) else principal
        if statement.get("Effect") == "Allow" and "*" in listed(aws):
            found.append(statement)
    return found


def _document(resource: Any, key: str) -> Document | object | None:
    """The document in a resource's property `key`: a document, None (none, or not a
    document), `_MISSING` (not known yet)."""
    doc: Document | object | None = known(lambda: document(resource.props.get(key)))
    return doc


def _policy_document(resource: Any) -> Document | object | None:
    """The `policy` of a bucket policy or a bucket (`_document`)."""
    return _document(resource, "policy")


@_resource_policy(
    "s3-bucket-public-access-blocked",
    "Public access blocks have all four flags true; no bucket policy (nor a bucket's own"
    " `policy`) allows anyone",
    "Declare aws.s3.BucketPublicAccessBlock for the bucket with block_public_acls,"
    " block_public_policy, ignore_public_acls and restrict_public_buckets all True, and remove"
    " bucket policy statements (aws.s3.BucketPolicy, or `policy` on the bucket itself) that"
    " Allow Principal '*'. Serve packages through the app (`satchel serve`), never from the"
    " bucket.",
)
def bucket_public_access_blocked(args: ResourceValidationArgs, report: ReportViolation) -> None:
    typ = args.resource_type
    if typ == PUBLIC_ACCESS_BLOCK:
        off = [flag for flag in PUBLIC_ACCESS_FLAGS if prop(args, flag) not in (True, _MISSING)]
        if off:
            report(f"{args.name}: public access block has {', '.join(off)} off", None)
    elif typ == BUCKET_POLICY or typ in BUCKETS:
        doc = _policy_document(args)
        if isinstance(doc, dict):
            for statement in _public_statements(doc):
                sid = statement.get("Sid", "(no Sid)")
                report(f"{args.name}: policy statement {sid} allows anyone", None)


@_resource_policy(
    "s3-bucket-default-encryption",
    "Default encryption is SSE-S3, or SSE-KMS with a key",
    "Declare aws.s3.BucketServerSideEncryptionConfiguration for the bucket with"
    " sse_algorithm 'AES256', or 'aws:kms' with kms_master_key_id (satchel:kmsKeyArn).",
)
def bucket_default_encryption(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in (ENCRYPTION, ENCRYPTION_V2):
        return
    rules = prop(args, "rules")
    if rules is _MISSING:
        return
    for rule in listed(rules):
        default = (rule or {}).get("applyServerSideEncryptionByDefault") or {}
        algorithm = default.get("sseAlgorithm")
        if algorithm == "AES256" or (
            algorithm in ("aws:kms", "aws:kms:dsse") and default.get("kmsMasterKeyId")
        ):
            return
    report(f"{args.name}: no rule encrypts with AES256, or with aws:kms and a key", None)


@_resource_policy(
    "s3-bucket-versioning-enabled",
    "Versioning is Enabled (an overwrite or delete can be undone)",
    "Set satchel:versioning true (aws.s3.BucketVersioning with status 'Enabled');"
    " noncurrentVersionExpirationDays bounds what old versions cost.",
)
def bucket_versioning_enabled(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in (VERSIONING, VERSIONING_V2):
        return
    config = prop(args, "versioningConfiguration")
    if config is _MISSING:
        return
    status = (config or {}).get("status")
    if status != "Enabled":
        report(f"{args.name}: versioning is {status or 'not configured'}", None)


def _denies_plain_http(statement: Document) -> bool:
    condition = statement.get("Condition") or {}
    secure = (condition.get("Bool") or {}).get("aws:SecureTransport")
    principal = statement.get("Principal")
    actions = set(listed(statement.get("Action")))
    return (
        statement.get("Effect") == "Deny"
        and (
            principal == "*"
            or (isinstance(principal, dict) and listed(principal.get("AWS")) == ["*"])
        )
        and bool(actions & {"s3:*", "*"})
        and str(secure).lower() == "false"
    )


def tls_problems(doc: Document, bucket: str | None = None) -> list[str]:
    """What a bucket policy leaves reachable without TLS: the union of its Deny statements
    (Principal '*', Action 's3:*' or '*', aws:SecureTransport false) must cover the bucket and
    its objects, for every bucket it names (and `bucket`, its own, when known)."""
    covered: set[str] = set()
    for statement in statements(doc):
        if _denies_plain_http(statement):
            covered.update(str(r) for r in listed(statement.get("Resource")))
    arns: dict[str, str] = {}  # bucket name -> its ARN
    for statement in statements(doc):
        for resource in listed(statement.get("Resource")):
            match = _S3_ARN.match(str(resource))
            if match:
                arns.setdefault(match["bucket"], f"arn:{match['partition']}:s3:::{match['bucket']}")
    if bucket and bucket not in arns:
        arns[bucket] = f"arn:aws:s3:::{bucket}"
    if not arns:
        return [] if covered else ["no statement denies requests without TLS"]
    problems = []
    for name, arn in sorted(arns.items()):
        parts = {arn: "the bucket", f"{arn}/*": "its objects"}
        missing = [
            f"{r} ({what})" for r, what in parts.items() if r not in covered and "*" not in covered
        ]
        if missing:
            problems.append(f"bucket {name}: no Deny without TLS covers {' and '.join(missing)}")
    return problems


@_resource_policy(
    "s3-bucket-tls-only",
    "Every bucket policy denies any request without TLS, on the bucket and its objects",
    "Attach an aws.s3.BucketPolicy with a statement (or statements) Effect Deny, Principal '*',"
    " Action 's3:*', Resource [BUCKET_ARN, BUCKET_ARN/*], Condition {'Bool':"
    " {'aws:SecureTransport': 'false'}}.",
)
def bucket_tls_only(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != BUCKET_POLICY and args.resource_type not in BUCKETS:
        return
    doc = _policy_document(args)
    if doc is _MISSING or (doc is None and args.resource_type in BUCKETS):
        return  # not known yet (checked at up), or no policy of its own (BucketPolicy's)
    name = prop(args, "bucket")
    for problem in tls_problems(
        doc if isinstance(doc, dict) else {}, name if isinstance(name, str) else None
    ):
        report(f"{args.name}: {problem}", None)


@_stack_policy(
    "s3-bucket-protections-attached",
    "Every bucket has its ownership controls, public access block, default encryption,"
    " versioning and bucket policy (joined through the bucket's own output, known at preview)",
    "Declare, for each aws.s3.Bucket/BucketV2, the resources named in the message with"
    " bucket=the_bucket.id (infra/components/bucket.py SecureBucket declares all five).",
)
def bucket_protections_attached(args: StackValidationArgs, report: ReportViolation) -> None:
    for bucket in _of_type(args, *BUCKETS):
        for what, types, how in PROTECTIONS:
            children = [r for r in _of_type(args, *types) if _protects(r, bucket)]
            if not children and what == "a bucket policy":
                # A policy set on the bucket itself counts (its content is checked on its own).
                inline = _policy_document(bucket)
                children = [bucket] if inline is _MISSING or isinstance(inline, dict) else []
            if not children:
                report(f"bucket {_bucket_name(bucket)} lacks {what}: declare {how}", bucket.urn)


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


def _trust(resource: Any) -> Document | object | None:
    """A role's trust document, None if it is none, `_MISSING` if not known yet."""
    return _document(resource, "assumeRolePolicy")


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
    doc = _trust(args)
    if doc is _MISSING:
        return  # not known yet (a provider this stack creates): checked at up
    if not isinstance(doc, dict):
        report(f"role {args.name}: the trust policy is not an IAM policy document", None)
        return
    if _is_pod_identity(doc):
        args.not_applicable("an EKS Pod Identity trust (iam-role-pod-identity-trust)")
    for problem in irsa_trust_problems(doc):
        report(f"role {args.name}: {problem}", None)


def pod_identity_trust_problems(
    doc: Document, namespace: str | None = None, service_account: str | None = None
) -> list[str]:
    """What makes a Pod Identity trust broader than one service account; with `namespace` and
    `service_account` (its association's), the session tags must name exactly them."""
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
    for key, expected in ((NAMESPACE_TAG, namespace), (SERVICE_ACCOUNT_TAG, service_account)):
        value = _exact(equals.get(key))
        if value is None:
            problems.append(
                f"no StringEquals on {key} (found {equals.get(key)!r}): any Pod Identity"
                " association naming this role would get its credentials"
            )
        elif expected is not None and value != expected:
            problems.append(
                f"{key} is {value!r}, but the association names {expected!r}: its pods would"
                f" be refused, and pods of {value!r} admitted"
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
    doc = _trust(args)
    if not isinstance(doc, dict) or not _is_pod_identity(doc):
        args.not_applicable("not an EKS Pod Identity trust (or not known yet)")
        return
    for problem in pod_identity_trust_problems(doc):
        report(f"role {args.name}: {problem}", None)


@_stack_policy(
    "iam-pod-identity-association-matches-trust",
    "A Pod Identity association's role trusts exactly the association's namespace and service"
    " account (the session tags EKS sets)",
    "Render the role's trust with StringEquals aws:RequestTag/kubernetes-namespace = the"
    " association's namespace and aws:RequestTag/kubernetes-service-account = its service"
    " account (satchel:namespace, satchel:serviceAccount; infra/policies.py"
    " pod_identity_trust_policy).",
)
def pod_identity_association_matches_trust(
    args: StackValidationArgs, report: ReportViolation
) -> None:
    roles = _of_type(args, ROLE)
    for association in _of_type(args, POD_IDENTITY_ASSOCIATION):
        namespace = prop(association, "namespace")
        account = prop(association, "serviceAccount")
        arn = prop(association, "roleArn")
        targets = [
            r
            for r in roles
            if _depends_on(association, "roleArn", r)
            or (isinstance(arn, str) and prop(r, "arn") == arn)
        ]
        for role in targets:
            doc = _trust(role)
            if not isinstance(doc, dict) or not _is_pod_identity(doc):
                continue
            ns = namespace if isinstance(namespace, str) else None
            sa = account if isinstance(account, str) else None
            for problem in pod_identity_trust_problems(doc, ns, sa):
                if "the association names" in problem:
                    report(f"role {role.name} ({association.name}): {problem}", association.urn)


# The role's permissions: every document the role gets, inline or attached


def _permission_documents(resource: Any) -> Iterator[tuple[str, Document | None]]:
    """(label, document) of each permission document a resource declares, known ones only
    (None: not a document)."""
    typ = resource.resource_type
    if typ in (IAM_POLICY, ROLE_POLICY):
        doc = _policy_document(resource)
        if doc is _MISSING:
            return  # not known yet: checked at up
        yield "", doc if isinstance(doc, dict) else None
    elif typ == ROLE:
        inline = prop(resource, "inlinePolicies")
        if inline is _MISSING:
            return
        for index, entry in enumerate(listed(inline)):
            if not isinstance(entry, dict) or entry.get("policy") in (None, ""):
                continue  # an empty block: "manage no inline policies"
            name = entry.get("name") or f"#{index}"
            yield f"inline policy {name}: ", document(entry["policy"])


def _policy_label(args: ResourceValidationArgs | PolicyResource) -> str:
    typ = getattr(args, "resource_type", "")
    return {ROLE: "role", ROLE_POLICY: "role policy"}.get(typ, "policy")


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
    "The IAM policies (aws.iam.Policy, aws.iam.RolePolicy, a Role's inline_policies) grant no"
    " `*` action and no `*` resource",
    "List each action the app needs (s3:GetObject, s3:PutObject, ...) on the bucket's ARN and"
    " its prefixes' ARNs (arn:aws:s3:::BUCKET/PREFIX/*); infra/policies.py permission_policy"
    " renders them.",
)
def iam_policy_no_wildcards(args: ResourceValidationArgs, report: ReportViolation) -> None:
    label = _policy_label(args)
    for where, doc in _permission_documents(args):
        if doc is None:
            report(f"{label} {args.name}: {where}the policy is not an IAM policy document", None)
            continue
        for problem in wildcard_problems(doc):
            report(f"{label} {args.name}: {where}{problem}", None)


def _attached_arns(resource: Any) -> list[str]:
    typ = resource.resource_type
    if typ == ROLE:
        value = prop(resource, "managedPolicyArns")
    elif typ in (ROLE_POLICY_ATTACHMENT, POLICY_ATTACHMENT):
        value = prop(resource, "policyArn")
    elif typ == ROLE_POLICY_ATTACHMENTS_EXCLUSIVE:
        value = prop(resource, "policyArns")
    else:
        return []
    return [str(a) for a in listed(None if value is _MISSING else value) if isinstance(a, str)]


@_resource_policy(
    "iam-role-no-aws-managed-policies",
    "No role gets an AWS-managed policy (arn:aws:iam::aws:policy/...): their grants are"
    " account-wide (AmazonS3FullAccess is s3:* on *) and this pack cannot check them",
    "Remove the AWS-managed policy from managed_policy_arns, RolePolicyAttachment,"
    " PolicyAttachment or RolePolicyAttachmentsExclusive; grant what the app needs with an"
    " aws.iam.Policy of this stack (infra/policies.py permission_policy), which this pack checks.",
)
def iam_role_no_aws_managed_policies(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for arn in _attached_arns(args):
        if _AWS_MANAGED.match(arn):
            report(f"{args.name} attaches the AWS-managed policy {arn}", None)


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


def _scopes(args: StackValidationArgs) -> Iterable[tuple[str | None, list[str] | None, str]]:
    """(bucket, prefixes, where they come from): the pack's config (`bucket`, `prefixes`), else
    each ConfigMap holding the app's env; None for what is not known yet (preview)."""
    config = args.get_config() or {}
    if config.get("prefixes"):
        bucket = config.get("bucket")
        yield (str(bucket) if bucket else None), [str(p) for p in config["prefixes"]], "config"
        return
    for config_map in _of_type(args, CONFIG_MAP):
        source = f"ConfigMap {config_map.name}"
        try:
            data = config_map.props.get("data")
            if data is None or BUCKET_VAR not in data:
                continue
        except UnknownValueError:
            # Its data is computed from unknowns (a generated bucket name): is it the app's
            # env? Its bucket property dependency says so.
            if any(r.resource_type in BUCKETS for r in _all_dependencies(config_map, "data")):
                yield None, None, source
            continue
        bucket = item(data, BUCKET_VAR, missing=None)
        values = [item(data, var, "", missing=None) for var in PREFIX_VARS]
        prefixes = None if None in values else [str(value) for value in values]
        yield (str(bucket) if bucket else None), prefixes, source


def _all_dependencies(resource: PolicyResource, key: str) -> list[PolicyResource]:
    return list((resource.property_dependencies or {}).get(key) or [])


@_stack_policy(
    "iam-policy-scoped-to-prefixes",
    "Object actions only under the configured prefixes, s3:ListBucket only on the bucket",
    "Grant object actions on arn:aws:s3:::BUCKET/PREFIX/* for exactly the prefixes of the app's"
    " env (satchel:storagePrefix, artifactPrefix, mirrorMetaPrefix, mirrorDistPrefix; none"
    " empty) and s3:ListBucket / s3:GetBucketLocation on arn:aws:s3:::BUCKET alone. A stack"
    " without the app's ConfigMap (STORAGE_AWS_BUCKET) names them in the pack's config:"
    ' {"iam-policy-scoped-to-prefixes": {"bucket": "BUCKET", "prefixes": ["p1", "p2"]}}.',
    config_schema=PolicyConfigSchema(
        properties={
            "bucket": {"type": "string", "minLength": 3},
            "prefixes": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        }
    ),
)
def iam_policy_scoped_to_prefixes(args: StackValidationArgs, report: ReportViolation) -> None:
    scopes = list(_scopes(args))
    if not scopes:
        report(
            "no ConfigMap holds the app's env (STORAGE_AWS_BUCKET) and the pack's config names"
            " no prefixes: the IAM policies' scope cannot be checked. Set the pack's config"
            ' {"iam-policy-scoped-to-prefixes": {"bucket": ..., "prefixes": [...]}}',
            None,
        )
        return
    documents = [
        (resource, where, doc)
        for resource in _of_type(args, IAM_POLICY, ROLE_POLICY, ROLE)
        for where, doc in _permission_documents(resource)
        if doc is not None
    ]
    for bucket, prefixes, source in scopes:
        if prefixes is None:
            continue  # not known yet: checked at up
        empty = [p for p in prefixes if not p.strip("/")]
        if empty:
            report(
                f"{source}: {len(empty)} of the app's prefixes are empty: the app's storage"
                " would be the whole bucket",
                None,
            )
        if bucket is None:
            continue  # not known yet (a generated bucket name): checked at up
        for resource, where, doc in documents:
            for problem in scope_problems(doc, bucket, prefixes):
                label = _policy_label(resource)
                report(f"{label} {resource.name}: {where}{problem}", resource.urn)


# The ServiceAccount


def _trust_subject(role: PolicyResource) -> str | None:
    """The one exact subject the role's trust names, if it names one (a wildcard or several
    are iam-role-irsa-trust's to report)."""
    doc = _trust(role)
    for statement in statements(doc) if isinstance(doc, dict) else []:
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
        (prop(a, "namespace"), prop(a, "serviceAccount"))
        for a in _of_type(args, POD_IDENTITY_ASSOCIATION)
    }
    roles = _of_type(args, ROLE)
    for account in _of_type(args, SERVICE_ACCOUNT):
        try:
            metadata = account.props.get("metadata") or {}
            namespace = item(metadata, "namespace", "default")
            name = item(metadata, "name")
            annotations = metadata.get("annotations") or {}
            has_annotation = IRSA_ANNOTATION in annotations
        except UnknownValueError:
            continue  # its metadata is not known yet: checked at up
        if (namespace, name) in associated:
            continue
        shown = f"{namespace}/{name}"
        if not has_annotation:
            report(f"ServiceAccount {shown} has no {IRSA_ANNOTATION}", account.urn)
            continue
        arn = item(annotations, IRSA_ANNOTATION)
        if arn is _MISSING:
            # Not known yet: the roles it was computed from (URNs, known at preview).
            targets = [r for r in roles if _depends_on(account, "metadata", r)]
            if not targets:
                report(
                    f"ServiceAccount {shown}: {IRSA_ANNOTATION} names no role of this stack",
                    account.urn,
                )
                continue
        else:
            targets = [r for r in roles if prop(r, "arn") == arn]
            if not arn or not targets:
                report(f"ServiceAccount {shown}: {arn} is no role of this stack", account.urn)
                continue
        subject = f"system:serviceaccount:{namespace}:{name}"
        for role in targets:
            trusted = _trust_subject(role)
            if trusted not in (None, subject):
                report(
                    f"ServiceAccount {shown}: role {role.name} trusts {trusted!r}, not {subject}",
                    account.urn,
                )


POLICIES = [
    bucket_owner_enforced,
    bucket_public_access_blocked,
    bucket_default_encryption,
    bucket_versioning_enabled,
    bucket_tls_only,
    bucket_protections_attached,
    iam_role_irsa_trust,
    iam_role_pod_identity_trust,
    pod_identity_association_matches_trust,
    iam_policy_no_wildcards,
    iam_role_no_aws_managed_policies,
    iam_policy_scoped_to_prefixes,
    service_account_role_annotated,
]
