"""The stack config: Pulumi.yaml's schema agrees with StackConfig, the committed stack is
valid, and every bad key fails with its own name before the program declares anything."""

from __future__ import annotations

import re
import types
from typing import Any, Literal, Union, get_args, get_origin

import pytest
import yaml

from infra.config import ROOT, ConfigKeyError, StackConfig, load_stack_config, parse_stack_config
from tests.infra import harness
from tests.infra.harness import run_program, stack_file_config

KEY_ID = "1234abcd-12ab-34cd-56ef-1234567890ab"

# Pulumi's project config types (https://www.pulumi.com/docs/iac/concepts/projects/project-file/).
PULUMI_TYPES = {str: "string", int: "integer", bool: "boolean", list: "array"}


def _schema() -> dict[str, dict[str, Any]]:
    document = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    return dict(document["config"])


def _project_fields() -> dict[str, Any]:
    """alias -> pydantic field, for the `satchel:` keys (aws:region is the provider's)."""
    fields = {field.alias or name: field for name, field in StackConfig.model_fields.items()}
    del fields["aws:region"]
    return fields


def _pulumi_type(annotation: Any) -> str | None:
    """The Pulumi type of a field annotation; None where Pulumi has no type for it (maps)."""
    args = [arg for arg in get_args(annotation) if arg is not type(None)]
    if get_origin(annotation) in (Union, types.UnionType):
        [annotation] = args
        args = list(get_args(annotation))
    if get_origin(annotation) is Literal:
        [annotation] = {type(arg) for arg in args}
    if get_origin(annotation) is dict:
        return None
    return PULUMI_TYPES[get_origin(annotation) or annotation]


def _with_project_config(stack_config: dict[str, Any]) -> dict[str, Any]:
    """The config the engine hands the program, merged the way Pulumi merges it: a declared
    `satchel:` key the stack doesn't set takes its `default`; without one, the stack is refused
    ("Stack 'dev' is missing configuration value ...", pulumi pkg/workspace/config.go)."""
    merged = dict(stack_config)
    missing = []
    for key, declaration in _schema().items():
        if f"satchel:{key}" in merged:
            continue
        if "default" not in declaration:
            missing.append(key)
            continue
        merged[f"satchel:{key}"] = declaration["default"]
    assert not missing, f"Pulumi refuses a stack without {missing}"
    return merged


def _changed(**changes: Any) -> dict[str, Any]:
    """Pulumi.dev.yaml's config with `satchel:<name>` changed (or removed, with None)."""
    return harness.stack_config_with("dev", **changes)


# Pulumi.yaml's schema and the model


def test_pulumi_yaml_declares_exactly_the_satchel_keys_of_the_model() -> None:
    assert set(_schema()) == set(_project_fields())


def test_pulumi_yaml_declarations_use_only_type_description_and_default() -> None:
    for key, declaration in _schema().items():
        assert set(declaration) <= {"type", "description", "default"}, key
        assert "description" in declaration, key


def test_pulumi_yaml_descriptions_are_the_model_descriptions() -> None:
    schema = _schema()
    for key, field in _project_fields().items():
        assert schema[key]["description"] == field.description, key


def test_pulumi_yaml_types_follow_the_field_annotations() -> None:
    schema = _schema()
    for key, field in _project_fields().items():
        assert schema[key].get("type") == _pulumi_type(field.annotation), key


def test_pulumi_yaml_defaults_are_the_model_defaults() -> None:
    schema = _schema()
    for key, field in _project_fields().items():
        declared = schema[key]["default"]
        default = field.get_default(call_default_factory=True)
        if default is None:
            # Pulumi has no null default, and a key without one is required in every stack:
            # "" stands for "not set", which the model reads as None.
            assert declared == "", key
        else:
            assert declared == default, key
            assert type(declared) is type(default), key


def test_a_stack_with_pulumi_yaml_defaults_applied_reads_as_the_stack_alone() -> None:
    minimal = {"aws:region": "eu-west-1", "satchel:clusterName": "packeton-dev"}
    assert parse_stack_config(_with_project_config(minimal)) == parse_stack_config(minimal)
    dev = stack_file_config("dev")
    assert parse_stack_config(_with_project_config(dev)) == load_stack_config("dev")


def test_the_program_declares_the_same_stack_with_pulumi_yaml_defaults_applied() -> None:
    alone = run_program(stack_file_config("dev"))
    merged = run_program(_with_project_config(stack_file_config("dev")))
    # registration order varies between runs (the program is asynchronous): compare by name
    assert {(r.type, r.name): r.inputs for r in merged.mocks.resources} == {
        (r.type, r.name): r.inputs for r in alone.mocks.resources
    }
    assert len(merged.mocks.resources) == len(alone.mocks.resources)
    assert merged.outputs == alone.outputs


