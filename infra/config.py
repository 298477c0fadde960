"""The stack config: one schema for `pulumi up` and for the local target.

`Pulumi.<stack>.yaml` holds `config:` keys namespaced by project (`satchel:namespace`) or by
provider (`aws:region`). `StackConfig` validates them before any resource is declared: an
unknown or mistyped key fails with its own name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from infra.cache_layout import cache_bounds, parse_quantity
from runtime.app.upstream_auth import parse_auth_json
from runtime.errors import ConfigError

PROJECT = "satchel"
ROOT = Path(__file__).resolve().parent.parent

# \Z, not $: `$` also matches before a trailing newline.
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
# No `*`: in the policy's `arn:aws:s3:::BUCKET/PREFIX/*` it would be an IAM wildcard.
_PREFIX = re.compile(r"^[A-Za-z0-9!_.'()/-]*\Z")
# A KMS key ARN: arn:PARTITION:kms:REGION:ACCOUNT:key/ID, ID a UUID or a multi-region `mrk-` id.
_KMS_KEY_ARN = re.compile(
    r"^arn:aws[a-z-]*:kms:(?P<region>[a-z0-9-]+):\d{12}:key/"
    r"(mrk-[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\Z"
)
# An IAM managed policy's ARN (a permissions boundary): customer-managed or AWS-managed.
_POLICY_ARN = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}|aws):policy/[\w+=,.@/-]{1,1000}\Z")
# IAM's own rule for paths: "/" or "/.../" of printable ASCII, at most 512 characters.
_IAM_PATH = re.compile(r"^/([\x21-\x7e]{1,510}/)?\Z")
MIN_SESSION, MAX_SESSION = 3600, 43200  # IAM's bounds of a role's MaxSessionDuration
# AWS tags: keys 1-128, values 0-256 characters of letters, digits, spaces and _.:/=+-@;
# `aws:` is reserved; 50 per resource, one of which the stack may add (OWNER_TAG).
_TAG_TEXT = re.compile(r"^[\w\s.:/=+\-@]*\Z")
MAX_TAGS = 49
RESERVED_TAG_KEYS = frozenset({"satchel:stack"})
# Keys whose values may be set with `pulumi config set --secret`: they reach only the Kubernetes
# provider, kept secret. Every other value appears in plain text in names, documents or the env.
SECRET_CAPABLE_KEYS = frozenset(
    {"satchel:kubeconfig", "satchel:kubeContext", "satchel:upstreamAuth"}
)
# Keys that must be secrets: their values are credentials.
SECRET_ONLY_KEYS = frozenset({"satchel:upstreamAuth"})


class ConfigKeyError(ValueError):
    """A stack config key is unknown or invalid; the message starts with the key's name."""