# the committed stack


def test_the_committed_dev_stack_validates_and_keeps_every_value() -> None:
    config = load_stack_config("dev")
    read = config.model_dump(by_alias=True)
    for key, value in stack_file_config("dev").items():
        name = key if key == "aws:region" else key.removeprefix("satchel:")
        assert read[name] == value, key


# bad config: one line, starting with the key's full name


BAD_CONFIGS = [
    pytest.param({"satchel:bucketname": "x"}, "satchel:bucketname", "Extra", id="typo"),
    pytest.param({"foo:bar": "x"}, "foo:bar", "unknown config key", id="other-namespace"),
    pytest.param({"versioning": "maybe"}, "satchel:versioning", "boolean", id="not-a-bool"),
    pytest.param(
        {"noncurrentVersionExpirationDays": 0},
        "satchel:noncurrentVersionExpirationDays",
        "greater than or equal to 1",
        id="zero-days",
    ),
    pytest.param(
        {"namespace": "Packeton_NS"}, "satchel:namespace", "Kubernetes name", id="bad-namespace"
    ),
    pytest.param(
        {"namespace": "packeton\n"}, "satchel:namespace", "Kubernetes name", id="newline-name"
    ),
    pytest.param(
        {"serviceAccount": "a" * 64},
        "satchel:serviceAccount",
        "Kubernetes name",
        id="service-account-too-long",
    ),
    pytest.param({"storagePrefix": "../x"}, "satchel:storagePrefix", "prefix", id="dotdot"),
    pytest.param({"artifactPrefix": ""}, "satchel:artifactPrefix", "prefix", id="empty-prefix"),
    pytest.param(
        {"mirrorDistPrefix": "mirror-dist\n"},
        "satchel:mirrorDistPrefix",
        "prefix",
        id="newline-prefix",
    ),
    pytest.param(
        {"mirrorMetaPrefix": "mirror*"},
        "satchel:mirrorMetaPrefix",
        "prefix",
        id="iam-wildcard-in-prefix",
    ),
    pytest.param(
        {"oidcIssuerUrl": "http://oidc.example.com/id/X"},
        "satchel:oidcIssuerUrl",
        "https://",
        id="http-issuer",
    ),
    pytest.param(
        {"clusterName": None, "oidcIssuerUrl": "https://"},
        "satchel:oidcIssuerUrl",
        "https://",
        id="issuer-without-host",
    ),
    pytest.param({"identityMode": "eks"}, "satchel:identityMode", "irsa", id="eks-mode"),
    pytest.param(
        {"clusterName": None}, "satchel:clusterName", "oidcIssuerUrl", id="irsa-without-issuer"
    ),
    pytest.param(
        {"clusterName": None, "identityMode": "pod-identity"},
        "satchel:clusterName",
        "pod-identity",
        id="pod-identity-without-cluster",
    ),
    pytest.param({"aws:region": None}, "aws:region", "required", id="no-region"),
    pytest.param(
        {"clusterName": None, "oidcIssuerUrl": "https://oidc.example.com/id/X"},
        "satchel:clusterName",
        "say which cluster gets the ServiceAccount",
        id="issuer-without-a-cluster-to-deploy-to",
    ),
    pytest.param(
        {"kmsKeyArn": "arn:aws:kms:eu-west-1:123456789012:alias/packeton"},
        "satchel:kmsKeyArn",
        "an alias is refused: a policy on an alias ARN grants the alias, not the key",
        id="kms-alias-arn",
    ),
    pytest.param(
        {"kmsKeyArn": "alias/packeton"}, "satchel:kmsKeyArn", "alias is refused", id="kms-alias"
    ),
    pytest.param(
        {"kmsKeyArn": KEY_ID},
        "satchel:kmsKeyArn",
        "a bare key id cannot go into the role's policy",
        id="kms-bare-key-id",
    ),
    pytest.param(
        {"kmsKeyArn": f"arn:aws:kms:us-east-1:123456789012:key/{KEY_ID}"},
        "satchel:kmsKeyArn",
        "the key is in us-east-1 but the bucket in eu-west-1",
        id="kms-key-of-another-region",
    ),
    pytest.param(
        {"kmsKeyArn": "arn:aws:kms:eu-west-1:123456789012:key/*"},
        "satchel:kmsKeyArn",
        "must be a KMS key ARN",
        id="kms-wildcard",
    ),
    pytest.param(
        {"maxSessionDuration": 3599},
        "satchel:maxSessionDuration",
        "outside IAM's bounds: 3600-43200 seconds",
        id="session-too-short",
    ),
    pytest.param(
        {"maxSessionDuration": 43201},
        "satchel:maxSessionDuration",
        "outside IAM's bounds",
        id="session-too-long",
    ),
    pytest.param(
        {"rolePath": "workloads"}, "satchel:rolePath", "start and end with '/'", id="path-no-slash"
    ),
    pytest.param(
        {"rolePath": "/team a/"}, "satchel:rolePath", "without spaces", id="path-with-space"
    ),
    pytest.param(
        {"permissionsBoundaryArn": "arn:aws:iam::123456789012:role/boundary"},
        "satchel:permissionsBoundaryArn",
        "ARN of an IAM managed policy",
        id="boundary-not-a-policy",
    ),
    pytest.param(
        {"tags": {"aws:team": "x"}}, "satchel:tags", "'aws:team' is reserved", id="aws-tag-key"
    ),
    pytest.param(
        {"tags": {"team": "a;b"}}, "satchel:tags", "tag 'team': its value", id="tag-value-chars"
    ),
    pytest.param(
        {"tags": {"k" * 129: "x"}}, "satchel:tags", "1-128 letters", id="tag-key-too-long"
    ),
    pytest.param(
        {"tags": {f"t{i}": "x" for i in range(50)}},
        "satchel:tags",
        "50 tags; AWS allows 49",
        id="too-many-tags",
    ),
    pytest.param(
        {"appCacheSizeLimit": "lots"},
        "satchel:appCacheSizeLimit",
        "Kubernetes quantity",
        id="size-limit-not-a-quantity",
    ),
]