class StackConfig(BaseModel):
    """Every `satchel:` key (camelCase in YAML), plus `aws:region`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    region: str = Field(alias="aws:region", description="AWS region of the bucket and role")
    cluster_name: str | None = Field(
        default=None,
        alias="clusterName",
        description="EKS cluster; its OIDC issuer and kube access are looked up from it",
    )
    oidc_issuer_url: str | None = Field(
        default=None,
        alias="oidcIssuerUrl",
        description="The cluster's OIDC issuer URL, when no clusterName is given",
    )
    create_oidc_provider: bool = Field(
        default=False,
        alias="createOidcProvider",
        description="Create the IAM OIDC provider for the issuer (else it must exist)",
    )
    namespace: str = Field(default="packeton", description="Kubernetes namespace of the app")
    create_namespace: bool = Field(
        default=False,
        alias="createNamespace",
        description="Create the namespace (false: it must exist, e.g. from a Helm release)",
    )
    adopt_existing_objects: bool = Field(
        default=False,
        alias="adoptExistingObjects",
        description=(
            "Adopt a namespace or ServiceAccount that already exists in the cluster;"
            " adopted objects are kept on destroy"
        ),
    )
    service_account: str = Field(
        default="packeton",
        alias="serviceAccount",
        description="The app's ServiceAccount: the only one allowed to assume the role",
    )
    bucket_name: str | None = Field(
        default=None, alias="bucketName", description="Exact bucket name (else generated)"
    )
    bucket_name_prefix: str = Field(
        default="satchel-",
        alias="bucketNamePrefix",
        description="Prefix of the generated bucket name when bucketName is not set",
    )
    versioning: bool = Field(default=True, description="Keep object versions")
    kms_key_arn: str | None = Field(
        default=None,
        alias="kmsKeyArn",
        description="KMS key for default encryption (SSE-KMS); SSE-S3 when not set",
    )
    noncurrent_version_expiration_days: int = Field(
        default=30,
        alias="noncurrentVersionExpirationDays",
        ge=1,
        description="Days before noncurrent object versions are deleted",
    )
    force_destroy: bool = Field(
        default=False,
        alias="forceDestroy",
        description="Let `pulumi destroy` delete a non-empty bucket",
    )
    storage_prefix: str = Field(
        default="packeton", alias="storagePrefix", description="STORAGE_AWS_PREFIX"
    )
    artifact_prefix: str = Field(
        default="artifact", alias="artifactPrefix", description="STORAGE_AWS_ARTIFACT_PREFIX"
    )
    mirror_meta_prefix: str = Field(
        default="mirror-meta",
        alias="mirrorMetaPrefix",
        description="STORAGE_AWS_MIRROR_META_PREFIX",
    )
    mirror_dist_prefix: str = Field(
        default="mirror-dist",
        alias="mirrorDistPrefix",
        description="STORAGE_AWS_MIRROR_DIST_PREFIX",
    )
    identity_mode: Literal["irsa", "pod-identity"] = Field(
        default="irsa",
        alias="identityMode",
        description="How pods get AWS credentials: irsa or pod-identity",
    )
    tags: dict[str, str] = Field(
        default_factory=dict, description="Tags on every taggable AWS resource"
    )
    permissions_boundary_arn: str | None = Field(
        default=None,
        alias="permissionsBoundaryArn",
        description="Permissions boundary (an IAM policy ARN) of the app's role",
    )
    role_path: str = Field(
        default="/",
        alias="rolePath",
        description="IAM path of the app's role and its policy, e.g. /workloads/",
    )
    max_session_duration: int = Field(
        default=MIN_SESSION,
        alias="maxSessionDuration",
        description="Longest session of the app's role, in seconds (3600-43200)",
    )
    pod_identity_trust_conditions: bool = Field(
        default=True,
        alias="podIdentityTrustConditions",
        description=(
            "pod-identity: trust only sessions tagged with the app's namespace and service"
            " account (aws:RequestTag/kubernetes-*)"
        ),
    )
    mirror_metadata_cache_dir: str = Field(
        default="",
        alias="mirrorMetadataCacheDir",
        description="MIRROR_METADATA_CACHE_DIR of the app; empty = stateless",
    )
    mirror_dist_cache_dir: str = Field(
        default="",
        alias="mirrorDistCacheDir",
        description="MIRROR_DIST_CACHE_DIR of the app; empty = stateless",
    )
    kubeconfig: str | None = Field(
        default=None,
        description="Kubeconfig (contents or path) for the Kubernetes provider",
    )
    kube_context: str | None = Field(
        default=None, alias="kubeContext", description="Context within the kubeconfig"
    )
    upstream_auth: str | None = Field(
        default=None,
        alias="upstreamAuth",
        repr=False,
        description=(
            "Upstream credentials, the JSON of a Composer auth.json (http-basic, bearer,"
            " github-oauth, gitlab-token); a secret, mounted from a Kubernetes Secret as"
            " SATCHEL_UPSTREAM_AUTH_FILE"
        ),
    )
    deploy_app: bool = Field(
        default=False,
        alias="deployApp",
        description="Also deploy `satchel serve` (Deployment + Service) with the ServiceAccount",
    )
    app_image: str = Field(
        default="",
        alias="appImage",
        description="Container image of the app (required when deployApp is true)",
    )
    app_replicas: int = Field(
        default=2, alias="appReplicas", ge=2, description="Replicas of the app (at least 2)"
    )
    app_max_replicas: int = Field(
        default=0,
        alias="appMaxReplicas",
        ge=0,
        description=(
            "Above appReplicas: a HorizontalPodAutoscaler scales the app between the two on"
            " CPU (0: no autoscaler)"
        ),
    )
    service_monitor: bool = Field(
        default=False,
        alias="serviceMonitor",
        description=(
            "Scrape /metrics through a Prometheus Operator ServiceMonitor (else the pods carry"
            " prometheus.io/* annotations)"
        ),
    )
    service_monitor_labels: dict[str, str] = Field(
        default_factory=dict,
        alias="serviceMonitorLabels",
        description="Labels of the ServiceMonitor (those your Prometheus selects)",
    )
    app_cache_size_limit: str = Field(
        default="2Gi",
        alias="appCacheSizeLimit",
        description="sizeLimit of each emptyDir cache volume of the app",
    )

    @field_validator(
        "cluster_name",
        "oidc_issuer_url",
        "bucket_name",
        "kms_key_arn",
        "permissions_boundary_arn",
        "kubeconfig",
        "kube_context",
        "upstream_auth",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # Pulumi.yaml can't declare a null default, and a key declared without a default is
        # required in every stack: `default: ""` there means "not set".
        return None if value == "" else value

    @field_validator("upstream_auth")
    @classmethod
    def _auth_json(cls, value: str | None) -> str | None:
        if value is not None:
            try:  # the app's own parser: the same refusals, never quoting a value
                parse_auth_json(value, where="the auth.json")
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("namespace", "service_account")
    @classmethod
    def _k8s_name(cls, value: str) -> str:
        if not _K8S_NAME.match(value) or len(value) > 63:
            raise ValueError("must be a Kubernetes name: lowercase letters, digits and '-'")
        return value

    @field_validator(
        "storage_prefix", "artifact_prefix", "mirror_meta_prefix", "mirror_dist_prefix"
    )
    @classmethod
    def _prefix(cls, value: str) -> str:
        value = value.strip("/")
        if not value or not _PREFIX.match(value) or ".." in value.split("/"):
            raise ValueError("must be a non-empty S3 key prefix such as 'packeton'")
        return value

    @field_validator("tags")
    @classmethod
    def _aws_tags(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_TAGS:
            raise ValueError(f"{len(value)} tags; AWS allows {MAX_TAGS} here (50 less ours)")
        for key, text in value.items():
            if not 1 <= len(key) <= 128 or not _TAG_TEXT.match(key):
                raise ValueError(
                    f"tag key {key!r}: 1-128 letters, digits, spaces or _.:/=+-@ (AWS's rule)"
                )
            if key.lower().startswith("aws:") or key in RESERVED_TAG_KEYS:
                raise ValueError(f"tag key {key!r} is reserved (aws:*, satchel:stack)")
            if len(text) > 256 or not _TAG_TEXT.match(text):
                raise ValueError(
                    f"tag {key!r}: its value must be at most 256 letters, digits, spaces or"
                    " _.:/=+-@ (AWS's rule)"
                )
        return value

    @field_validator("permissions_boundary_arn")
    @classmethod
    def _boundary(cls, value: str | None) -> str | None:
        if value is not None and not _POLICY_ARN.match(value):
            raise ValueError(
                "must be the ARN of an IAM managed policy, arn:aws:iam::ACCOUNT:policy/NAME"
                " (aws iam list-policies --query 'Policies[].Arn' lists them)"
            )
        return value

    @field_validator("role_path")
    @classmethod
    def _iam_path(cls, value: str) -> str:
        if not _IAM_PATH.match(value):
            raise ValueError(
                "must start and end with '/' (e.g. /workloads/satchel/), printable ASCII"
                " without spaces, at most 512 characters"
            )
        return value

    @field_validator("max_session_duration")
    @classmethod
    def _session(cls, value: int) -> int:
        if not MIN_SESSION <= value <= MAX_SESSION:
            raise ValueError(
                f"{value} is outside IAM's bounds: {MIN_SESSION}-{MAX_SESSION} seconds (1-12 h)"
            )
        return value

    @field_validator("app_cache_size_limit")
    @classmethod
    def _quantity(cls, value: str) -> str:
        parse_quantity(value)
        return value

    @field_validator("oidc_issuer_url")
    @classmethod
    def _https_issuer(cls, value: str | None) -> str | None:
        if value is not None and not (value.startswith("https://") and urlparse(value).hostname):
            raise ValueError("must be the https:// issuer URL of the cluster")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _app_image_when_deployed(self) -> StackConfig:
        if self.deploy_app and not self.app_image:
            raise ValueError("appImage: deployApp needs the app's container image")
        return self

    @model_validator(mode="after")
    def _auth_for_the_app(self) -> StackConfig:
        if self.upstream_auth and not self.deploy_app:
            raise ValueError(
                "upstreamAuth: is mounted into the app's pods; set deployApp: true (or give the"
                " app COMPOSER_AUTH / SATCHEL_UPSTREAM_AUTH_FILE where it runs)"
            )
        return self

    @model_validator(mode="after")
    def _autoscaling_range(self) -> StackConfig:
        if self.app_max_replicas and self.app_max_replicas <= self.app_replicas:
            raise ValueError(
                f"appMaxReplicas: {self.app_max_replicas} must be above appReplicas"
                f" ({self.app_replicas}), the autoscaler's minimum; 0 turns autoscaling off"
            )
        return self

    @model_validator(mode="after")
    def _one_issuer_source(self) -> StackConfig:
        if self.identity_mode == "pod-identity" and not self.cluster_name:
            raise ValueError("clusterName: pod-identity mode needs the EKS cluster name")
        if self.identity_mode == "irsa" and not (self.cluster_name or self.oidc_issuer_url):
            raise ValueError("clusterName: set clusterName or oidcIssuerUrl for irsa mode")
        if not (self.cluster_name or self.kubeconfig):
            # Else the Kubernetes provider takes whatever cluster the current kubectl context
            # points at, which need not be the issuer's.
            raise ValueError(
                "clusterName: say which cluster gets the ServiceAccount and ConfigMap: set"
                " clusterName (the EKS cluster), or kubeconfig (its contents or path, with"
                " kubeContext if it holds several)"
            )
        return self

    @model_validator(mode="after")
    def _room_for_the_caches(self) -> StackConfig:
        try:
            cache_bounds(self)
        except ValueError as exc:
            raise ValueError(f"appCacheSizeLimit: {exc}") from None
        return self

    @model_validator(mode="after")
    def _kms_key_in_the_buckets_region(self) -> StackConfig:
        value = self.kms_key_arn
        if value is None:
            return self
        if "alias/" in value:
            raise ValueError(
                "kmsKeyArn: an alias is refused: a policy on an alias ARN grants the alias, not"
                " the key, so every PUT and GET would be AccessDenied; use the key's ARN"
                " (aws kms describe-key --key-id alias/NAME --query KeyMetadata.Arn)"
            )
        match = _KMS_KEY_ARN.match(value)
        if match is None:
            raise ValueError(
                "kmsKeyArn: must be a KMS key ARN, arn:aws:kms:REGION:ACCOUNT:key/ID (a bare key"
                " id cannot go into the role's policy; aws kms describe-key --key-id ID"
                " --query KeyMetadata.Arn prints the ARN)"
            )
        if match["region"] != self.region:
            raise ValueError(
                f"kmsKeyArn: the key is in {match['region']} but the bucket in {self.region}:"
                " S3 encrypts only with a key of the bucket's region"
            )
        return self

    @property
    def prefixes(self) -> dict[str, str]:
        """Role -> prefix, in the runtime's role names."""
        return {
            "packages": self.storage_prefix,
            "artifacts": self.artifact_prefix,
            "mirror_meta": self.mirror_meta_prefix,
            "mirror_dist": self.mirror_dist_prefix,
        }


def parse_stack_config(values: Mapping[str, Any]) -> StackConfig:
    """Validate flattened config (`satchel:key` / `aws:region`), or raise ConfigKeyError."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        namespace, _, name = key.partition(":")
        if key == "aws:region":
            flat[key] = value
        elif namespace == PROJECT and name:
            flat[name] = value
        elif namespace in ("aws", "kubernetes", "pulumi"):
            continue  # provider settings: Pulumi passes them to the providers
        else:
            raise ConfigKeyError(f"{key}: unknown config key; Satchel's keys are 'satchel:*'")
    try:
        return StackConfig.model_validate(flat)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = ".".join(str(part) for part in error["loc"])
        key = f"satchel:{loc}" if loc and loc != "aws:region" else loc or "config"
        message = str(error["msg"]).removeprefix("Value error, ")
        if not loc and ":" in message:  # model-level checks name their key first
            name, _, message = message.partition(": ")
            key = f"satchel:{name}"
        raise ConfigKeyError(f"{key}: {message}") from None


def check_secret_keys(
    secret_keys: set[str] | frozenset[str], present: set[str] | frozenset[str] = frozenset()
) -> None:
    """Refuse `satchel:` keys set as secrets whose values the stack can't keep secret, and
    credentials (`present` keys in SECRET_ONLY_KEYS) set in plain text."""
    for key in sorted(SECRET_ONLY_KEYS & set(present) - set(secret_keys)):
        raise ConfigKeyError(
            f"{key}: holds credentials; set it with `pulumi config set --secret {key}`"
            " (a plain value is stored in clear text in the stack file)"
        )
    for key in sorted(secret_keys):
        if key.startswith(f"{PROJECT}:") and key not in SECRET_CAPABLE_KEYS:
            raise ConfigKeyError(
                f"{key}: is set as a secret, but its value ends up in plain text (resource"
                " names, policies, the env or the outputs); set it without --secret (only"
                f" {', '.join(sorted(SECRET_CAPABLE_KEYS))} may be secrets)"
            )


def load_stack_config(stack: str = "dev", root: Path = ROOT) -> StackConfig:
    """Read `Pulumi.<stack>.yaml` the way Pulumi does (its `config:` block)."""
    path = root / f"Pulumi.{stack}.yaml"
    document = yaml.safe_load(path.read_text()) or {}
    return parse_stack_config(document.get("config") or {})