@pytest.mark.parametrize(
    "arn",
    [
        f"arn:aws:kms:eu-west-1:123456789012:key/{KEY_ID}",
        "arn:aws:kms:eu-west-1:123456789012:key/mrk-1234abcd12ab34cd56ef1234567890ab",
    ],
)
def test_a_key_arn_of_the_buckets_region_is_accepted(arn: str) -> None:
    assert parse_stack_config(_changed(kmsKeyArn=arn)).kms_key_arn == arn


@pytest.mark.parametrize(
    ("changes", "read"),
    [
        ({"maxSessionDuration": 3600}, ("max_session_duration", 3600)),
        ({"maxSessionDuration": 43200}, ("max_session_duration", 43200)),
        ({"rolePath": "/"}, ("role_path", "/")),
        ({"rolePath": "/workloads/satchel/"}, ("role_path", "/workloads/satchel/")),
        (
            {"permissionsBoundaryArn": "arn:aws:iam::123456789012:policy/org/Boundary"},
            ("permissions_boundary_arn", "arn:aws:iam::123456789012:policy/org/Boundary"),
        ),
        ({"permissionsBoundaryArn": ""}, ("permissions_boundary_arn", None)),
        ({"tags": {"cost-center": "4711", "owner": "team@example.com"}}, None),
    ],
)
def test_the_iam_options_accept_what_iam_accepts(
    changes: dict[str, Any], read: tuple[str, Any] | None
) -> None:
    config = parse_stack_config(_changed(**changes))
    if read is not None:
        assert getattr(config, read[0]) == read[1]


def test_a_kubeconfig_alone_says_which_cluster() -> None:
    config = parse_stack_config(
        _changed(clusterName=None, oidcIssuerUrl="https://oidc.example.com/id/X", kubeconfig="k")
    )
    assert config.cluster_name is None


def test_a_secret_the_stack_cannot_keep_secret_is_refused_before_any_resource() -> None:
    mocks = harness.RecordingMocks()
    with pytest.raises(ConfigKeyError, match=r"^satchel:bucketName: is set as a secret") as exc:
        run_program(_changed(), secret_keys=("satchel:bucketName",), mocks=mocks)
    assert "packeton-dev-storage" not in str(exc.value)  # the value itself is never shown
    assert mocks.resources == [] and mocks.calls == []


@pytest.mark.parametrize(("changes", "key", "reason"), BAD_CONFIGS)
def test_a_bad_key_fails_in_one_line_starting_with_its_name(
    changes: dict[str, Any], key: str, reason: str
) -> None:
    with pytest.raises(ConfigKeyError) as excinfo:
        parse_stack_config(_changed(**changes))
    message = str(excinfo.value)
    assert message.startswith(f"{key}: "), message
    assert "\n" not in message
    assert reason in message


@pytest.mark.parametrize(("changes", "key", "reason"), BAD_CONFIGS)
def test_a_bad_key_stops_the_program_before_any_resource_is_declared(
    changes: dict[str, Any], key: str, reason: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    mocks = harness.RecordingMocks()
    monkeypatch.setattr(harness, "RecordingMocks", lambda: mocks)
    # The language host may wrap the error: what matters is the message.
    with pytest.raises(Exception, match=re.escape(f"{key}: ")):
        run_program(_changed(**changes))
    assert mocks.resources == []
    assert mocks.calls == []
